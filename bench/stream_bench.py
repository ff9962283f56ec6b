"""Base streaming speed at real size: LongLive architecture, random-init weights (speed does not
depend on them), bf16, 480x832. Prints a per-chunk phase table and FPS over a rolled window.

    python bench/stream_bench.py --chunks 12 --warmup 2 [--compile] [--json OUT.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from engine.config import StreamConfig
from engine.models.factory import random_models, tune_for_cuda
from engine.models.presets import PRESETS
from engine.stream import StreamGenerator


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--chunks", type=int, default=12, help="timed chunks (after warm-up)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--compile", action="store_true", help="torch.compile the transformer blocks")
    parser.add_argument("--json", help="write the measurements here")
    parser.add_argument("--preset", default="longlive", choices=sorted(PRESETS), help="tiny: CPU smoke test")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--attention", default="auto", choices=["auto", "flash", "cudnn", "efficient"],
                        help="pin the SDPA backend (auto: PyTorch's choice)")
    parser.add_argument("--no-overlap", action="store_true", help="decode on the main stream (no overlap)")
    parser.add_argument("--cudnn-benchmark", action="store_true", help="let cuDNN autotune the VAE convs")
    parser.add_argument("--vae-conv", default="2d", choices=["2d", "3d"],
                        help="run the VAE's causal convs as 2D convs per time tap (default) or as cuDNN 3D convs")
    args = parser.parse_args()

    device = torch.device(args.device)
    torch.backends.cudnn.benchmark = args.cudnn_benchmark
    if args.attention != "auto":
        backend = {"flash": SDPBackend.FLASH_ATTENTION, "cudnn": SDPBackend.CUDNN_ATTENTION,
                   "efficient": SDPBackend.EFFICIENT_ATTENTION}[args.attention]
        sdpa_kernel(backend).__enter__()  # for the whole process
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    preset = PRESETS[args.preset]
    models = random_models(preset, device, dtype, with_text_encoder=False)
    if device.type == "cuda":
        tune_for_cuda(models, compile_blocks=args.compile, vae_convs_as_2d=args.vae_conv == "2d")
    config = StreamConfig()
    gen = StreamGenerator(models, config, seed=42, overlap_decode=not args.no_overlap)
    torch.manual_seed(0)
    gen.set_text_states(torch.randn(1, preset.text_len, preset.transformer["text_dim"]))

    for _ in gen.stream(args.warmup):
        pass
    rows, frames = [], 0
    start = last = time.perf_counter()
    for chunk in gen.stream(args.chunks):
        frames += chunk.frames.shape[2]
        now = time.perf_counter()
        rows.append({"chunk": chunk.index, **chunk.seconds, "wall": now - last})
        last = now
    wall = time.perf_counter() - start

    phases = ["denoise", "cache_write", "decode"]
    print(f"{'chunk':>5} {'denoise ms':>11} {'cache ms':>9} {'decode ms':>10} {'wall ms':>8}")
    for r in rows:
        print(f"{r['chunk']:>5} {r['denoise'] * 1e3:>11.1f} {r['cache_write'] * 1e3:>9.1f} {r['decode'] * 1e3:>10.1f} "
              f"{r['wall'] * 1e3:>8.1f}")
    phases.append("wall")
    median = {p: statistics.median(r[p] for r in rows) for p in phases}
    result = {
        "gpu": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "compile": args.compile,
        "overlap_decode": not args.no_overlap,
        "attention": args.attention,
        "cudnn_benchmark": args.cudnn_benchmark,
        "vae_conv": args.vae_conv,
        "chunks": args.chunks,
        "frames": frames,
        "wall_s": wall,
        "fps": frames / wall,
        "median_ms": {p: v * 1e3 for p, v in median.items()},
        "peak_gib": torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else 0.0,
    }
    print("median per chunk: " + ", ".join(f"{p} {v:.1f} ms" for p, v in result["median_ms"].items()))
    print(f"FPS {result['fps']:.2f} ({frames} frames in {wall:.2f} s), peak {result['peak_gib']:.1f} GiB, "
          f"compile={args.compile}, overlap={not args.no_overlap}, "
          f"attention={args.attention}, cudnn.benchmark={args.cudnn_benchmark}, {result['gpu']}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": rows, **result}, f, indent=1)


if __name__ == "__main__":
    main()
