"""Decoded frames: float in [-1, 1] while computing, uint8 (0..255) for history, files and views."""

from __future__ import annotations

import torch
from torch import Tensor


def to_uint8(frames: Tensor) -> Tensor:
    """Float frames in [-1, 1] (any shape) -> uint8 on the CPU, rounded to nearest; uint8 passes."""
    if frames.dtype == torch.uint8:
        return frames.cpu()
    return ((frames.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu()


def from_uint8(frames: Tensor, device: torch.device) -> Tensor:
    """uint8 frames -> float32 in [-1, 1] on `device`."""
    return frames.to(device).float() / 127.5 - 1.0
