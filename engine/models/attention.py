"""The Wan transformer's softmax attention on [batch, tokens, heads, head_dim] tensors, by the
kernels a run chose (`--attention`):

- sdpa: PyTorch's `scaled_dot_product_attention` (cuDNN's flash kernel on Hopper, math on the CPU);
- flash4: FlashAttention-4's CuTe kernels (the `flash-attn-4` package), which read this layout as
  it is. They run as one torch custom op, so a compiled transformer block traces the call as a
  single opaque node instead of breaking its graph around Python it cannot follow.

Keys and values may have batch 1 for queries of any batch (one prompt's text for every row).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from engine.config import FLASH4_PACKAGE, AttentionKernel
from engine.errors import StreamT1Error

FLASH4_CAPABILITY = (9, 0)  # FlashAttention-4 is built for Hopper and Blackwell
FLASH4_DTYPES = (torch.bfloat16, torch.float16)


def check_attention(kernel: AttentionKernel, device: torch.device, dtype: torch.dtype) -> None:
    """Refuse, in one line, attention kernels that cannot run here (before minutes of loading)."""
    if kernel is AttentionKernel.sdpa:
        return
    if device.type != "cuda" or torch.cuda.get_device_capability(device) < FLASH4_CAPABILITY:
        raise StreamT1Error(
            "--attention flash4 needs a CUDA GPU of compute capability 9.0 or newer (H100, H200, B200, ...): "
            "leave it out on this machine"
        )
    if dtype not in FLASH4_DTYPES:
        raise StreamT1Error(f"--attention flash4 runs bfloat16 or float16, not {str(dtype).removeprefix('torch.')}")
    try:
        flash4_kernel()
    except ImportError as err:
        raise StreamT1Error(
            f"--attention flash4 needs FlashAttention-4 ({err}): pip install {FLASH4_PACKAGE} "
            "(in a checkout: pip install -e '.[flash4]')"
        ) from None


def flash4_kernel():
    """FlashAttention-4's forward, `(q, k, v) -> (out, lse)` on [B, S, H, D] tensors."""
    from flash_attn.cute import flash_attn_func

    return flash_attn_func


@torch.library.custom_op("streamt1::flash4_attention", mutates_args=())
def flash4_attention(q: Tensor, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
    """Softmax attention of q [B, Sq, H, D] over k, v [B, Sk, H, D] (scale 1/sqrt(D)), no mask:
    the output [B, Sq, H, D] and the natural-log sum of exponentials [B, H, Sq] float32."""
    out, lse = flash4_kernel()(q, k, v, return_lse=True)
    return out, lse


@flash4_attention.register_fake
def _flash4_attention_shape(q: Tensor, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
    batch, queries, heads, _ = q.shape
    return q.new_empty((batch, queries, heads, v.shape[-1])), q.new_empty((batch, heads, queries), dtype=torch.float32)


def _flash4(q: Tensor, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
    """flash4_attention for k, v of batch 1 or q's: (out [B, Sq, H, D], lse [B, H, Sq])."""
    batch, queries = q.shape[:2]
    if k.shape[0] == 1 and batch > 1:
        # Keys shared by every row: one sequence of all the rows' queries (each query's result
        # is its own), so the kernel reads the keys once, not once per row.
        out, lse = flash4_attention(q.reshape(1, -1, *q.shape[2:]), k, v)
        return out.reshape(q.shape[:3] + out.shape[-1:]), lse.reshape(-1, batch, queries).transpose(0, 1)
    return flash4_attention(q, k, v)


def merge_attention(first: tuple[Tensor, Tensor], second: tuple[Tensor, Tensor]) -> Tensor:
    """Attention over two disjoint key sets -> attention over their union, from each part's output
    [B, Sq, H, D] and log-sum-exp [B, H, Sq]: each part weighted by its share of the softmax mass."""
    (out_a, lse_a), (out_b, lse_b) = first, second
    total = torch.logaddexp(lse_a, lse_b)
    weight_a = (lse_a - total).exp().transpose(1, 2).unsqueeze(-1)
    weight_b = (lse_b - total).exp().transpose(1, 2).unsqueeze(-1)
    return (out_a.float() * weight_a + out_b.float() * weight_b).to(out_a.dtype)


def attend(q: Tensor, k: Tensor, v: Tensor, kernel: AttentionKernel) -> Tensor:
    """Softmax attention of q [B, Sq, H, D] over k, v [B or 1, Sk, H, D] -> [B, Sq, H, D]."""
    if kernel is AttentionKernel.flash4:
        return _flash4(q, k, v)[0]
    batch = q.shape[0]
    k, v = k.expand(batch, -1, -1, -1), v.expand(batch, -1, -1, -1)
    return F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)).transpose(1, 2)


def attend_after_prefix(
    q: Tensor, prefix_k: Tensor, prefix_v: Tensor, k: Tensor, v: Tensor, kernel: AttentionKernel
) -> Tensor:
    """Attention of q [B, Sq, H, D] over [prefix + each row's own k, v [B, Sk, H, D]]; the prefix has
    batch 1 (shared by the rows) or B.

    SDPA gets the keys concatenated per row. FlashAttention-4 returns its log-sum-exp, so there the
    two parts run apart and are merged: a shared prefix is read once for all rows, and the copy of
    it into every row (~0.5 GB a call with the sink at its cap) is never made."""
    if kernel is AttentionKernel.flash4:
        return merge_attention(_flash4(q, prefix_k, prefix_v), _flash4(q, k, v))
    return attend(q, concat_prefix(prefix_k, k), concat_prefix(prefix_v, v), kernel)


def concat_prefix(prefix: Tensor, own: Tensor) -> Tensor:
    """Keys (or values) [B, Sk, H, D] as SDPA reads them: the prefix (batch 1 or B) expanded to every
    row, then each row's own."""
    return torch.cat((prefix.expand(own.shape[0], -1, -1, -1), own), dim=1)
