"""The two reward models alone at real size (random init), as Stream-T1 calls them a chunk: HPSv3 on
a group's frames (2 candidates x 12 frames) or on all four candidates' at once, VideoReward on a
group's clips or all four. Each configuration is timed eager, then with `QwenVL.compile_layers`
(same weights, same inputs, so the table also gives the compiled scores' drift), optionally then
with FP8 matmuls (`--fp8`), and optionally profiled once eager with the top kernels. Scores of
random weights say how far the numbers move and whether the ranking holds, not how good they are.

    python bench/reward_bench.py [--frames 24,48] [--clips 2,4] [--clip-frames 120] [--fp8] [--profile]
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import torch

from bench.common import busy_ms, device_name, kendall_agreement, reward_models
from engine.cuda_setup import compile_reward_layers
from engine.rewards.qwen_vl import qwen_backbones

PROMPT = "a red fox running through fresh snow"
FPS = 16  # the stream's frame rate: VideoReward samples the clip at its own 2 fps from it


def timed_ms(call, repeat: int) -> tuple[float, torch.Tensor]:
    """Median milliseconds of `call()` over `repeat` runs after one warm-up, and its last output."""
    out = call()
    times = []
    for _ in range(repeat):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        out = call()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times), out.float().cpu()


def profiled(name: str, call) -> None:
    from torch.profiler import ProfilerActivity, profile

    call()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        call()
        torch.cuda.synchronize()
    print(f"--- profile {name}: GPU busy {busy_ms(prof.events()):.1f} ms")
    print(prof.key_averages().table(sort_by="self_device_time_total", row_limit=25, max_name_column_width=80))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--frames", default="24,48", help="HPSv3 batch sizes (frames a call)")
    parser.add_argument("--clips", default="2,4", help="VideoReward batch sizes (clips a call)")
    parser.add_argument("--clip-frames", type=int, default=120, help="frames of a clip (10 chunks of 12)")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--profile", action="store_true", help="profile the largest batches, eager")
    parser.add_argument("--fp8", action="store_true", help="then FP8 matmuls in the compiled layers (an FP8 GPU)")
    parser.add_argument("--json")
    args = parser.parse_args()
    frames_n = [int(n) for n in args.frames.split(",")]
    clips_n = [int(n) for n in args.clips.split(",")]
    hpsv3, videoreward = reward_models("real")
    g = torch.Generator(device="cuda").manual_seed(0)
    frames = torch.rand(max(frames_n), 3, 480, 832, device="cuda", generator=g).mul(2).sub(1).bfloat16()
    clips = torch.rand(max(clips_n), 3, args.clip_frames, 480, 832, device="cuda", generator=g).mul(2).sub(1)
    clips = clips.bfloat16()
    calls = {f"HPSv3 {n} frames": (lambda n=n: hpsv3.score_frames(frames[:n], PROMPT)) for n in frames_n} | {
        f"VideoReward {n} clips": (lambda n=n: videoreward.score_clips(clips[:n], PROMPT, FPS).overall) for n in clips_n
    }
    if args.profile:
        profiled(f"HPSv3 {max(frames_n)} frames", calls[f"HPSv3 {max(frames_n)} frames"])
        profiled(f"VideoReward {max(clips_n)} clips", calls[f"VideoReward {max(clips_n)} clips"])
    modes = ["eager", "compiled"] + (["fp8"] if args.fp8 else [])
    rows: dict[str, dict] = {name: {} for name in calls}
    for mode in modes:
        if mode == "compiled":
            compile_reward_layers((hpsv3, videoreward))
        if mode == "fp8":  # quantized after the bf16 compiled calls: every layer recompiles for FP8 weights
            from engine.fp8 import quantize_fp8

            for backbone in qwen_backbones((hpsv3, videoreward)):
                quantize_fp8(backbone.model)
        for name, call in calls.items():
            rows[name][mode] = timed_ms(call, args.repeat)
            print(f"  {mode:<9}{name:<24}{rows[name][mode][0]:>9.1f} ms", flush=True)
    print(f"{device_name()}, median ms of {args.repeat} calls after a warm-up; each mode against eager bf16")
    print(f"{'call':<24}" + "".join(f"{m:>10}{'ratio':>8}{'max diff':>10}{'rank agr':>9}" for m in modes))
    table = []
    for name, row in rows.items():
        eager_ms, eager_scores = row["eager"]
        line, entry = f"{name:<24}", {"call": name}
        for mode in modes:
            ms, scores = row[mode]
            diff = float((scores - eager_scores).abs().max())
            agree = kendall_agreement(eager_scores.tolist(), scores.tolist())
            line += f"{ms:>10.1f}{eager_ms / ms:>7.2f}x{diff:>10.2e}{agree:>9.2f}"
            entry |= {f"{mode}_ms": ms, f"{mode}_max_diff": diff, f"{mode}_rank_agreement": agree}
        print(line)
        table.append(entry)
    if args.json:
        Path(args.json).write_text(json.dumps({"device": device_name(), "rows": table}, indent=1))


if __name__ == "__main__":
    main()
