"""Opt-in FP8 matmuls (`--fp8`): the Linear layers inside the transformer blocks and inside the
reward models' Qwen2-VL layers become `Fp8Linear`s: float8 e4m3 weights with one scale per output
row (quantized once, at load) times activations quantized per row at every call, through
`torch._scaled_mm`. Hopper's tensor cores run FP8 at twice the bf16 rate; the numbers move, by the
amounts docs/performance.md measures. Embeddings, heads, norms and attention stay in the compute
dtype.

The layer is plain torch ops on plain tensors, so `torch.compile` traces a block with its FP8
layers as one graph and fuses each activation's quantization into its neighbours (torchao's float8
tensor subclass broke the graph at every layer and recompiled per weight: docs/performance.md).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from engine.errors import StreamT1Error
from engine.models.factory import Models
from engine.rewards.qwen_vl import qwen_backbones

FP8_CAPABILITY = (8, 9)  # Ada and Hopper: the first GPUs with FP8 tensor cores
E4M3 = torch.float8_e4m3fn
E4M3_MAX = torch.finfo(E4M3).max
SMALLEST_AMAX = 1e-12  # an all-zero row still gets a finite scale
_IN_LAYERS = ("blocks.", "layers.")  # transformer blocks, Qwen2-VL vision blocks and decoder layers


def check_fp8(device: torch.device) -> None:
    """Refuse --fp8 in one line where it cannot run."""
    if device.type != "cuda" or torch.cuda.get_device_capability(device) < FP8_CAPABILITY:
        raise StreamT1Error(
            "--fp8 needs a CUDA GPU with FP8 tensor cores (compute capability 8.9 or newer: L4, L40, H100, "
            "H200, ...): leave it out on this machine"
        )


def rowwise_fp8(rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """`rows` (n, k) as float8 e4m3 values and one fp32 scale per row (n, 1): rows ~ values * scale,
    each row's largest magnitude landing on e4m3's largest finite value."""
    scale = rows.abs().amax(dim=-1, keepdim=True).float().clamp(min=SMALLEST_AMAX) / E4M3_MAX
    return (rows.float() / scale).clamp(-E4M3_MAX, E4M3_MAX).to(E4M3), scale


class Fp8Linear(nn.Module):
    """`nn.Linear` with FP8 weights and activations, scaled per row, and a bf16 result (the only
    output type of the row-scaled FP8 matmul) cast back to the input's dtype."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        weight, scale = rowwise_fp8(linear.weight.detach())
        # Buffers, not parameters: a PreTrainedModel's `.dtype` is its first floating parameter's.
        self.register_buffer("weight_fp8", weight)
        self.register_buffer("weight_scale", scale.t().contiguous())  # (1, out), as scale_b wants it
        bias = linear.bias
        self.register_buffer("bias", None if bias is None else bias.detach().to(torch.bfloat16))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        values, scale = rowwise_fp8(x.reshape(-1, self.in_features).contiguous())  # row-major, as the matmul wants it
        out = torch._scaled_mm(
            values,
            self.weight_fp8.t(),  # column-major, as the FP8 matmul wants its second operand
            scale_a=scale,
            scale_b=self.weight_scale,
            bias=self.bias,
            out_dtype=torch.bfloat16,
        )
        return out.to(x.dtype).reshape(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


def takes_fp8(module: nn.Module, name: str) -> bool:
    """Linear layers of the repeated blocks whose sizes the FP8 matmul takes (multiples of 16)."""
    return (
        isinstance(module, nn.Linear)
        and any(part in f"{name}." for part in _IN_LAYERS)
        and module.in_features % 16 == 0
        and module.out_features % 16 == 0
    )


def quantize_fp8(module: nn.Module) -> int:
    """Swap `module`'s block Linear layers for `Fp8Linear`s in place (the bf16 weights go); returns
    how many."""
    chosen = [name for name, layer in module.named_modules() if takes_fp8(layer, name)]
    for name in chosen:
        parent, _, child = name.rpartition(".")
        owner = module.get_submodule(parent)
        setattr(owner, child, Fp8Linear(getattr(owner, child)))
    return len(chosen)


def use_fp8(models: Models, scorers: Iterable[object] = ()) -> int:
    """FP8 for the transformer's blocks and every Qwen2-VL reward model among `scorers` (reward
    proxies have no matmuls); call before `tune_for_cuda` compiles the blocks. Returns the number
    of Linear layers quantized."""
    check_fp8(models.device)
    return quantize_fp8(models.transformer.wan) + sum(quantize_fp8(b.model) for b in qwen_backbones(scorers))
