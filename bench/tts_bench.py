"""Stream-T1 (N = beam_size x top_k candidates) vs plain LongLive, side by side on one GPU, at real
size with random-init weights, bf16, 480x832. Rewards: random-init real-size HPSv3 (Qwen2-VL-7B) and
VideoReward (Qwen2-VL-2B) with `--rewards real`, or the weight-free proxies.

    python bench/tts_bench.py --chunks 12 --warmup 3 --rewards real [--json OUT.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from engine.config import StreamConfig
from engine.models.factory import random_models, tune_for_cuda
from engine.models.presets import LONGLIVE
from engine.rewards.proxies import SharpnessProxy, TemporalConsistencyProxy
from engine.scaling.config import ScalingConfig
from engine.scaling.search import BeamSearchStream
from engine.stream import StreamGenerator

PHASES = ("denoise", "cache_write", "decode", "short_reward", "long_reward")


def text_states() -> torch.Tensor:
    torch.manual_seed(0)
    return torch.randn(1, LONGLIVE.text_len, LONGLIVE.transformer["text_dim"])


def time_base(models, config: StreamConfig, chunks: int, warmup: int) -> dict:
    gen = StreamGenerator(models, config, seed=42)
    gen.set_text_states(text_states())
    for _ in gen.stream(warmup):
        pass
    rows, frames = [], 0
    start = time.perf_counter()
    for chunk in gen.stream(chunks):
        frames += chunk.frames.shape[2]
        rows.append(chunk.seconds)
    wall = time.perf_counter() - start
    return summarize(rows, frames, wall)


def time_scaled(models, config: StreamConfig, scaling: ScalingConfig, scorers, chunks: int, warmup: int) -> dict:
    prompt = "a red fox in snow"
    search = BeamSearchStream(models, config, scaling, scorers, seed=42, prompts={0: prompt})
    search.prompts.add_states(prompt, text_states())  # no UMT5 at benchmark time
    for _ in range(warmup):
        search.step()
    rows, frames = [], 0
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(chunks):
        record = search.step()
        frames += 12 if record.chunk else 9
        rows.append(record.seconds)
    torch.cuda.synchronize()
    wall = time.perf_counter() - start
    return summarize(rows, frames, wall)


def summarize(rows: list[dict], frames: int, wall: float) -> dict:
    return {
        "median_ms": {p: statistics.median(r.get(p, 0.0) for r in rows) * 1e3 for p in PHASES},
        "chunk_ms": wall / len(rows) * 1e3,
        "fps": frames / wall,
    }


def build_scorers(kind: str, device: torch.device, dtype: torch.dtype):
    if kind == "proxy":
        return SharpnessProxy(), TemporalConsistencyProxy()
    from bench.reward_models import random_hpsv3, random_videoreward

    return random_hpsv3(device, dtype), random_videoreward(device, dtype)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--chunks", type=int, default=12)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--rewards", choices=["real", "proxy"], default="real")
    parser.add_argument("--no-compile", action="store_true")
    parser.add_argument("--vae-conv", default="2d", choices=["2d", "3d"], help="see bench/stream_bench.py")
    parser.add_argument("--json")
    args = parser.parse_args()
    device, dtype = torch.device("cuda"), torch.bfloat16
    models = random_models(LONGLIVE, device, dtype, with_text_encoder=False)
    tune_for_cuda(models, compile_blocks=not args.no_compile, vae_convs_as_2d=args.vae_conv == "2d")
    config, scaling = StreamConfig(), ScalingConfig()
    scorers = build_scorers(args.rewards, device, dtype)

    base = time_base(models, config, args.chunks, args.warmup)
    graphs_base = dict(torch._dynamo.utils.counters["stats"])
    scaled = time_scaled(models, config, scaling, scorers, args.chunks, args.warmup)
    print(f"dynamo stats after the base run {graphs_base}, after Stream-T1 {dict(torch._dynamo.utils.counters['stats'])}")
    ratio = scaled["chunk_ms"] / base["chunk_ms"]
    print(f"{'':<22}" + "".join(f"{p:>14}" for p in PHASES) + f"{'chunk wall':>12}{'FPS':>8}")
    for name, r in (("LongLive (N=1)", base), (f"Stream-T1 (N={scaling.candidates})", scaled)):
        print(f"{name:<22}" + "".join(f"{r['median_ms'][p]:>12.1f}ms" for p in PHASES)
              + f"{r['chunk_ms']:>10.1f}ms{r['fps']:>8.2f}")
    print(f"Stream-T1 / LongLive chunk time: {ratio:.2f}x  (rewards: {args.rewards}, "
          f"{torch.cuda.get_device_name()}, peak {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"base": base, "scaled": scaled, "ratio": ratio, "rewards": args.rewards,
                       "gpu": torch.cuda.get_device_name()}, f, indent=1)


if __name__ == "__main__":
    main()
