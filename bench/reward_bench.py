"""The two reward models alone at real size (random init), as Stream-T1 calls them a chunk: HPSv3 on
a group's frames (2 candidates x 12 frames) or on all four candidates' at once, VideoReward on a
group's clips or all four. Each configuration is timed eager, then with `QwenVL.compile_layers`
(same weights, same inputs, so the table also gives the compiled scores' drift), and optionally
profiled once eager with the top kernels.

    python bench/reward_bench.py [--frames 24,48] [--clips 2,4] [--clip-frames 120] [--profile]
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import torch

from bench.common import busy_ms, device_name, reward_models

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
    rows: dict[str, dict] = {name: {} for name in calls}
    for mode in ("eager", "compiled"):
        if mode == "compiled":
            hpsv3.backbone.compile_layers()
            videoreward.backbone.compile_layers()
        for name, call in calls.items():
            ms, out = timed_ms(call, args.repeat)
            rows[name][mode] = ms
            rows[name][f"{mode}_scores"] = out
    print(f"{device_name()}, median of {args.repeat} calls after a warm-up (ms)")
    print(f"{'call':<24}{'eager':>10}{'compiled':>10}{'ratio':>8}{'max |diff| of scores':>22}")
    table = []
    for name, row in rows.items():
        diff = float((row["eager_scores"] - row["compiled_scores"]).abs().max())
        ratio = row["eager"] / row["compiled"]
        print(f"{name:<24}{row['eager']:>10.1f}{row['compiled']:>10.1f}{ratio:>7.2f}x{diff:>22.2e}")
        table.append({"call": name, "eager_ms": row["eager"], "compiled_ms": row["compiled"], "max_diff": diff})
    if args.json:
        Path(args.json).write_text(json.dumps({"device": device_name(), "rows": table}, indent=1))


if __name__ == "__main__":
    main()
