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


def draw_noise(generator: torch.Generator, shape: tuple[int, ...], count: int) -> Tensor:
    """`count` standard-normal draws [count, *shape] from a CPU generator (identical on every
    device): a candidate's x_init eps and each later step's fresh noise, in the sampler's order.
    Drawn up front, they reach the GPU in one copy instead of a blocking copy per step."""
    return torch.stack([torch.randn(shape, generator=generator, dtype=torch.float32) for _ in range(count)])


FlowModel = Callable[[Tensor, Tensor], Tensor]
"""(x_t [B, C, F, H, W], timestep [B]) -> flow prediction, same shape as x_t."""


def denoise_chunk(model: FlowModel, x_init: Tensor, sigmas: list[float], step_noise: Tensor) -> Tensor:
    """Run the few-step sampler from x_init (at sigmas[0]) and return the clean chunk x0 (float32).
    `step_noise` [len(sigmas) - 1, B, C, F, H, W], on x_init's device: the fresh noise of steps 1.."""
    x = x_init.float()
    batch = x.shape[0]
    x0 = x
    for i, sigma in enumerate(sigmas):
        t = torch.full((batch,), sigma * 1000.0, device=x.device)
        flow = model(x, t).float()
        x0 = x - sigma * flow
        if i + 1 < len(sigmas):
            nxt = sigmas[i + 1]
            x = (1 - nxt) * x0 + nxt * step_noise[i]
    return x0
