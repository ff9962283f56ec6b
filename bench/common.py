"""What the GPU benchmarks share: real-size random-init models as users' sessions load them, and
a session of their own driven through `sessions.run.SessionRun`, the code path of `streamt1 new`
(which loads its models with `SessionRun.load`; a benchmark brings random-init ones)."""

from __future__ import annotations

import shutil
import statistics
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from engine.config import CudaOptions, StreamConfig
from engine.cuda_setup import compile_reward_layers
from engine.models.factory import Models, random_models, tune_for_cuda
from engine.models.presets import LONGLIVE, TINY, Preset
from engine.parallel import Ranks
from engine.records import ChunkRecord
from engine.rewards.proxies import SharpnessProxy, TemporalConsistencyProxy
from engine.scaling.config import ScalingConfig
from engine.stream import ChunkLoop
from sessions.run import RunSummary, SessionRun
from sessions.runner import open_loop, spec_for
from sessions.store import Session

PROMPT = "a red fox running through fresh snow"


def text_states(preset: Preset) -> torch.Tensor:
    """Stand-in UMT5 output (the 5.7 B-parameter text encoder is not part of any timing)."""
    torch.manual_seed(0)
    return torch.randn(1, preset.text_len, preset.transformer["text_dim"])


def bench_models(compile_blocks: bool, vae_convs_as_2d: bool = True, smoke: bool = False) -> Models:
    """Real size on CUDA in bf16; `smoke`: the tiny preset on the CPU, to check a script in seconds."""
    if smoke:
        return random_models(TINY, torch.device("cpu"), torch.float32, with_text_encoder=False)
    models = random_models(LONGLIVE, torch.device("cuda"), torch.bfloat16, with_text_encoder=False)
    tune_for_cuda(models, compile_blocks=compile_blocks, vae_convs_as_2d=vae_convs_as_2d)
    return models


def reward_models(kind: str, smoke: bool = False, compiled: bool = False):
    """Real-size random-init HPSv3 (Qwen2-VL-7B) and VideoReward (Qwen2-VL-2B), or the proxies;
    `compiled`: with their layers compiled, as a session's run on CUDA compiles them."""
    if kind == "proxy" or smoke:
        return SharpnessProxy(), TemporalConsistencyProxy()
    from bench.reward_models import random_hpsv3, random_videoreward

    scorers = (
        random_hpsv3(torch.device("cuda"), torch.bfloat16),
        random_videoreward(torch.device("cuda"), torch.bfloat16),
    )
    if compiled:
        compile_reward_layers(scorers)
    return scorers


def new_session(
    folder: Path, models: Models, scaling: ScalingConfig | None, rewards: str = "real", snapshot_every: int = 40
) -> Session:
    shutil.rmtree(folder, ignore_errors=True)
    names = ("hpsv3", "videoreward") if rewards == "real" else ("proxy", "proxy")
    spec = spec_for(models.preset.name, 42, StreamConfig(), scaling, None if scaling is None else names, {0: PROMPT})
    return Session.create(folder, replace(spec, snapshot_every=snapshot_every))


def loop_for(session: Session, models: Models, scorers, ranks: Ranks | None = None) -> ChunkLoop:
    loop = open_loop(session.spec, models, scorers, ranks)
    loop.prompts.add_states(PROMPT, text_states(models.preset))
    return loop


@dataclass(frozen=True)
class Timed:
    records: list[ChunkRecord]
    arrivals: list[float]  # perf_counter when each chunk's record reached the caller
    summary: RunSummary
    wall: float


def timed_run(
    session: Session,
    loop: ChunkLoop,
    chunks: int,
    report: bool = True,
    progress: bool = False,
    cuda: CudaOptions = CudaOptions(),
) -> Timed:
    """`chunks` chunks through `SessionRun.run`; `cuda`: what the models were tuned with (the
    session records it)."""
    records, arrivals = [], []

    def on_record(record: ChunkRecord) -> None:
        records.append(record)
        arrivals.append(time.perf_counter())
        if progress:
            gap = arrivals[-1] - (arrivals[-2] if len(arrivals) > 1 else start)
            print(
                f"  chunk {record.chunk}: {gap * 1e3:.0f} ms since the last, "
                + " ".join(f"{k} {v * 1e3:.0f}" for k, v in record.seconds.items()),
                flush=True,
            )

    start = time.perf_counter()
    summary = SessionRun(session, loop, cuda).run(chunks, on_record, report=report)
    if progress:
        print(
            f"  run finished {time.perf_counter() - arrivals[-1]:.1f} s after the last chunk (final pick, video, report)",
            flush=True,
        )
    return Timed(records, arrivals, summary, time.perf_counter() - start)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def peak_gib() -> float:
    return torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else 0.0


def device_name() -> str:
    return torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"


def fps(timed: Timed, warmup: int, config: StreamConfig = StreamConfig()) -> tuple[float, float]:
    """Frames per second and ms per chunk over the chunks after `warmup`, from record arrivals
    (each chunk's record arrives once it is made; its decode may still overlap the next)."""
    span = timed.arrivals[-1] - timed.arrivals[warmup - 1]
    chunks = timed.records[warmup:]
    frames = sum(config.pixel_frames(r.chunk) for r in chunks)
    return frames / span, span / len(chunks) * 1e3


def steady_fps(timed: Timed, warmup: int, config: StreamConfig = StreamConfig()) -> tuple[float, float, int]:
    """Frames per second and ms of the median chunk after `warmup`, and how many chunks took over
    1.5x the median: chunks that compiled a new shape (the sink grew), which a long run pays once."""
    gaps = [b - a for a, b in zip(timed.arrivals[warmup - 1 : -1], timed.arrivals[warmup:])]
    median = statistics.median(gaps)
    frames = config.pixel_frames(timed.records[-1].chunk)
    return frames / median, median * 1e3, sum(g > 1.5 * median for g in gaps)


PSEUDO_EVENTS = ("Command Buffer Full",)  # the profiler logs launch-queue stalls as GPU events


def busy_ms(events) -> float:
    """Milliseconds in which at least one GPU kernel or copy ran (the union of their intervals;
    user ranges and the profiler's own markers left out)."""
    spans = sorted(
        (e.time_range.start, e.time_range.end)
        for e in events
        if e.device_type == torch.autograd.DeviceType.CUDA
        and not getattr(e, "is_user_annotation", False)
        and e.name not in PSEUDO_EVENTS
    )
    busy, end = 0.0, float("-inf")
    for a, b in spans:
        if b > end:
            busy += b - max(a, end)
            end = b
    return busy / 1e3


def kendall_agreement(a: list[float], b: list[float]) -> float:
    """Fraction of candidate pairs that two score lists order alike (1: the same ranking)."""
    pairs = [(i, j) for i in range(len(a)) for j in range(i + 1, len(a))]
    return sum((a[i] - a[j]) * (b[i] - b[j]) > 0 for i, j in pairs) / len(pairs)
