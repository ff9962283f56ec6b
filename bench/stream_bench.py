"""Streaming speed at real size through the code path of `streamt1 new` (a session with its commits,
live video, snapshots and report): plain LongLive (N = 1) and Stream-T1 (N = beam_size x top_k),
side by side in one process. LongLive architecture with random-init weights (speed does not
depend on them), bf16, 480x832; Stream-T1 with real-size random-init HPSv3-7B and VideoReward-2B
(`--rewards real`) or the proxies.

    python bench/stream_bench.py --modes plain,scaled --chunks 12 --warmup 4 [--json OUT.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from bench.common import (
    bench_models,
    device_name,
    fps,
    loop_for,
    new_session,
    peak_gib,
    reward_models,
    sync,
    timed_run,
)
from engine.rewards.vision_attention import batch_vision_attention
from engine.scaling.config import ScalingConfig

PHASES = ("recache", "denoise", "cache_write", "decode", "reward_inputs", "short_reward", "long_reward", "commit_wait")


def profile_steps(loop, steps: int, mode: str) -> None:
    """`steps` more chunks of `loop` (outside the session: kernels and host gaps, not commits) under
    torch.profiler: the top operators by GPU and by host time."""
    from torch.profiler import ProfilerActivity, profile

    sync(torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu"))
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
    with profile(activities=activities) as prof:
        start = time.perf_counter()
        for _ in range(steps):
            loop.step()
        sync(torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu"))
        wall = time.perf_counter() - start
    events = prof.key_averages()
    gpu_key = "self_device_time_total" if torch.cuda.is_available() else "self_cpu_time_total"
    print(f"--- profile {mode}: {steps} chunks, {wall * 1e3 / steps:.1f} ms a chunk")
    print(events.table(sort_by=gpu_key, row_limit=40, max_name_column_width=70))
    print(events.table(sort_by="cpu_time_total", row_limit=25, max_name_column_width=70))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--modes",
        default="plain,scaled",
        help="comma-separated runs: plain (LongLive), scaled (Stream-T1), reference (Stream-T1 scoring the "
        "reference's reward inputs); a suffix -noreport runs without the live report, -sdpa-vision with "
        "transformers' own per-image vision attention in the reward models",
    )
    parser.add_argument("--chunks", type=int, default=12, help="timed chunks (after warm-up)")
    parser.add_argument("--warmup", type=int, default=4)
    parser.add_argument("--rewards", choices=["real", "proxy"], default="real")
    parser.add_argument("--no-compile", action="store_true")
    parser.add_argument(
        "--vae-conv",
        default="2d",
        choices=["2d", "3d"],
        help="the VAE's causal convs as 2D convs per time tap (default) or cuDNN 3D convs",
    )
    parser.add_argument("--dir", type=Path, default=Path("/tmp/streamt1_bench"))
    parser.add_argument("--json")
    parser.add_argument("--profile", type=int, default=0, help="then N more chunks under torch.profiler (tables)")
    parser.add_argument("--progress", action="store_true", help="a line per chunk with its phases")
    parser.add_argument("--smoke", action="store_true", help="tiny preset on the CPU: check the script, time nothing")
    args = parser.parse_args()
    models = bench_models(not args.no_compile, args.vae_conv == "2d", args.smoke)
    results = {}
    scorers = None
    for mode in args.modes.split(","):
        base, *options = mode.split("-", 1)
        if base not in ("plain", "scaled", "reference") or options not in ([], ["noreport"], ["sdpa-vision"]):
            parser.error(f"unknown mode {mode}")
        scaling = (
            None if base == "plain" else ScalingConfig(reward_inputs="reference" if base == "reference" else "video")
        )
        if scaling is not None and scorers is None:
            scorers = reward_models(args.rewards, args.smoke)
        for scorer in scorers or ():
            if hasattr(scorer, "backbone"):  # the real reward models: choose their vision attention
                batch_vision_attention(scorer.backbone.model.visual)
                if options == ["sdpa-vision"]:
                    scorer.backbone.model.visual.config._attn_implementation = "sdpa"
        session = new_session(args.dir / mode, models, scaling, args.rewards)
        loop = loop_for(session, models, None if scaling is None else scorers)
        timed = timed_run(
            session, loop, args.warmup + args.chunks, report=options != ["noreport"], progress=args.progress
        )
        rate, chunk_ms = fps(timed, args.warmup)
        # committed records: plain LongLive's decode time is known only once its frames are
        rows = [session.record(k)["seconds"] for k in range(args.warmup, session.head)]
        results[mode] = {
            "fps": rate,
            "chunk_ms": chunk_ms,
            "median_ms": {p: statistics.median(r.get(p, 0.0) for r in rows) * 1e3 for p in PHASES},
            "peak_gib": peak_gib(),
        }
        if args.profile:
            profile_steps(loop, args.profile, mode)
        del loop
    print(f"{'':<20}" + "".join(f"{p:>14}" for p in PHASES) + f"{'chunk':>10}{'FPS':>8}")
    for mode, r in results.items():
        print(
            f"{mode:<20}"
            + "".join(f"{r['median_ms'][p]:>12.1f}ms" for p in PHASES)
            + f"{r['chunk_ms']:>8.1f}ms{r['fps']:>8.2f}"
        )
    if "scaled" in results and "plain" in results:
        print(f"Stream-T1 / plain chunk time: {results['scaled']['chunk_ms'] / results['plain']['chunk_ms']:.2f}x")
    print(
        f"{device_name()}, rewards {args.rewards}, compile {not args.no_compile}, torch {torch.__version__}, "
        f"peak {peak_gib():.1f} GiB"
    )
    if args.json:
        Path(args.json).write_text(json.dumps({"gpu": device_name(), **results}, indent=1))


if __name__ == "__main__":
    main()
