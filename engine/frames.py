"""Decoded frames: float in [-1, 1] while computing, uint8 (0..255) for history, files, views and
the reward models' inputs.

8 bits by truncation, as the reference makes both reward models' inputs (`astype(uint8)` of
255 * (x / 2 + 1 / 2)), not rounding: one conversion for everything, so the frames a scorer sees
fresh and the ones it later reads back from history (or a video file) are the same levels.
"""

from __future__ import annotations

import torch
from torch import Tensor


def to_levels(frames: Tensor) -> Tensor:
    """Float frames in [-1, 1] (any shape, any device) -> float32 levels 0..255, truncated: floor of
    (x + 1) * 127.5, clamped (only x = 1 reaches 255), in the reference's order of float operations."""
    return (255.0 * (frames.float() * 0.5 + 0.5).clamp(0, 1)).floor()


def to_uint8(frames: Tensor) -> Tensor:
    """Float frames in [-1, 1] (any shape) -> uint8 levels on the CPU (`to_levels`); uint8 passes."""
    if frames.dtype == torch.uint8:
        return frames.cpu()
    return to_levels(frames).to(torch.uint8).cpu()


def from_uint8(frames: Tensor, device: torch.device) -> Tensor:
    """uint8 levels -> float32 in [-1, 1] on `device`, at the middle of the values that truncate to
    each level (255 is x = 1 alone), so that `to_levels` gives the same levels back exactly. (The
    level's lower edge, v / 127.5 - 1, truncates to v - 1 for a quarter of the levels in float32.)"""
    levels = frames.to(device, non_blocking=True).float()  # from pageable memory: no device sync
    return (levels + 0.5).clamp(max=255) / 127.5 - 1.0
