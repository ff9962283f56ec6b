"""Sessions at real size (random-init LongLive, bf16, 480x832, Stream-T1 N=4 with proxy rewards):
disk per chunk (compressed, measured), how long generation waits on the disk, the writer's own
commit time, and the cost and exactness of the replay that `continue` runs.

    python bench/session_bench.py --chunks 6 --dir /tmp/bench_session
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import time
from pathlib import Path

import torch

from bench.tts_bench import text_states
from engine.config import StreamConfig
from engine.models.factory import random_models, tune_for_cuda
from engine.models.presets import LONGLIVE
from engine.rewards.proxies import SharpnessProxy, TemporalConsistencyProxy
from engine.scaling.config import ScalingConfig
from sessions.runner import generate, open_stream, replay, spec_for
from sessions.store import Session

PROMPT = "a red fox in snow"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--chunks", type=int, default=6)
    parser.add_argument("--dir", type=Path, default=Path("/tmp/bench_session"))
    args = parser.parse_args()
    device, dtype = torch.device("cuda"), torch.bfloat16
    models = random_models(LONGLIVE, device, dtype, with_text_encoder=False)
    tune_for_cuda(models, compile_blocks=False)
    scorers = (SharpnessProxy(), TemporalConsistencyProxy())
    spec = spec_for("longlive", 42, StreamConfig(), ScalingConfig(), ("proxy", "proxy"), {0: PROMPT})
    shutil.rmtree(args.dir, ignore_errors=True)
    session = Session.create(args.dir, spec)

    stream = open_stream(spec, models, scorers)
    stream.prompts.add_states(PROMPT, text_states())
    records = []
    start = time.perf_counter()
    generate(stream, session, args.chunks, records.append)
    gen_wall = time.perf_counter() - start
    waits = [r.seconds["commit_wait"] for r in records[1:]]
    chunk_s = [sum(v for k, v in r.seconds.items() if k != "commit_wait") for r in records[1:]]

    last = session.chunk(session.head - 1)
    t0 = time.perf_counter()
    probe = Session.create(args.dir.with_name(args.dir.name + "_probe"), spec)
    probe.commit({**last.record, "chunk": 0}, last.latents, last.noise, last.frames)
    commit_s = time.perf_counter() - t0

    fresh = open_stream(spec, models, scorers)
    fresh.prompts.add_states(PROMPT, text_states())
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    replay(fresh, session)
    torch.cuda.synchronize()
    replay_s = time.perf_counter() - t0
    exact = all(torch.equal(a.frames[-1], b.frames[-1]) and torch.equal(a.cache.window[-1].keys[-1], b.cache.window[-1].keys[-1])
                for a, b in zip(stream.beams, fresh.beams))

    disk = session.disk_bytes()
    print(f"{'chunks':<34}{session.head}")
    print(f"{'disk per chunk (zarr, compressed)':<34}{disk / session.head / 1e6:.1f} MB  ({disk / 1e6:.0f} MB total)")
    print(f"{'30 s video (40 chunks), projected':<34}{40 * disk / session.head / 1e9:.2f} GB")
    print(f"{'chunk time (median, no commit)':<34}{statistics.median(chunk_s) * 1e3:.0f} ms")
    print(f"{'generation waited on disk':<34}{statistics.median(waits) * 1e3:.1f} ms median, {max(waits) * 1e3:.1f} ms max")
    print(f"{'one commit in the writer':<34}{commit_s * 1e3:.0f} ms")
    print(f"{'replay (continue) per chunk':<34}{replay_s / session.head * 1e3:.0f} ms")
    print(f"{'replayed state equals live state':<34}{exact}  (last frames and last-layer keys, every beam)")
    print(f"{'generation wall':<34}{gen_wall:.1f} s, {torch.cuda.get_device_name()}")


if __name__ == "__main__":
    main()
