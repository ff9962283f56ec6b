"""Candidate-parallel Stream-T1 at real size: one session on the processes of a torchrun job (one
GPU each), through the code path of `streamt1 new` (the leader commits, snapshots and reports; the
other ranks follow). Run it once without torchrun for the 1-GPU baseline, then with torchrun:

    python bench/parallel_bench.py --chunks 10 --warmup 3 --json 1.json
    torchrun --standalone --nproc-per-node 4 bench/parallel_bench.py --chunks 10 --warmup 3 --json 4.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from bench.common import bench_models, device_name, fps, loop_for, new_session, peak_gib, reward_models, timed_run  # noqa: E402
from engine.parallel import start_world, stop_world  # noqa: E402
from engine.scaling.config import ScalingConfig  # noqa: E402
from sessions.group import follow, join  # noqa: E402
from sessions.store import Session  # noqa: E402

PHASES = ("denoise", "decode", "short_reward", "long_reward", "score_gather", "cache_write", "exchange", "commit_wait")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--chunks", type=int, default=10, help="timed chunks (after warm-up)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--rewards", choices=["real", "proxy"], default="real")
    parser.add_argument("--no-compile", action="store_true")
    parser.add_argument("--no-report", action="store_true", help="no report rewrites during the run (their cost)")
    parser.add_argument("--dir", type=Path, default=Path("/tmp/streamt1_parallel"))
    parser.add_argument("--json")
    parser.add_argument("--smoke", action="store_true", help="tiny preset on the CPU (gloo): check the script")
    args = parser.parse_args()
    ranks, _ = start_world("cpu" if args.smoke else "cuda")
    models = bench_models(not args.no_compile, smoke=args.smoke)
    scorers = reward_models(args.rewards, args.smoke, compiled=not args.no_compile)
    folder = args.dir / f"g{ranks.size}"
    session = join(ranks, folder, lambda: new_session(folder, models, ScalingConfig(), args.rewards))
    loop = loop_for(session, models, scorers, ranks)
    total = args.warmup + args.chunks
    if not ranks.leader:
        follow(session, loop, total, None)
        stop_world()
        return
    timed = timed_run(session, loop, total, report=not args.no_report, progress=True)
    stop_world()
    rate, chunk_ms = fps(timed, args.warmup)
    stored = Session.open(folder)
    rows = [stored.record(k) for k in range(args.warmup, stored.head)]
    med = {p: statistics.median(r["seconds"].get(p, 0.0) for r in rows) * 1e3 for p in PHASES}
    received = statistics.median(r.get("received_bytes", 0) for r in rows)
    print(f"{'GPUs':<6}" + "".join(f"{p:>14}" for p in PHASES) + f"{'received':>12}{'chunk':>10}{'FPS':>8}")
    print(
        f"{ranks.size:<6}"
        + "".join(f"{med[p]:>12.1f}ms" for p in PHASES)
        + f"{received / 1e9:>10.2f}GB{chunk_ms:>8.1f}ms{rate:>8.2f}"
    )
    print(
        f"{device_name()} x{ranks.size}, rewards {args.rewards}, compile {not args.no_compile}, report {not args.no_report}, "
        f"threads {torch.get_num_threads()}, "
        f"torch {torch.__version__}, peak {peak_gib():.1f} GiB on rank 0"
    )
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "gpu": device_name(),
                    "gpus": ranks.size,
                    "fps": rate,
                    "report": not args.no_report,
                    "threads": torch.get_num_threads(),
                    "chunk_ms": chunk_ms,
                    "median_ms": med,
                    "received_bytes_rank0": received,
                },
                indent=1,
            )
        )


if __name__ == "__main__":
    main()
