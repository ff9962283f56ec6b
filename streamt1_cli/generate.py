"""`new`, `continue` and `branch`: parse and check the options, build the session's spec, then hand
the run to `sessions.run.SessionRun` (models, scorers, the loop) and show it. Torch and the model
stack are imported inside the functions, so `--help` and the other commands never load them."""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import fields, replace
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer
from rich.markup import escape

from engine.config import MODEL_DIR_ENV, AttentionKernel, CudaOptions, StreamConfig
from engine.errors import StreamT1Error
from engine.models.presets import PRESETS
from engine.positions import PositionMode
from engine.rewards.registry import DEFAULT_REWARDS, LONG_REWARDS, SHORT_REWARDS, check_rewards
from engine.scaling.config import REWARD_INPUTS, ScalingConfig
from sessions.files import reason
from sessions.script import read_script
from sessions.spec import ParentRef, SessionSpec
from sessions.store import Session
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
    PositionsOption,
    PresetName,
    PresetOption,
    QuietOption,
    SecondsOption,
    chunks_for,
    console,
    fail,
    resolve_device,
    resolve_dtype,
)
from streamt1_cli.signals import exit_code, what_stopped
from streamt1_cli.view import UNTRAINED_LABEL, ScalingView

if TYPE_CHECKING:
    import torch

    from engine.parallel import Ranks

MAX_SEED = 2**62 - 1  # seeds derived per chunk and candidate stay inside torch's 64-bit range
STREAM_T1_PANEL = "Stream-T1"  # `new --help` groups the Stream-T1 options; --no-scaling refuses them
SCALING_DEFAULTS = ScalingConfig()


RewardInputs = Enum("RewardInputs", {name: name for name in REWARD_INPUTS}, type=str)  # typer lists the choices


def scaling_option(field_name: str) -> typer.models.OptionInfo:
    """The `new` option of a ScalingConfig field: its help from the field's metadata (the default is
    the field's, SCALING_DEFAULTS.<field>, given where the option is declared)."""
    meta = next(f.metadata for f in fields(ScalingConfig) if f.name == field_name)
    return typer.Option(help=meta["help"], rich_help_panel=STREAM_T1_PANEL)


def scaling_options(ctx: typer.Context) -> list[str]:
    """The Stream-T1 options given on the command line, as --names."""
    return [
        param.opts[0]
        for param in ctx.command.params
        if getattr(param, "rich_help_panel", None) == STREAM_T1_PANEL
        and ctx.get_parameter_source(param.name).name == "COMMANDLINE"
    ]  # typer vendors click's enum


def check_prompt(text: str | None, what: str) -> None:
    """A prompt must say something and be text (a shell can pass bytes that are not UTF-8)."""
    if text is None:
        return
    if not text.strip():
        fail(f"{what} is empty: say what the video should show")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        fail(f"{what} is not valid UTF-8 text: check your terminal's encoding")


def check_seed(seed: int | None) -> None:
    if seed is not None and not 0 <= seed <= MAX_SEED:
        fail(f"--seed must be a whole number from 0 to {MAX_SEED}, got {seed}")


