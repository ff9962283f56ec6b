"""Overnight sessions at real size (plain LongLive N = 1, random-init weights, bf16, 480x832), through
the code path of `streamt1 new`/`continue`: FPS of the session path, snapshot size and write time,
`continue` start-up at head 40 and head 400 (with the snapshot a stop writes, and after a kill,
when at most M chunks are replayed), and disk per chunk and per hour of video.

    python bench/session_bench.py --heads 40,400 --every 40 --dir /tmp/streamt1_overnight
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import torch

from bench.common import bench_models, device_name, fps, loop_for, new_session, sync, timed_run
from engine.config import StreamConfig
from sessions.files import tree_bytes
from sessions.runner import resume
from sessions.snapshots import SNAPSHOT_DIR, snapshot_heads
from sessions.store import STORE_DIR, Session

CHUNKS_PER_HOUR = StreamConfig().chunks_for_seconds(3600, first=False)


def timed_resume(session: Session, models) -> dict:
    loop = loop_for(session, models, None)
    sync(models.device)
    start = time.perf_counter()
    resumed = resume(loop, session)
    sync(models.device)
    return {"seconds": time.perf_counter() - start, "snapshot": resumed.snapshot, "replayed": resumed.replayed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--heads", default="40,400")
    parser.add_argument("--every", type=int, default=40, help="snapshot every M chunks")
    parser.add_argument("--warmup", type=int, default=4)
    parser.add_argument("--no-compile", action="store_true")
    parser.add_argument("--dir", type=Path, default=Path("/tmp/streamt1_overnight"))
    parser.add_argument("--json")
    parser.add_argument("--smoke", action="store_true", help="tiny preset on the CPU: check the script, time nothing")
    args = parser.parse_args()
    models = bench_models(not args.no_compile, smoke=args.smoke)
    session = new_session(args.dir, models, None, snapshot_every=args.every)
    out: dict = {"gpu": device_name(), "every": args.every, "heads": {}}
    for head in (int(h) for h in args.heads.split(",")):
        timed = timed_run(session, loop_for(session, models, None), head - session.head, progress=True)
        rate, chunk_ms = fps(timed, min(args.warmup, len(timed.records) - 1))
        snaps = [s for s in timed.summary.snapshots if s.bytes]
        session = Session.open(args.dir)
        print(f"head {head} generated in {timed.wall:.1f} s", flush=True)
        row = {
            "fps": rate,
            "chunk_ms": chunk_ms,
            "generated": len(timed.records),
            "snapshot_gb": snaps[-1].bytes / 1e9,
            "snapshot_write_s": max(s.seconds for s in snaps),
            "with_stop_snapshot": timed_resume(session, models),
        }
        newest = snapshot_heads(session)[0]
        if newest == head:  # as after a kill: no snapshot at the head, at most M chunks to replay
            shutil.rmtree(args.dir / STORE_DIR / SNAPSHOT_DIR / str(head))
            row["after_kill"] = timed_resume(session, models)
        chunk_bytes = tree_bytes(args.dir / STORE_DIR / "chunks") / session.head
        row["disk"] = {
            "chunk_mb": chunk_bytes / 1e6,
            "chunks_gb_per_hour": chunk_bytes * CHUNKS_PER_HOUR / 1e9,
            "snapshots_gb": tree_bytes(args.dir / STORE_DIR / SNAPSHOT_DIR) / 1e9,
        }
        out["heads"][head] = row
        print(
            f"head {head}: {rate:.2f} FPS ({chunk_ms:.0f} ms a chunk, session path), snapshot {row['snapshot_gb']:.2f} GB "
            f"written in {row['snapshot_write_s']:.1f} s (background); continue start-up "
            f"{row['with_stop_snapshot']['seconds']:.2f} s from the stop snapshot"
            + (
                f", {row['after_kill']['seconds']:.2f} s after a kill (snapshot {row['after_kill']['snapshot']}, "
                f"{row['after_kill']['replayed']} replayed)"
                if "after_kill" in row
                else ""
            )
            + f"; disk {row['disk']['chunk_mb']:.1f} MB a chunk = {row['disk']['chunks_gb_per_hour']:.0f} GB an hour "
            f"of video, + {row['disk']['snapshots_gb']:.1f} GB of snapshots"
        )
    print(f"{out['gpu']}, torch {torch.__version__}, config {StreamConfig()}")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
