"""`streamt1 batch`: many prompts, each its own resumable session, over every process of a torchrun
job (one machine or several); parsing and printing only, the work is `sessions.batch`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from engine.config import AttentionKernel
from streamt1_cli.common import (
    AttentionOption,
    ChunksOption,
    CompileOption,
    DeviceName,
    DeviceOption,
    DtypeName,
    DtypeOption,
    Fp8Option,
    ModelDirOption,
    NoScalingOption,
    PresetName,
    PresetOption,
    QuietOption,
    SecondsOption,
    console,
    fail,
    resolve_device,
    resolve_dtype,
)

if TYPE_CHECKING:
    from engine.config import CudaOptions


def batch(
    prompts: Annotated[
        Path,
        typer.Argument(
            help="One prompt a line (.txt), or JSON lines / TOML \\[\\[video]] tables with prompt, seconds or chunks, seed, schedule."
        ),
    ],
    root: Annotated[Path, typer.Option(help="Folder that holds one session per prompt (0000-first-prompt, ...).")],
    gpus_per_session: Annotated[
        int,
        typer.Option(
            help="Processes (GPUs) that run each session together, candidate-parallel; must divide the job's processes."
        ),
    ] = 1,
    preset: PresetOption = PresetName.tiny,
    model_dir: ModelDirOption = None,
    seconds: SecondsOption = None,
    chunks: ChunksOption = None,
    seed: Annotated[int, typer.Option(help="Seed of the prompts that give none.")] = 42,
    no_scaling: NoScalingOption = False,
    device: DeviceOption = DeviceName.auto,
    dtype: DtypeOption = DtypeName.auto,
    quiet: QuietOption = False,
    compile_blocks: CompileOption = True,
    fp8: Fp8Option = False,
    attention: AttentionOption = AttentionKernel.sdpa,
) -> None:
    """Generate a video per prompt, split over the processes of a torchrun job; run it again to
    continue what stopped and skip what is finished."""
    from engine.config import CudaOptions, StreamConfig
    from engine.errors import StreamT1Error
    from engine.parallel import split_world, start_world, stop_world
    from sessions.batch import read_batch, run_batch, status

    config = StreamConfig()
    if seconds is not None and chunks is not None:
        fail("give either --seconds or --chunks, not both")
    try:
        items = read_batch(prompts, 5.0 if seconds is None else seconds, seed, config)
        if chunks is not None:
            items = [type(item)(item.index, item.schedule, chunks, item.seed) for item in items]
    except StreamT1Error as err:
        fail(str(err))
    dev = resolve_device(device)
    world, dev = start_world(dev.type)
    dt = resolve_dtype(dtype, dev)
    try:
        group, index, groups = split_world(world, gpus_per_session)
        runner = _BatchRunner(
            preset.value, model_dir, dev, dt, no_scaling, group, CudaOptions(compile_blocks, fp8, attention)
        )
        run_batch(items, root, group, index, groups, world.rank, runner.spec_of, runner.open_run, _say)
        world.barrier()
    except StreamT1Error as err:
        fail(f"rank {world.rank}: {err}")
    finally:
        stop_world()
    if world.leader:
        _summary([status(item, root) for item in items])


def _say(line: str) -> None:
    print(line, flush=True)


class _BatchRunner:
    """Models and scorers loaded once per process, a loop per session."""

    def __init__(
        self, preset: str, model_dir: Path | None, device, dtype, no_scaling: bool, group, cuda: CudaOptions
    ) -> None:
        from engine.rewards.registry import DEFAULT_REWARDS
        from sessions.run import load_networks

        self.preset, self.model_dir, self.device, self.dtype, self.group = preset, model_dir, device, dtype, group
        self.cuda = cuda
        self.rewards = None if no_scaling else DEFAULT_REWARDS[preset]
        self.models, self.scorers = load_networks(preset, self.rewards, model_dir, device, dtype, cuda)

    def spec_of(self, item):
        from dataclasses import replace

        from engine.config import StreamConfig
        from engine.scaling.config import ScalingConfig
        from sessions.runner import compute_of, spec_for

        config = StreamConfig()
        scaling = None if self.rewards is None else ScalingConfig(horizon_frames=item.chunks * config.chunk_frames)
        spec = spec_for(self.preset, item.seed, config, scaling, self.rewards, item.schedule)
        model_dir = None if self.model_dir is None or not spec.reads_weights else str(self.model_dir.resolve())
        return replace(spec, compute=compute_of(self.device, self.dtype, self.cuda), model_dir=model_dir)

    def open_run(self, session):
        from sessions.run import SessionRun
        from sessions.runner import open_loop

        return SessionRun(session, open_loop(session.spec, self.models, self.scorers, self.group), self.cuda)


def _summary(rows) -> None:
    from rich.table import Table

    table = Table(title="batch")
    for column in ("session", "state", "chunks", "fused", "video"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            row.path.name,
            row.state,
            f"{row.chunks}/{row.item.chunks}",
            "" if row.fused is None else f"{row.fused:.3f}",
            str(row.video or ""),
        )
    console.print(table, width=max(console.width, 200))