def run_session(
    session: Session,
    num_chunks: int,
    model_dir: Path | None,
    dev: torch.device,
    dt: torch.dtype,
    quiet: bool,
    cuda: CudaOptions,
    new_prompt: str | None = None,
    created: bool = False,
    ranks: Ranks | None = None,
) -> None:
    """Load the session's models, replay its committed chunks, generate `num_chunks` more (a new
    prompt takes over from the first of them), then write the final pick to video.mp4. A session
    this command `created` is removed again if it fails before committing anything. Under torchrun,
    rank 0 runs the session and the other ranks follow it (candidate-parallel)."""
    from engine.parallel import Ranks, stop_world
    from sessions.group import follow

    ranks = ranks or Ranks()
    start = session.head
    if not ranks.leader:
        try:
            follow(session, _load(session, model_dir, dev, dt, cuda, ranks).loop, num_chunks, new_prompt)
        except StreamT1Error as err:
            fail(f"rank {ranks.rank}: {err}")
        finally:
            stop_world()
        return
    try:
        with session.lock():
            try:
                _run_locked(session, num_chunks, model_dir, dev, dt, quiet, cuda, new_prompt, ranks)
            except StreamT1Error as err:
                # Under our lock, after the writer was joined: nothing committed means nothing to keep.
                if created and session.head == start:
                    shutil.rmtree(session.path)
                    fail(f"{err}: the new session {session.path} was removed")
                raise
    except StreamT1Error as err:
        fail(str(err))
    except OSError as err:  # a file the session writes besides its chunks (they stop the run as SessionError)
        fail(
            f"writing {err.filename or session.path} failed ({reason(err)}): {session.holds()}; "
            f"fix that and `streamt1 continue {session.path}`"
        )
    except KeyboardInterrupt as exc:  # Ctrl-C, SIGTERM, SIGHUP: the queued chunk was written first
        left = start + num_chunks - session.head  # `continue` alone would add its default length instead
        rest = f" --chunks {left}` for the {left} left of the {num_chunks} asked for" if left > 0 else "`"
        so_far = f", or write the video so far with `streamt1 export {session.path} OUT.mp4`" if session.head else ""
        fail(
            f"{what_stopped(exc)}: {session.holds()}; nothing half-done was kept. "
            f"Resume with `streamt1 continue {session.path}{rest}{so_far}",
            code=exit_code(exc),
        )
    finally:
        stop_world()


def _load(
    session: Session, model_dir: Path | None, dev: torch.device, dt: torch.dtype, cuda: CudaOptions, ranks: Ranks
):
    """The session's run (models, scorers, loop), after every rank of a group has checked that all
    would compute the same chunks."""
    from sessions.group import run_facts
    from sessions.run import SessionRun

    loaded = SessionRun.load(session, model_dir, dev, dt, cuda, ranks)
    loop = loaded.loop
    scorers = None if loop.long_scorer is None else (loop.short_scorer, loop.long_scorer)
    ranks.check_same(run_facts(sys.argv[1:], loop.models, scorers))
    return loaded


def _run_locked(
    session: Session,
    num_chunks: int,
    model_dir: Path | None,
    dev: torch.device,
    dt: torch.dtype,
    quiet: bool,
    cuda: CudaOptions,
    new_prompt: str | None,
    ranks: Ranks,
) -> None:
    from sessions.report.write import REPORT_FILE

    loaded = _load(session, model_dir, dev, dt, cuda, ranks)
    start = session.head
    view = ScalingView(
        console,
        start + num_chunks,
        f"{session.spec.preset} {dev.type}",
        loaded.reward_names,
        quiet,
        first_chunk=start,
        report=str(session.path / REPORT_FILE),
    )
    with view:
        summary = loaded.run(
            num_chunks,
            view.update,
            new_prompt,
            resuming=lambda: console.status(f"resuming at chunk {start}..."),
            on_note=note,
            on_resumed=lambda: None if loaded.trained else console.print(UNTRAINED_LABEL),
        )
    label = "" if loaded.trained else " (untrained tiny preset)"
    console.print(
        escape(
            f"wrote {summary.video}: {summary.video_frames} frames, {summary.chunks} chunks"
            f"{label}; records in {summary.log}"
        )
    )


def note(text: str) -> None:
    console.print(escape(text), highlight=False, soft_wrap=True)


