"""Prompt-parallel throughput at real size: `sessions.batch.run_batch` (the code of `streamt1 batch`)
over the processes of a torchrun job, one GPU each, with random-init weights. Videos per hour from
the wall time of the batch (models loaded before the clock starts). Run it without torchrun for
the 1-GPU baseline, then under `torchrun --standalone --nproc-per-node 4`.

    python bench/batch_bench.py --videos 8 --chunks 10 [--scaled] --json 1.json
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from bench.common import bench_models, device_name, reward_models, text_states  # noqa: E402
from engine.config import CudaOptions, StreamConfig  # noqa: E402
from engine.parallel import split_world, start_world, stop_world  # noqa: E402
from engine.scaling.config import ScalingConfig  # noqa: E402
from sessions.batch import BatchItem, run_batch  # noqa: E402
from sessions.run import SessionRun  # noqa: E402
from sessions.runner import open_loop, spec_for  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--videos", type=int, default=8)
    parser.add_argument("--chunks", type=int, default=10)
    parser.add_argument("--scaled", action="store_true", help="Stream-T1 N=4 with real-size reward models")
    parser.add_argument("--dir", type=Path, default=Path("/tmp/streamt1_batch"))
    parser.add_argument("--json")
    parser.add_argument("--smoke", action="store_true", help="tiny preset on the CPU (gloo): check the script")
    args = parser.parse_args()
    world, _ = start_world("cpu" if args.smoke else "cuda")
    group, index, groups = split_world(world, 1)
    models = bench_models(compile_blocks=False, smoke=args.smoke)
    scorers = reward_models("real", args.smoke) if args.scaled else None
    root = args.dir / f"w{world.size}"
    if world.leader:
        shutil.rmtree(root, ignore_errors=True)
    world.barrier()
    config = StreamConfig()
    items = [BatchItem(i, {0: f"prompt number {i}"}, args.chunks, i) for i in range(args.videos)]
    names = ("hpsv3", "videoreward") if args.scaled else None

    def spec_of(item: BatchItem):
        scaling = ScalingConfig(horizon_frames=item.chunks * config.chunk_frames) if args.scaled else None
        return replace(
            spec_for(models.preset.name, item.seed, config, scaling, names, item.schedule), snapshot_every=1000
        )

    def open_run(session):
        loop = open_loop(session.spec, models, scorers, group)
        for prompt in session.spec.schedule.values():
            loop.prompts.add_states(prompt, text_states(models.preset))
        return SessionRun(session, loop, CudaOptions(compile_blocks=False))

    world.barrier()
    start = time.perf_counter()
    run_batch(items, root, group, index, groups, world.rank, spec_of, open_run, lambda line: print(line, flush=True))
    world.barrier()
    wall = time.perf_counter() - start
    stop_world()
    if world.leader:
        per_hour = args.videos / wall * 3600
        seconds = config.seconds_of(args.chunks)
        print(f"{'GPUs':<6}{'videos':>8}{'video s':>9}{'wall s':>9}{'videos/h':>10}")
        print(f"{world.size:<6}{args.videos:>8}{seconds:>9.1f}{wall:>9.1f}{per_hour:>10.1f}")
        print(
            f"{device_name()} x{world.size}, {'Stream-T1 N=4' if args.scaled else 'plain LongLive'}, torch {torch.__version__}"
        )
        if args.json:
            Path(args.json).write_text(
                json.dumps(
                    {
                        "gpu": device_name(),
                        "gpus": world.size,
                        "videos": args.videos,
                        "chunks": args.chunks,
                        "scaled": args.scaled,
                        "wall_s": wall,
                        "videos_per_hour": per_hour,
                    },
                    indent=1,
                )
            )


if __name__ == "__main__":
    main()
