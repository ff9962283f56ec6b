"""Opt-in FP8 matmuls (`--fp8`): the Linear layers inside the transformer blocks and inside the
reward models' Qwen2-VL layers run in float8 e4m3 with per-row scales, through torchao's dynamic
float8 quantization (weights quantized once at load, activations at every call). Hopper's tensor
cores run FP8 at twice the bf16 rate; the numbers move, by the amounts docs/performance.md
measures. Embeddings, heads, norms and attention itself stay in the compute dtype.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from engine.errors import StreamT1Error
from engine.models.factory import Models
from engine.rewards.qwen_vl import qwen_backbones

FP8_CAPABILITY = (8, 9)  # Ada and Hopper: the first GPUs with FP8 tensor cores
_IN_LAYERS = ("blocks.", "layers.")  # transformer blocks, Qwen2-VL vision blocks and decoder layers


def check_fp8(device: torch.device) -> None:
    """Refuse --fp8 in one line where it cannot run."""
    if device.type != "cuda" or torch.cuda.get_device_capability(device) < FP8_CAPABILITY:
        raise StreamT1Error(
            "--fp8 needs a CUDA GPU with FP8 tensor cores (compute capability 8.9 or newer: L4, L40, H100, "
            "H200, ...): leave it out on this machine"
        )
    try:
        import torchao  # noqa: F401
    except ImportError as exc:
        raise StreamT1Error("--fp8 needs torchao: pip install 'streamt1[fp8]' (or pip install torchao)") from exc


def takes_fp8(module: nn.Module, name: str) -> bool:
    """Linear layers of the repeated blocks whose sizes the FP8 matmul takes (multiples of 16)."""
    return (
        isinstance(module, nn.Linear)
        and any(part in f"{name}." for part in _IN_LAYERS)
        and module.in_features % 16 == 0
        and module.out_features % 16 == 0
    )


def quantize_fp8(module: nn.Module) -> int:
    """Quantize `module`'s block Linear layers in place; returns how many."""
    from torchao.quantization import Float8DynamicActivationFloat8WeightConfig, PerRow, quantize_

    count = sum(takes_fp8(m, n) for n, m in module.named_modules())
    quantize_(module, Float8DynamicActivationFloat8WeightConfig(granularity=PerRow()), filter_fn=takes_fp8)
    return count


def use_fp8(models: Models, scorers: Iterable[object] = ()) -> int:
    """FP8 for the transformer's blocks and every Qwen2-VL reward model among `scorers` (reward
    proxies have no matmuls); call before `tune_for_cuda` compiles the blocks. Returns the number
    of Linear layers quantized."""
    check_fp8(models.device)
    return quantize_fp8(models.transformer.wan) + sum(quantize_fp8(b.model) for b in qwen_backbones(scorers))
