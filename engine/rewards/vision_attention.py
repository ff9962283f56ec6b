"""Qwen2-VL's vision attention for a batch of equal-sized images (or video frame groups) in one call.

The vision tower packs every image's patches into one sequence, and each image attends only to
itself. transformers' SDPA path cuts that sequence with a host sync (`lengths.tolist()`) in every
layer and runs one attention call per image: 24 frames through 32 layers is ~800 small calls a
batch, and the GPU waits on the host. Our frames all have one size, so the windows are equal and
the packed sequence reshapes to [images, heads, patches, dim]: one batched SDPA call per layer, the
same attention. It is registered as a transformers attention function whose name says "flash", so
the tower hands it the window bounds (`cu_seqlens`, and the longest window once per forward).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformers import AttentionInterface

NAME = "streamt1_flash_windows"  # "flash" in the name: transformers then passes the window bounds


def windowed_attention(
    module: nn.Module,
    query: Tensor,
    key: Tensor,
    value: Tensor,
    attention_mask: Tensor | None = None,
    scaling: float | None = None,
    dropout: float = 0.0,
    cu_seq_lens_q: Tensor | None = None,
    max_length_q: int | None = None,
    **kwargs,
) -> tuple[Tensor, None]:
    """[1, heads, tokens, dim] packed windows -> [1, tokens, heads, dim], each window attending to
    itself: one batched call when the windows are equal, one call per window otherwise."""
    _, heads, total, dim = query.shape
    windows = cu_seq_lens_q.numel() - 1
    if windows * max_length_q == total:  # every window is the longest: all equal
        q, k, v = (t[0].unflatten(1, (windows, max_length_q)).transpose(0, 1) for t in (query, key, value))
        out = F.scaled_dot_product_attention(q, k, v, scale=scaling)  # [windows, heads, length, dim]
        return out.permute(0, 2, 1, 3).reshape(1, total, heads, dim), None
    bounds = cu_seq_lens_q.tolist()
    parts = [
        F.scaled_dot_product_attention(*(t[:, :, a:b] for t in (query, key, value)), scale=scaling)
        for a, b in zip(bounds[:-1], bounds[1:])
    ]
    return torch.cat(parts, dim=2).transpose(1, 2), None


AttentionInterface.register(NAME, windowed_attention)


def batch_vision_attention(vision_tower: nn.Module) -> None:
    """Make `vision_tower` (a Qwen2-VL vision transformer) attend with `windowed_attention`."""
    vision_tower.config._attn_implementation = NAME
