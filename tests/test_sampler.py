"""Sampler schedule and determinism."""

from __future__ import annotations

import torch

from engine.config import StreamConfig
from engine.sampler import denoise_chunk, draw_noise, shifted_sigmas


def test_shifted_sigmas_match_longlive():
    sigmas = shifted_sigmas(StreamConfig().timesteps, StreamConfig().shift)
    assert sigmas == [1.0, 0.9375, 5 / 6, 0.625]
    assert [round(s * 1000, 4) for s in sigmas] == [1000.0, 937.5, 833.3333, 625.0]


def _linear_model(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return 0.5 * x + t.view(-1, 1, 1, 1, 1) / 1000.0


def test_denoise_follows_flow_matching_steps():
    """x0 = x_t - sigma v, then re-noise to the next sigma with fresh noise from the generator."""
    sigmas = [1.0, 0.5]
    x = torch.randn(1, 2, 1, 2, 2)
    out = denoise_chunk(
        _linear_model, x, sigmas, draw_noise(torch.Generator().manual_seed(7), (2, 1, 2, 2), 1)[:, None]
    )
    x0 = x - 1.0 * _linear_model(x, torch.tensor([1000.0]))
    eps = torch.randn((2, 1, 2, 2), generator=torch.Generator().manual_seed(7))[None]
    x1 = 0.5 * x0 + 0.5 * eps
    expected = x1 - 0.5 * _linear_model(x1, torch.tensor([500.0]))
    torch.testing.assert_close(out, expected, rtol=0, atol=0)


def test_denoise_is_deterministic_per_seed():
    sigmas = shifted_sigmas(StreamConfig().timesteps, StreamConfig().shift)
    x = torch.randn(1, 2, 1, 2, 2)

    def noise(seed: int) -> torch.Tensor:
        return draw_noise(torch.Generator().manual_seed(seed), (2, 1, 2, 2), len(sigmas) - 1)[:, None]

    a = denoise_chunk(_linear_model, x, sigmas, noise(3))
    b = denoise_chunk(_linear_model, x, sigmas, noise(3))
    c = denoise_chunk(_linear_model, x, sigmas, noise(4))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_noise_drawn_up_front_is_the_generators_sequence():
    """x_init's eps first, then one draw per later step, as drawing them one at a time would give."""
    drawn = draw_noise(torch.Generator().manual_seed(5), (2, 3), 4)
    gen = torch.Generator().manual_seed(5)
    one_by_one = torch.stack([torch.randn((2, 3), generator=gen) for _ in range(4)])
    assert torch.equal(drawn, one_by_one)
