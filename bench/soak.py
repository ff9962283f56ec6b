"""Soak test of an overnight session on the tiny preset (CPU): a Stream-T1 session of 400+ chunks
made by `streamt1 new` and `continue` in separate processes, stopped (SIGINT mid-run) and continued
again several times, crossing the tiny preset's rotary table (16 chunks). At the end: the loop
state's size at every resume (flat), the resume times and replayed chunks, the live/final video's
frame count, and that the video plays.

    python bench/soak.py --chunks 420 --stops 5 --dir /tmp/streamt1_soak [--beam-size 2 --top-k 1]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import imageio.v3 as iio
import torch

from engine.models.factory import random_models
from engine.models.presets import TINY
from engine.rewards.proxies import SharpnessProxy, TemporalConsistencyProxy
from sessions.runner import open_loop, resume
from sessions.store import Session


def cli(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "streamt1_cli", *args, "--quiet"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--chunks", type=int, default=420)
    parser.add_argument("--stops", type=int, default=5)
    parser.add_argument("--every", type=int, default=20, help="snapshot every M chunks")
    parser.add_argument("--dir", type=Path, default=Path("/tmp/streamt1_soak"))
    parser.add_argument("--beam-size", type=int, default=2)
    parser.add_argument("--top-k", type=int, default=2)
    args = parser.parse_args()
    shutil.rmtree(args.dir, ignore_errors=True)
    models = random_models(TINY, torch.device("cpu"), torch.float32)
    leg = args.chunks // (args.stops + 1)
    rows = []
    started = time.perf_counter()
    for stop in range(args.stops + 1):
        target = args.chunks if stop == args.stops else leg * (stop + 1)
        have = Session.open(args.dir).head if args.dir.exists() else 0
        proc = (
            cli(
                "new",
                "a red fox running through fresh snow",
                "--session",
                str(args.dir),
                "--chunks",
                str(target),
                "--snapshot-every",
                str(args.every),
                "--beam-size",
                str(args.beam_size),
                "--top-k",
                str(args.top_k),
            )
            if have == 0
            else cli("continue", str(args.dir), "--chunks", str(target - have))
        )
        while stop < args.stops and proc.poll() is None:  # Ctrl-C once the leg's last chunks are near
            head = Session.open(args.dir).head if (args.dir / "HEAD").exists() else 0
            if head >= target - 2:
                proc.send_signal(signal.SIGINT)
                break
            time.sleep(0.5)
        _, err = proc.communicate()
        session = Session.open(args.dir)
        scorers = None if session.spec.scaling is None else (SharpnessProxy(), TemporalConsistencyProxy())
        loop = open_loop(session.spec, models, scorers)
        t0 = time.perf_counter()
        resumed = resume(loop, session)
        rows.append(
            {
                "stop": stop,
                "exit": proc.returncode,
                "head": session.head,
                "resume_s": time.perf_counter() - t0,
                "snapshot": resumed.snapshot,
                "replayed": resumed.replayed,
                "state_bytes": loop.state().held_bytes(),
                "live_frames": iio.imread(args.dir / "video.live.mp4").shape[0]
                if (args.dir / "video.live.mp4").exists()
                else None,
            }
        )
        print(json.dumps(rows[-1]), flush=True)
        if proc.returncode not in (0, 130):
            print(err.decode()[-2000:])
            raise SystemExit(1)
    video = iio.imread(args.dir / "video.mp4")
    print(
        f"final: {session.head} chunks, video.mp4 {video.shape[0]} frames, state bytes "
        f"{sorted({r['state_bytes'] for r in rows[1:]})}, replayed at most {max(r['replayed'] for r in rows)} "
        f"(M = {args.every}), {time.perf_counter() - started:.0f} s on {os.cpu_count()} cores"
    )


if __name__ == "__main__":
    main()