def new(
    ctx: typer.Context,
    prompt: Annotated[Optional[str], typer.Argument(help="What the video shows (or give --script).")] = None,
    session: Annotated[
        Path,
        typer.Option(
            "--session", "-s", help="New folder for this session: video.mp4, chunks.jsonl, session.toml, store.zarr."
        ),
    ] = ...,
    script: Annotated[
        Optional[Path],
        typer.Option(help="Prompt schedule (TOML, see prompts/*.toml): prompts switching at given seconds or chunks."),
    ] = None,
    preset: PresetOption = PresetName.tiny,
    model_dir: ModelDirOption = None,
    seconds: SecondsOption = None,
    chunks: ChunksOption = None,
    seed: Annotated[int, typer.Option(help="Seed of every random draw; the same seed gives the same video.")] = 42,
    device: DeviceOption = DeviceName.auto,
    dtype: DtypeOption = DtypeName.auto,
    quiet: QuietOption = False,
    compile_blocks: CompileOption = True,
    fp8: Fp8Option = False,
    attention: AttentionOption = AttentionKernel.sdpa,
    no_scaling: NoScalingOption = False,
    positions: PositionsOption = PositionMode.AUTO,
    snapshot_every: Annotated[
        int,
        typer.Option(
            help="Chunks between state snapshots: `continue` replays at most this many (each is several GB at real size: `streamt1 show` gives the figure)."
        ),
    ] = SessionSpec.snapshot_every,
    keep_snapshots: Annotated[
        int, typer.Option(help="Newest state snapshots kept on disk.")
    ] = SessionSpec.snapshots_kept,
    beam_size: Annotated[int, scaling_option("beam_size")] = SCALING_DEFAULTS.beam_size,
    top_k: Annotated[int, scaling_option("top_k")] = SCALING_DEFAULTS.top_k,
    noise_sigma: Annotated[float, scaling_option("noise_sigma")] = SCALING_DEFAULTS.noise_sigma,
    short_threshold: Annotated[float, scaling_option("short_threshold")] = SCALING_DEFAULTS.short_threshold,
    long_threshold: Annotated[float, scaling_option("long_threshold")] = SCALING_DEFAULTS.long_threshold,
    fusion_cap: Annotated[float, scaling_option("fusion_cap")] = SCALING_DEFAULTS.fusion_cap,
    window_chunks: Annotated[int, scaling_option("window_chunks")] = SCALING_DEFAULTS.window_chunks,
    max_sink: Annotated[int, scaling_option("max_sink_frames")] = SCALING_DEFAULTS.max_sink_frames,
    horizon: Annotated[Optional[int], scaling_option("horizon_frames")] = None,  # None: the length asked for
    reward_inputs: Annotated[RewardInputs, scaling_option("reward_inputs")] = RewardInputs(
        SCALING_DEFAULTS.reward_inputs
    ),
    short_reward: Annotated[
        Optional[str],
        typer.Option(
            help=f"Short-term (per-frame) scorer: {', '.join(SHORT_REWARDS)} (default: proxy on tiny, hpsv3 on longlive).",
            rich_help_panel=STREAM_T1_PANEL,
        ),
    ] = None,
    long_reward: Annotated[
        Optional[str],
        typer.Option(
            help=f"Long-term (per-clip) scorer: {', '.join(LONG_REWARDS)} (default: proxy on tiny, videoreward on longlive).",
            rich_help_panel=STREAM_T1_PANEL,
        ),
    ] = None,
) -> None:
    """Start a session and generate a video, chunk by chunk (Stream-T1 unless --no-scaling)."""
    from sessions.runner import compute_of, spec_for

    config = StreamConfig()
    if (prompt is None) == (script is None):
        fail("give a PROMPT or a --script, not both" if prompt is not None else "give a PROMPT (or a --script)")
    check_prompt(prompt, "the prompt")
    check_seed(seed)
    try:
        schedule = {0: prompt} if script is None else read_script(script, config)
    except StreamT1Error as err:
        fail(str(err))
    num_chunks = chunks_for(seconds, chunks, config)
    if no_scaling:
        if given := scaling_options(ctx):
            fail(f"--no-scaling runs plain LongLive, so {', '.join(given)} would do nothing: drop them or --no-scaling")
    later = sorted(k for k in schedule if k >= num_chunks)
    if later:
        console.print(
            escape(
                f"note: the script's prompts from chunk(s) {later} start after the {num_chunks} chunk(s) "
                "made now; they take over when `streamt1 continue` gets there"
            ),
            highlight=False,
        )
    rewards = DEFAULT_REWARDS[preset.value]
    rewards = (short_reward or rewards[0], long_reward or rewards[1])
    try:
        scaling = (
            None
            if no_scaling
            else ScalingConfig(
                beam_size=beam_size,
                top_k=top_k,
                noise_sigma=noise_sigma,
                short_threshold=short_threshold,
                long_threshold=long_threshold,
                fusion_cap=fusion_cap,
                window_chunks=window_chunks,
                max_sink_frames=max_sink,
                horizon_frames=num_chunks * config.chunk_frames if horizon is None else horizon,
                reward_inputs=reward_inputs.value,
            )
        )
        if scaling is not None:
            scaling.check_stream(config)
        if snapshot_every < 1 or keep_snapshots < 1:
            raise StreamT1Error(
                f"--snapshot-every and --keep-snapshots must be >= 1 (got {snapshot_every}, {keep_snapshots})"
            )
        spec = replace(
            spec_for(preset.value, seed, config, scaling, None if no_scaling else rewards, schedule, positions),
            snapshot_every=snapshot_every,
            snapshots_kept=keep_snapshots,
        )
        if spec.reads_weights:
            model_dir = absolute(model_dir)
        else:
            note_unused_model_dir(ctx, spec)
            model_dir = None
        spec = replace(spec, model_dir=None if model_dir is None else str(model_dir))
        load_check(spec, model_dir)
    except StreamT1Error as err:
        fail(str(err))
    from engine.parallel import start_world
    from sessions.group import join

    ranks, dev = start_world(resolve_device(device).type)
    dt = resolve_dtype(dtype, dev)
    cuda = CudaOptions(compile_blocks, fp8, attention)
    try:
        created = join(
            ranks, session, lambda: Session.create(session, replace(spec, compute=compute_of(dev, dt, cuda)))
        )
    except StreamT1Error as err:
        fail(str(err))
    run_session(created, num_chunks, model_dir, dev, dt, quiet, cuda, created=True, ranks=ranks)


