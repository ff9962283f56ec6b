"""Streaming speed at real size through the code path of `streamt1 new` (a session with its commits,
live video, snapshots and report): plain LongLive (N = 1) and Stream-T1 (N = beam_size x top_k),
side by side in one process. LongLive architecture with random-init weights (speed does not
depend on them), bf16, 480x832; Stream-T1 with real-size random-init HPSv3-7B and VideoReward-2B
(`--rewards real`) or the proxies.

    python bench/stream_bench.py --modes plain,scaled --chunks 6 --warmup 10 [--json OUT.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import traceback
import warnings
from collections import Counter
from pathlib import Path

import torch

from bench.common import (
    bench_models,
    busy_ms,
    device_name,
    fps,
    kendall_agreement,
    loop_for,
    new_session,
    peak_gib,
    reward_models,
    steady_fps,
    sync,
    timed_run,
)
from engine.config import AttentionKernel, CudaOptions
from engine.cuda_setup import compile_reward_layers
from engine.errors import StreamT1Error
from engine.models.attention import check_attention
from engine.rewards.qwen_vl import qwen_backbones
from engine.rewards.vision_attention import batch_vision_attention
from engine.scaling.config import ScalingConfig

PHASES = ("recache", "denoise", "cache_write", "decode", "reward_inputs", "short_reward", "long_reward", "commit_wait")


def profile_steps(loop, steps: int, mode: str) -> None:
    """`steps` more chunks of `loop` (outside the session: kernels and host gaps, not commits) under
    torch.profiler: GPU busy time against wall time, and the top operators by GPU and by host time."""
    from torch.profiler import ProfilerActivity, profile

    sync(torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu"))
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
    with profile(activities=activities) as prof:
        start = time.perf_counter()
        for _ in range(steps):
            loop.step()
        sync(torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu"))
        wall = time.perf_counter() - start
    print(
        f"--- profile {mode}: {steps} chunks, {wall * 1e3 / steps:.1f} ms a chunk, "
        f"GPU busy {busy_ms(prof.events()) / steps:.1f} ms a chunk"
    )
    events = prof.key_averages()
    gpu_key = "self_device_time_total" if torch.cuda.is_available() else "self_cpu_time_total"
    print(events.table(sort_by=gpu_key, row_limit=30, max_name_column_width=70))
    print(events.table(sort_by="cpu_time_total", row_limit=20, max_name_column_width=70))


def sync_sites(loop, steps: int, mode: str) -> None:
    """`steps` more chunks with CUDA sync debugging on: every host-device sync, counted by the code
    that caused it (the innermost frames outside torch), most frequent first."""
    counts: Counter[str] = Counter()

    def note(*_args, **_kwargs) -> None:
        frames = [
            f for f in traceback.extract_stack()[:-1] if "/torch/" not in f.filename and "warnings" not in f.filename
        ]
        counts[" < ".join(f"{Path(f.filename).name}:{f.lineno}" for f in reversed(frames[-3:]))] += 1

    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = note
        torch.cuda.set_sync_debug_mode("warn")
        try:
            for _ in range(steps):
                loop.step()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    print(f"--- host-device syncs {mode}: {sum(counts.values()) / steps:.1f} a chunk")
    for site, count in counts.most_common(25):
        print(f"{count / steps:8.1f}  {site}")


def fp8_drift(models, scorers, chunks: int, folder: Path) -> list[dict]:
    """Stream-T1 chunks in bf16, then each chunk again in FP8 from the very same state (cache,
    beams, noise): per chunk, the drift FP8 adds in one chunk, not a diverged trajectory. Leaves
    the models quantized."""
    from engine.fp8 import use_fp8

    loop = loop_for(new_session(folder, models, ScalingConfig()), models, scorers)
    states, reference = [], []
    for _ in range(chunks):
        states.append(loop.state())
        reference.append(loop.step())
    quantized = use_fp8(models, scorers)
    rows = []
    for state, ref in zip(states, reference):
        loop.load(state)
        out = loop.step()
        kept_ref = [b.candidate for b in ref.record.beams]
        kept_fp8 = [b.candidate for b in out.record.beams]
        same = [i for i in kept_ref if i in kept_fp8] or [None]  # None: no survivor in common
        diff = torch.stack(
            [
                (out.latents[kept_fp8.index(i)] - ref.latents[kept_ref.index(i)]).abs()
                if i is not None
                else torch.full_like(ref.latents[0], float("nan"))
                for i in same
            ]
        )
        scale = ref.latents.abs().mean()
        rows.append(
            {
                "chunk": ref.record.chunk,
                "kept_bf16": kept_ref,
                "kept_fp8": kept_fp8,
                "latent_max_abs": float(diff.max()),
                "latent_mean_abs": float(diff.mean()),
                "latent_mean_abs_bf16": float(scale),
                "fused_ranking_agreement": kendall_agreement(
                    [c.fused for c in ref.record.candidates], [c.fused for c in out.record.candidates]
                ),
                "short_max_abs": max(
                    abs(a.short - b.short) for a, b in zip(ref.record.candidates, out.record.candidates)
                ),
                "long_max_abs": max(abs(a.long - b.long) for a, b in zip(ref.record.candidates, out.record.candidates)),
            }
        )
    print(f"--- FP8 drift: {quantized} Linear layers in FP8, each chunk from the bf16 run's state")
    print(
        f"{'chunk':>6}{'kept bf16':>12}{'kept fp8':>12}{'lat max':>10}{'lat mean':>10}{'|lat|':>8}{'rank agr':>10}{'d short':>9}{'d long':>9}"
    )
    for r in rows:
        print(
            f"{r['chunk']:>6}{str(r['kept_bf16']):>12}{str(r['kept_fp8']):>12}{r['latent_max_abs']:>10.4f}"
            f"{r['latent_mean_abs']:>10.4f}{r['latent_mean_abs_bf16']:>8.3f}{r['fused_ranking_agreement']:>10.2f}"
            f"{r['short_max_abs']:>9.4f}{r['long_max_abs']:>9.4f}"
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--modes",
        default="plain,scaled",
        help="comma-separated runs: plain (LongLive), scaled (Stream-T1), reference (Stream-T1 scoring the "
        "reference's reward inputs); a suffix -noreport runs without the live report, -sdpa-vision with "
        "transformers' own per-image vision attention in the reward models, -fp8 with FP8 matmuls (quantizes "
        "the shared models in place: list fp8 modes last), -eagerrewards with the reward models' layers not compiled "
        "(list those first); a last -flash4 runs the transformer's attention on FlashAttention-4 (scaled-fp8-flash4)",
    )
    parser.add_argument("--chunks", type=int, default=12, help="timed chunks (after warm-up)")
    parser.add_argument(
        "--warmup",
        type=int,
        default=10,
        help="untimed chunks: until every window is full (the attention window's 4 chunks, VideoReward's 10)",
    )
    parser.add_argument("--rewards", choices=["real", "proxy"], default="real")
    parser.add_argument(
        "--full-sink",
        action="store_true",
        help="Stream-T1 appends every evicted chunk to the sink until its cap (then EMA-merges): timed chunks "
        "attend to the largest sink, where a long session ends up; by default the rewards decide, and random "
        "weights rarely append",
    )
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
    parser.add_argument(
        "--drift", type=int, default=0, help="before the first -fp8 mode: FP8 drift over N Stream-T1 chunks (GPU)"
    )
    parser.add_argument(
        "--sync-sites", type=int, default=0, help="then N more chunks counting host-device syncs by site"
    )
    parser.add_argument("--progress", action="store_true", help="a line per chunk with its phases")
    parser.add_argument("--smoke", action="store_true", help="tiny preset on the CPU: check the script, time nothing")
    args = parser.parse_args()
    models = bench_models(not args.no_compile, args.vae_conv == "2d", args.smoke)
    # thresholds every score change passes: each evicted chunk is flagged and APPENDs while the sink can grow
    sink_policy = {"short_threshold": -1e9, "long_threshold": -1e9} if args.full_sink else {}
    results = {}
    scorers = None
    fp8 = False  # the shared models are quantized
    rewards_compiled = False  # the shared reward models' layers are compiled
    if "-flash4" in args.modes:  # refused before any mode runs
        try:
            check_attention(AttentionKernel.flash4, models.device, models.dtype)
        except StreamT1Error as err:
            parser.error(str(err))
    for mode in args.modes.split(","):
        kernel = AttentionKernel.flash4 if mode.endswith("-flash4") else AttentionKernel.sdpa
        base, *options = mode.removesuffix("-flash4").split("-", 1)
        if base not in ("plain", "scaled", "reference") or options not in (
            [],
            ["noreport"],
            ["sdpa-vision"],
            ["fp8"],
            ["eagerrewards"],
        ):
            parser.error(f"unknown mode {mode}")
        if fp8 and options != ["fp8"]:
            parser.error(f"{mode} after an -fp8 mode: the models are quantized by then; list fp8 modes last")
        if rewards_compiled and options == ["eagerrewards"]:
            parser.error(f"{mode} after a mode with compiled reward models: list -eagerrewards modes first")
        scaling = (
            None
            if base == "plain"
            else ScalingConfig(reward_inputs="reference" if base == "reference" else "video", **sink_policy)
        )
        if scorers is None and (scaling is not None or (options == ["fp8"] and args.drift)):
            scorers = reward_models(args.rewards, args.smoke)
        if options == ["fp8"] and not fp8:
            from engine.fp8 import use_fp8

            if args.drift:
                results["fp8_drift"] = fp8_drift(models, scorers, args.drift, args.dir / "drift")
            else:
                use_fp8(models, scorers or ())
            fp8 = True
        if scorers is not None and options != ["eagerrewards"] and not (args.no_compile or rewards_compiled):
            compile_reward_layers(scorers)  # as a session's run on CUDA does
            rewards_compiled = bool(qwen_backbones(scorers))  # the proxies have nothing to compile
        for backbone in qwen_backbones(scorers or ()):  # the real reward models: choose their vision attention
            batch_vision_attention(backbone.model.visual)
            if options == ["sdpa-vision"]:
                backbone.model.visual.config._attn_implementation = "sdpa"
        models.transformer.use_attention(kernel)
        session = new_session(args.dir / mode, models, scaling, args.rewards)
        loop = loop_for(session, models, None if scaling is None else scorers)
        timed = timed_run(
            session,
            loop,
            args.warmup + args.chunks,
            report=options != ["noreport"],
            progress=args.progress,
            cuda=CudaOptions(compile_blocks=not args.no_compile, fp8=fp8, attention=kernel),
        )
        rate, chunk_ms = fps(timed, args.warmup)
        steady_rate, steady_ms, slow = steady_fps(timed, args.warmup)
        # committed records: plain LongLive's decode time is known only once its frames are
        records = [session.record(k) for k in range(args.warmup, session.head)]
        rows = [r["seconds"] for r in records]
        results[mode] = {
            "fps": rate,
            "chunk_ms": chunk_ms,
            "steady_fps": steady_rate,
            "steady_ms": steady_ms,
            "slow_chunks": slow,
            "median_ms": {p: statistics.median(r.get(p, 0.0) for r in rows) * 1e3 for p in PHASES},
            "peak_gib": peak_gib(),
            "rewards_compiled": rewards_compiled and options != ["eagerrewards"],
            "attention": kernel.value,
            "sink_frames": sorted({b["sink_frames"] for r in records for b in r.get("beams", [])}),
        }
        if args.profile:
            profile_steps(loop, args.profile, mode)
        if args.sync_sites and torch.cuda.is_available():
            sync_sites(loop, args.sync_sites, mode)
        del loop
    print(
        f"{'':<20}"
        + "".join(f"{p:>14}" for p in PHASES)
        + f"{'chunk':>10}{'FPS':>8}{'median':>10}{'FPS':>8}{'slow':>6}  sink"
    )
    for mode, r in results.items():
        if mode == "fp8_drift":
            continue
        print(
            f"{mode:<20}"
            + "".join(f"{r['median_ms'][p]:>12.1f}ms" for p in PHASES)
            + f"{r['chunk_ms']:>8.1f}ms{r['fps']:>8.2f}{r['steady_ms']:>8.1f}ms{r['steady_fps']:>8.2f}{r['slow_chunks']:>6}"
            + f"  {','.join(map(str, r['sink_frames']))}"
        )
    print(
        "chunk/FPS: mean over the timed chunks; median/FPS: the median chunk (steady state); slow: timed chunks "
        "over 1.5x the median (a new attention shape compiled: the sink grew); sink: the beams' sink sizes in "
        "those chunks, latent frames"
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
