"""The transformer's attention alone at real size, through the calls every chunk forward makes
(`engine.models.attention`): self-attention over [shared prefix + each row's chunk] by
`attend_after_prefix`, cross-attention over the prompt by `attend`. PyTorch's SDPA (its own pick, and
cuDNN and flash forced; the keys copied into each row first) against FlashAttention-4 (`--attention
flash4`: prefix and chunk apart, merged by log-sum-exp). Time per call, TFLOP/s, and the largest
difference from SDPA's result and from an fp32 softmax on one head; and the K/V copy alone.

    python bench/attention_bench.py [--json OUT.json]

Shapes (480x832: 1560 tokens a latent frame, a 3-frame chunk = 4680 queries a row, 12 heads of 128):
plain LongLive attends to 12 frames (9 cached) with one row; Stream-T1 to 15 frames (the initial
sink) or 27 (the sink at its cap of 15), two rows (one parent's children) a forward; cross-attention
reads the prompt's 512 tokens, shared by the rows.
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
from engine.models.attention import attend, attend_after_prefix, check_attention, concat_prefix

TOKENS_PER_FRAME, CHUNK_FRAMES, HEADS, HEAD_DIM, TEXT_TOKENS = 1560, 3, 12, 128, 512
CHUNK_TOKENS = CHUNK_FRAMES * TOKENS_PER_FRAME
CASES = {  # name: (rows, shared key tokens, each row's own key tokens)
    "plain, 12 frames": (1, 9 * TOKENS_PER_FRAME, CHUNK_TOKENS),
    "Stream-T1, sink 3 (15 frames)": (2, 12 * TOKENS_PER_FRAME, CHUNK_TOKENS),
    "Stream-T1, sink 15 (27 frames)": (2, 24 * TOKENS_PER_FRAME, CHUNK_TOKENS),
    "cross-attention, 2 rows": (2, TEXT_TOKENS, 0),
}
ROUTES = {  # name: (kernel, forced SDPA backend or None)
    "sdpa": (AttentionKernel.sdpa, None),
    "sdpa cudnn": (AttentionKernel.sdpa, SDPBackend.CUDNN_ATTENTION),
    "sdpa flash": (AttentionKernel.sdpa, SDPBackend.FLASH_ATTENTION),
    "flash4": (AttentionKernel.flash4, None),
}


def random_bshd(batch: int, tokens: int, device: torch.device) -> torch.Tensor:
    return torch.randn(batch, tokens, HEADS, HEAD_DIM, device=device, dtype=torch.bfloat16)


def fp32_head(q, k, v, row: int = 0, head: int = 0) -> torch.Tensor:
    """The exact softmax attention of one row's one head over its keys [1, Sk, H, D], in fp32: [Sq, D]."""
    qh, kh, vh = q[row, :, head].float(), k[0, :, head].float(), v[0, :, head].float()
    return ((qh @ kh.T) / math.sqrt(q.shape[-1])).softmax(dim=-1) @ vh


def forward_call(q, shared_k, shared_v, own_k, own_v, kernel):
    """The attention call the chunk forward makes for these keys."""
    if own_k is None:
        return attend(q, shared_k, shared_v, kernel)
    return attend_after_prefix(q, shared_k, shared_v, own_k, own_v, kernel)


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
        for case, (rows, shared, own) in CASES.items():
            q = random_bshd(rows, CHUNK_TOKENS, device)
            shared_k, shared_v = random_bshd(1, shared, device), random_bshd(1, shared, device)
            own_k, own_v = (random_bshd(rows, own, device), random_bshd(rows, own, device)) if own else (None, None)
            flop = 4 * rows * HEADS * CHUNK_TOKENS * (shared + own) * HEAD_DIM
            first_row_keys = (
                (shared_k, shared_v)
                if own_k is None
                else (concat_prefix(shared_k, own_k[:1]), concat_prefix(shared_v, own_v[:1]))
            )
            exact = fp32_head(q, *first_row_keys)
            baseline = baseline_ms = None
            for route, (kernel, backend) in routes.items():
                forced = nullcontext() if backend is None else sdpa_kernel([backend])
                call = (q, shared_k, shared_v, own_k, own_v, kernel)
                try:
                    with forced:
                        out = forward_call(*call)
                        ms = mean_cuda_ms(forward_call, call, args.repeat)
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
            if own:  # what SDPA's route copies first: [shared prefix + own chunk] per row
                concat = mean_cuda_ms(concat_prefix, (shared_k, own_k), args.repeat) * 2  # keys and values
                results.append({"case": case, "route": "k/v concat", "ms": concat})
                print(f"{case:<32}{'k/v concat':<12}{concat:>9.3f}  (inside the sdpa rows above)")
    if args.json:
        Path(args.json).write_text(json.dumps({"gpu": torch.cuda.get_device_name(), "rows": results}, indent=1))


if __name__ == "__main__":
    main()
