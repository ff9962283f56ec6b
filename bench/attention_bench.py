"""The transformer's attention alone at real size, through `engine.models.attention.attend` (the
call every chunk forward makes): PyTorch's SDPA (its own pick, and cuDNN and flash forced) against
FlashAttention-4 (`--attention flash4`), at the shapes a chunk forward meets. Time per call,
TFLOP/s, and the largest difference from SDPA's result and from an fp32 softmax on one head; and
the K/V copy each self-attention call makes before any kernel (the prefix and each row's chunk).

    python bench/attention_bench.py [--json OUT.json]

Shapes (480x832: 1560 tokens a latent frame, a 3-frame chunk = 4680 queries a row, 12 heads of 128):
plain LongLive attends to 12 frames with one row; Stream-T1 to 15 frames (the initial sink) or 27
(the sink at its cap of 15), two rows (one parent's children) a forward; cross-attention reads the
prompt's 512 tokens, shared by the rows.
"""

from __future__ import annotations

import argparse
import json
import math
from contextlib import nullcontext
from pathlib import Path

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from bench.cuda_timing import mean_cuda_ms
from engine.config import AttentionKernel
from engine.errors import StreamT1Error
from engine.models.attention import attend, check_attention

TOKENS_PER_FRAME, CHUNK_FRAMES, HEADS, HEAD_DIM, TEXT_TOKENS = 1560, 3, 12, 128, 512
CASES = {  # name: (rows, key tokens, key rows)
    "plain, 12 frames": (1, 12 * TOKENS_PER_FRAME, 1),
    "Stream-T1, sink 3 (15 frames)": (2, 15 * TOKENS_PER_FRAME, 2),
    "Stream-T1, sink 15 (27 frames)": (2, 27 * TOKENS_PER_FRAME, 2),
    "cross-attention, 2 rows": (2, TEXT_TOKENS, 1),
}
ROUTES = {  # name: (kernel, forced SDPA backend or None)
    "sdpa": (AttentionKernel.sdpa, None),
    "sdpa cudnn": (AttentionKernel.sdpa, SDPBackend.CUDNN_ATTENTION),
    "sdpa flash": (AttentionKernel.sdpa, SDPBackend.FLASH_ATTENTION),
    "flash4": (AttentionKernel.flash4, None),
}


def fp32_head(q, k, v, row: int = 0, head: int = 0) -> torch.Tensor:
    """The exact softmax attention of one row's one head, in fp32: [Sq, D]."""
    kr = min(row, k.shape[0] - 1)
    qh, kh, vh = q[row, :, head].float(), k[kr, :, head].float(), v[kr, :, head].float()
    return ((qh @ kh.T) / math.sqrt(q.shape[-1])).softmax(dim=-1) @ vh


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--json")
    args = parser.parse_args()
    device = torch.device("cuda")
    routes = dict(ROUTES)
    try:
        check_attention(AttentionKernel.flash4, device, torch.bfloat16)
    except StreamT1Error as err:
        print(f"flash4 left out: {err}")
        del routes["flash4"]
    torch.manual_seed(0)
    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}, bf16, mean of {args.repeat} calls after 3")
    print(f"{'case':<32}{'route':<12}{'ms':>9}{'TFLOP/s':>9}{'vs sdpa':>9}{'max|d| sdpa':>13}{'max|d| fp32':>13}")
    results = []
    with torch.inference_mode():
        for case, (rows, keys, key_rows) in CASES.items():
            queries = CHUNK_FRAMES * TOKENS_PER_FRAME
            q = torch.randn(rows, queries, HEADS, HEAD_DIM, device=device, dtype=torch.bfloat16)
            k = torch.randn(key_rows, keys, HEADS, HEAD_DIM, device=device, dtype=torch.bfloat16)
            v = torch.randn(key_rows, keys, HEADS, HEAD_DIM, device=device, dtype=torch.bfloat16)
            flop = 4 * rows * HEADS * queries * keys * HEAD_DIM
            exact = fp32_head(q, k, v)
            baseline = baseline_ms = None
            for route, (kernel, backend) in routes.items():
                forced = nullcontext() if backend is None else sdpa_kernel([backend])
                try:
                    with forced:
                        out = attend(q, k, v, kernel)
                        ms = mean_cuda_ms(attend, (q, k, v, kernel), args.repeat)
                except RuntimeError as err:  # a forced backend that refuses these inputs
                    print(f"{case:<32}{route:<12}  refused: {str(err).splitlines()[0][:80]}")
                    continue
                if baseline is None:
                    baseline, baseline_ms = out, ms
                d_sdpa = float((out.float() - baseline.float()).abs().max())
                d_fp32 = float((out[0, :, 0].float() - exact).abs().max())
                row = {
                    "case": case,
                    "route": route,
                    "ms": ms,
                    "tflops": flop / ms / 1e9,
                    "vs_sdpa": baseline_ms / ms,
                    "max_diff_sdpa": d_sdpa,
                    "max_diff_fp32": d_fp32,
                }
                results.append(row)
                print(
                    f"{case:<32}{route:<12}{ms:>9.3f}{row['tflops']:>9.0f}{row['vs_sdpa']:>8.2f}x"
                    f"{d_sdpa:>13.2e}{d_fp32:>13.2e}"
                )
            if key_rows > 1:  # what each self-attention call copies first: [shared prefix + own chunk] per row
                concat = mean_cuda_ms(prefix_concat, (k, v, queries), args.repeat)
                results.append({"case": case, "route": "k/v concat", "ms": concat})
                print(f"{case:<32}{'k/v concat':<12}{concat:>9.3f}  (the copy before the kernel, any route)")
    if args.json:
        Path(args.json).write_text(json.dumps({"gpu": torch.cuda.get_device_name(), "rows": results}, indent=1))


def prefix_concat(k: torch.Tensor, v: torch.Tensor, queries: int) -> tuple[torch.Tensor, torch.Tensor]:
    """K and V as the chunk forward builds them: one cached prefix (batch 1), expanded to every row,
    then each row's own chunk (causal_wan's self-attention)."""
    rows = k.shape[0]
    return tuple(torch.cat((t[:1, :-queries].expand(rows, -1, -1, -1), t[:, -queries:]), dim=1) for t in (k, v))


if __name__ == "__main__":
    main()