def load_check(spec: SessionSpec, model_dir: Path | None) -> None:
    """Fail before creating anything when the weights a spec needs are not there."""
    if PRESETS[spec.preset].trained:
        from engine.models.factory import resolve_model_dir

        resolve_model_dir(model_dir)
    if spec.rewards is not None:
        check_rewards(spec.rewards.short, spec.rewards.long, model_dir)


def note_unused_model_dir(ctx: typer.Context, spec: SessionSpec) -> None:
    """A weights folder named on the command line for a session that reads none (not one from
    $STREAMT1_MODEL_DIR, which is meant for every session)."""
    if ctx.get_parameter_source("model_dir").name == "COMMANDLINE":
        scorers = "no scorers" if spec.rewards is None else "the proxy scorers"
        console.print(
            escape(f"note: --model-dir is not used: the {spec.preset} preset with {scorers} reads no weights"),
            highlight=False,
        )


def absolute(model_dir: Path | None) -> Path | None:
    """--model-dir (or $STREAMT1_MODEL_DIR) as an absolute path: a session that reads weights
    remembers it."""
    return None if model_dir is None else model_dir.resolve()


def session_model_dir(session: Session, given: Path | None) -> Path | None:
    """The weights folder for running `session`: --model-dir (or $STREAMT1_MODEL_DIR) when given,
    else the one it was made with (session.toml's model_dir)."""
    if given is not None or session.spec.model_dir is None:
        return absolute(given)
    remembered = Path(session.spec.model_dir)
    if session.spec.reads_weights and not remembered.is_dir():
        raise StreamT1Error(
            f"{session.path} was made with the weights in {remembered}, which is not a folder any "
            f"more: pass --model-dir DIR (or set {MODEL_DIR_ENV}) to use weights elsewhere"
        )
    return remembered


