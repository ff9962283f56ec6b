"""One FP8 Linear against the bf16 Linear it replaces, at the transformer's feed-forward size, both
compiled: the matmul speed-up `--fp8` can give at most, and its error against the bf16 layer.

    python bench/fp8_matmul_bench.py [--tokens 18720]
"""

from __future__ import annotations

import argparse

import torch

from bench.cuda_timing import mean_cuda_ms
from engine.fp8 import Fp8Linear


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--tokens",
        type=int,
        default=18720,
        help="rows: 4 candidates x a 3-frame chunk at 480x832 (1560 tokens a frame)",
    )
    args = parser.parse_args()
    torch.manual_seed(0)
    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}, {args.tokens} tokens, mean of 50 calls after 5")
    print(f"{'layer':<16}{'bf16 ms':>9}{'fp8 ms':>9}{'ratio':>8}{'rel err':>9}")
    with torch.inference_mode():
        for name, (d_in, d_out) in {"ffn up": (1536, 8960), "ffn down": (8960, 1536), "qkv": (1536, 1536)}.items():
            linear = torch.nn.Linear(d_in, d_out, device="cuda", dtype=torch.bfloat16)
            x = torch.randn(args.tokens, d_in, device="cuda", dtype=torch.bfloat16)
            bf16, fp8 = torch.compile(linear), torch.compile(Fp8Linear(linear))
            exact = bf16(x).float()
            err = float((fp8(x).float() - exact).norm() / exact.norm())
            bf16_ms, fp8_ms = (mean_cuda_ms(layer, (x,), repeat=50, warmup=5) for layer in (bf16, fp8))
            print(f"{name:<16}{bf16_ms:>9.3f}{fp8_ms:>9.3f}{bf16_ms / fp8_ms:>7.2f}x{err:>9.4f}")


if __name__ == "__main__":
    main()
