"""Few-step flow-matching sampler (LongLive / Self-Forcing): 4 steps, fresh noise between steps.

The model predicts a flow v; x0 = x_t - sigma * v, and the next input re-noises x0 to the next
sigma with FRESH noise drawn from the candidate's own generator (not the previous eps).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor


def shifted_sigmas(timesteps: tuple[float, ...], shift: float, num_train_timesteps: int = 1000) -> list[float]:
    """Warp nominal timesteps with the flow shift: s' = shift*s / (1 + (shift-1)*s), s = t/T."""
    sigmas = []
    for t in timesteps:
        s = t / num_train_timesteps
        sigmas.append(shift * s / (1 + (shift - 1) * s))
    return sigmas


def draw_noise(generators: list[torch.Generator], shape: tuple[int, ...], device: torch.device) -> Tensor:
    """One standard-normal sample per generator (CPU generators: identical on every device)."""
    return torch.stack([torch.randn(shape, generator=g, dtype=torch.float32) for g in generators]).to(device)


FlowModel = Callable[[Tensor, Tensor], Tensor]
"""(x_t [B, C, F, H, W], timestep [B]) -> flow prediction, same shape as x_t."""


def denoise_chunk(
    model: FlowModel,
    x_init: Tensor,
    sigmas: list[float],
    generators: list[torch.Generator],
) -> Tensor:
    """Run the few-step sampler from x_init (at sigmas[0]) and return the clean chunk x0 (float32)."""
    x = x_init.float()
    batch = x.shape[0]
    x0 = x
    for i, sigma in enumerate(sigmas):
        t = torch.full((batch,), sigma * 1000.0, device=x.device)
        flow = model(x, t).float()
        x0 = x - sigma * flow
        if i + 1 < len(sigmas):
            nxt = sigmas[i + 1]
            eps = draw_noise(generators, tuple(x.shape[1:]), x.device)
            x = (1 - nxt) * x0 + nxt * eps
    return x0