def continue_(
    path: Annotated[Path, typer.Argument(help="The session to extend.")],
    seconds: SecondsOption = None,
    chunks: ChunksOption = None,
    prompt: Annotated[
        Optional[str],
        typer.Option(
            help="New prompt from the next chunk on, replacing the schedule's later prompts (LongLive's KV re-cache)."
        ),
    ] = None,
    model_dir: ModelDirOption = None,
    device: DeviceOption = DeviceName.auto,
    dtype: DtypeOption = DtypeName.auto,
    quiet: QuietOption = False,
    compile_blocks: CompileOption = True,
    fp8: Fp8Option = False,
    attention: AttentionOption = AttentionKernel.sdpa,
) -> None:
    """Resume a session at its last whole chunk and generate more, exactly as if it never stopped
    (with the weights folder it was made with, unless --model-dir says otherwise)."""
    try:
        session = Session.open(path)
        model_dir = session_model_dir(session, model_dir)
    except StreamT1Error as err:
        fail(str(err))
    check_prompt(prompt, "--prompt")
    num_chunks = chunks_for(seconds, chunks, session.spec.stream, first=session.head == 0)
    from engine.parallel import start_world

    ranks, dev = start_world(resolve_device(device).type)
    run_session(
        session,
        num_chunks,
        model_dir,
        dev,
        resolve_dtype(dtype, dev),
        quiet,
        CudaOptions(compile_blocks, fp8, attention),
        new_prompt=prompt,
        ranks=ranks,
    )


def branch(
    path: Annotated[Path, typer.Argument(help="The session to branch from.")],
    at: Annotated[int, typer.Option("--at", help="Keep the parent's chunks 0..AT-1, generate from chunk AT.")],
    to: Annotated[Path, typer.Option("--to", help="Folder of the new session.")],
    prompt: Annotated[
        Optional[str],
        typer.Option(
            help="New prompt from chunk AT on, replacing the parent's later prompts (default: the parent's schedule)."
        ),
    ] = None,
    seed: Annotated[
        Optional[int], typer.Option(help="New seed for the chunks from AT on (default: the parent's).")
    ] = None,
    positions: Annotated[
        Optional[PositionMode],
        typer.Option(
            help="Only `auto`, to take an `absolute` session past the rotary table (the same positions for every chunk below it)."
        ),
    ] = None,
    seconds: SecondsOption = None,
    chunks: ChunksOption = None,
    model_dir: ModelDirOption = None,
    device: DeviceOption = DeviceName.auto,
    dtype: DtypeOption = DtypeName.auto,
    quiet: QuietOption = False,
    compile_blocks: CompileOption = True,
    fp8: Fp8Option = False,
    attention: AttentionOption = AttentionKernel.sdpa,
) -> None:
    """Start a new session from a parent's first AT chunks (referenced, not copied) and continue it:
    with its prompt schedule unless --prompt takes over from AT."""
    from sessions.runner import compute_of

    check_prompt(prompt, "--prompt")
    check_seed(seed)
    dev = resolve_device(device)
    dt = resolve_dtype(dtype, dev)
    cuda = CudaOptions(compile_blocks, fp8, attention)
    try:
        parent = Session.open(path)
        if not 1 <= at <= parent.head:
            raise StreamT1Error(
                f"--at {at} is out of range: {path} has chunks 0..{parent.head - 1}, so branch at 1..{parent.head}"
            )
        spec = parent.spec if prompt is None else parent.spec.reprompted(at, prompt)
        if positions is not None and positions is not spec.positions:
            if positions is not PositionMode.AUTO or spec.positions is not PositionMode.ABSOLUTE:
                raise StreamT1Error(
                    f"--positions {positions.value}: a branch keeps its parent's positions "
                    f"({spec.positions.value}), except absolute -> auto, which is the same below "
                    "the table: leave --positions out"
                )
            spec = replace(spec, positions=positions)
        model_dir = session_model_dir(parent, model_dir)
        child = replace(
            spec,
            seed=spec.seed if seed is None else seed,
            compute=compute_of(dev, dt, cuda),
            parent=ParentRef(str(path.resolve()), at, parent.spec.id, os.path.relpath(path.resolve(), to.resolve())),
            model_dir=None if model_dir is None or not spec.reads_weights else str(model_dir),
        )
        num_chunks = chunks_for(seconds, chunks, spec.stream, first=False)
    except StreamT1Error as err:
        fail(str(err))
    from engine.parallel import start_world
    from sessions.group import join

    ranks, dev = start_world(dev.type)
    try:
        session = join(
            ranks, to, lambda: Session.create(to, replace(child, compute=compute_of(dev, dt, cuda)), head=at)
        )
    except StreamT1Error as err:
        fail(str(err))
    run_session(session, num_chunks, model_dir, dev, dt, quiet, cuda, created=True, ranks=ranks)
