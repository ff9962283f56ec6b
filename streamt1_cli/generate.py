"""`new`, `continue` and `branch`: each ends in the same loop (replay what is committed, generate
and commit more, pick the final beam, write video.mp4)."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Optional

import torch
import typer
from rich.markup import escape

from engine.config import StreamConfig
from engine.errors import StreamT1Error
from engine.positions import PositionMode
from engine.models.factory import MODEL_DIR_ENV, load_models, tune_for_cuda
from engine.models.presets import PRESETS
from engine.rewards.registry import DEFAULT_REWARDS, LONG_REWARDS, SHORT_REWARDS, build_scorers, check_rewards
from engine.scaling.config import ScalingConfig
from sessions.script import read_script
from sessions.growing_video import VIDEO_FILE
from sessions.report.write import REPORT_FILE
from sessions.run import LOG_FILE, run
from sessions.runner import compute_of, open_loop, spec_for
from sessions.spec import ParentRef, SessionSpec
from sessions.store import Session
from sessions.files import reason
from streamt1_cli.common import (
    ChunksOption, CompileOption, PositionsOption, DeviceName, DeviceOption, DtypeName, DtypeOption, ModelDirOption, PresetName,
    QuietOption, SecondsOption, chunks_for, console, fail, resolve_device, resolve_dtype,
)
from streamt1_cli.signals import exit_code, what_stopped
from streamt1_cli.view import UNTRAINED_LABEL, ScalingView

MAX_SEED = 2**62 - 1  # seeds derived per chunk and candidate stay inside torch's 64-bit range


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


def run_session(session: Session, num_chunks: int, model_dir: Path | None, dev: torch.device, dt: torch.dtype,
                quiet: bool, compile_blocks: bool, new_prompt: str | None = None, created: bool = False) -> None:
    """Load the session's models, replay its committed chunks, generate `num_chunks` more (a new
    prompt takes over from the first of them), then write the final pick to video.mp4. A session
    this command `created` is removed again if it fails before committing anything."""
    start = session.head
    try:
        with session.lock():
            try:
                _run_locked(session, num_chunks, model_dir, dev, dt, quiet, compile_blocks, new_prompt)
            except StreamT1Error as err:
                # Under our lock, after the writer was joined: nothing committed means nothing to keep.
                if created and session.head == start:
                    shutil.rmtree(session.path)
                    fail(f"{err}: the new session {session.path} was removed")
                raise
    except StreamT1Error as err:
        fail(str(err))
    except OSError as err:  # a file the session writes besides its chunks (they stop the run as SessionError)
        fail(f"writing {err.filename or session.path} failed ({reason(err)}): {session.path} holds {session.head} "
             f"whole chunks; fix that and `streamt1 continue {session.path}`")
    except KeyboardInterrupt as exc:  # Ctrl-C, SIGTERM, SIGHUP: the queued chunk was written first
        fail(f"{what_stopped(exc)}: {session.path} holds {session.head} whole chunks; nothing half-done was kept. "
             f"Resume with `streamt1 continue {session.path}`", code=exit_code(exc))


def _run_locked(session: Session, num_chunks: int, model_dir: Path | None, dev: torch.device, dt: torch.dtype,
                quiet: bool, compile_blocks: bool, new_prompt: str | None) -> None:
    spec = session.spec
    preset = PRESETS[spec.preset]
    models = load_models(preset, model_dir, dev, dt)
    scorers = None if spec.rewards is None else build_scorers(spec.rewards.short, spec.rewards.long,
                                                              model_dir=model_dir, device=dev, dtype=dt)
    if dev.type == "cuda":
        tune_for_cuda(models, compile_blocks=compile_blocks)
    loop = open_loop(spec, models, scorers)
    start = session.head
    here = compute_of(dev, dt)
    if start and spec.compute not in (None, here):
        note(f"note: {session.path} was made on {spec.compute}; continuing on {here}, so the new chunks are not "
             "bitwise those of an unbroken run there")
    names = ("none", "none") if scorers is None else (scorers[0].name, scorers[1].name)
    view = ScalingView(console, start + num_chunks, f"{spec.preset} {dev.type}", names, quiet, first_chunk=start,
                       report=str(session.path / REPORT_FILE))
    with view:
        summary = run(session, loop, num_chunks, view.update, new_prompt,
                      resuming=lambda: console.status(f"resuming at chunk {start}..."), on_note=note,
                      on_resumed=lambda: None if preset.trained else console.print(UNTRAINED_LABEL))
    label = "" if preset.trained else " (untrained tiny preset)"
    console.print(escape(f"wrote {session.path / VIDEO_FILE}: {summary.video_frames} frames, {session.head} chunks"
                         f"{label}; records in {session.path / LOG_FILE}"))


def note(text: str) -> None:
    console.print(escape(text), highlight=False, soft_wrap=True)


STREAM_T1_OPTIONS = ("beam_size", "top_k", "noise_sigma", "short_threshold", "long_threshold", "fusion_cap",
                     "window_chunks", "max_sink", "horizon", "short_reward", "long_reward")


def new(
    ctx: typer.Context,
    prompt: Annotated[Optional[str], typer.Argument(help="What the video shows (or give --script).")] = None,
    session: Annotated[Path, typer.Option("--session", "-s", help="New folder for this session: video.mp4, chunks.jsonl, session.toml, store.zarr.")] = ...,
    script: Annotated[Optional[Path], typer.Option(help="Prompt schedule (TOML, see prompts/*.toml): prompts switching at given seconds or chunks.")] = None,
    preset: Annotated[PresetName, typer.Option(help="tiny: random-init, CPU seconds, untrained. longlive: real model, needs --model-dir.")] = PresetName.tiny,
    model_dir: ModelDirOption = None,
    seconds: SecondsOption = None,
    chunks: ChunksOption = None,
    seed: Annotated[int, typer.Option(help="Seed of every random draw; the same seed gives the same video.")] = 42,
    device: DeviceOption = DeviceName.auto,
    dtype: DtypeOption = DtypeName.auto,
    quiet: QuietOption = False,
    compile_blocks: CompileOption = True,
    no_scaling: Annotated[bool, typer.Option("--no-scaling", help="Plain LongLive: one candidate a chunk, no rewards.")] = False,
    positions: PositionsOption = PositionMode.AUTO,
    snapshot_every: Annotated[int, typer.Option(help="Chunks between state snapshots: `continue` replays at most this many (each snapshot is ~5 GB a beam at real size).")] = SessionSpec.snapshot_every,
    keep_snapshots: Annotated[int, typer.Option(help="Newest state snapshots kept on disk.")] = SessionSpec.snapshots_kept,
    beam_size: Annotated[int, typer.Option(help="Children per surviving beam.", rich_help_panel="Stream-T1")] = 2,
    top_k: Annotated[int, typer.Option(help="Beams kept from each chunk's pool of beam_size x top_k candidates.", rich_help_panel="Stream-T1")] = 2,
    noise_sigma: Annotated[float, typer.Option(help="Noise propagation: weight of the parent's noise, in [-1, 1].", rich_help_panel="Stream-T1")] = -0.1,
    short_threshold: Annotated[float, typer.Option(help="Memory sinking: short-term reward rise that flags a chunk.", rich_help_panel="Stream-T1")] = 0.0,
    long_threshold: Annotated[float, typer.Option(help="Memory sinking: long-term reward drop that makes a flagged chunk APPEND.", rich_help_panel="Stream-T1")] = 0.2,
    fusion_cap: Annotated[float, typer.Option(help="Largest weight of the short-term reward in the fused score.", rich_help_panel="Stream-T1")] = 0.4,
    window_chunks: Annotated[int, typer.Option(help="Long-term reward window, in chunks.", rich_help_panel="Stream-T1")] = 10,
    max_sink: Annotated[int, typer.Option(help="Largest sink, in latent frames: the initial sink plus whole chunks (3, 6, 9, ...).", rich_help_panel="Stream-T1")] = 15,
    horizon: Annotated[Optional[int], typer.Option(help="Latent frames the fusion weight ramps over, kept by `continue` (default: the length asked for here, as the reference's num_output_frames: 5 s = 21).", rich_help_panel="Stream-T1")] = None,
    short_reward: Annotated[Optional[str], typer.Option(help=f"Short-term (per-frame) scorer: {', '.join(SHORT_REWARDS)} (default: proxy on tiny, hpsv3 on longlive).", rich_help_panel="Stream-T1")] = None,
    long_reward: Annotated[Optional[str], typer.Option(help=f"Long-term (per-clip) scorer: {', '.join(LONG_REWARDS)} (default: proxy on tiny, videoreward on longlive).", rich_help_panel="Stream-T1")] = None,
) -> None:
    """Start a session and generate a video, chunk by chunk (Stream-T1 unless --no-scaling)."""
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
        given = [f"--{name.replace('_', '-')}" for name in STREAM_T1_OPTIONS
                 if ctx.get_parameter_source(name).name == "COMMANDLINE"]  # typer vendors click's enum
        if given:
            fail(f"--no-scaling runs plain LongLive, so {', '.join(given)} would do nothing: drop them or --no-scaling")
    later = sorted(k for k in schedule if k >= num_chunks)
    if later:
        console.print(escape(f"note: the script's prompts from chunk(s) {later} start after the {num_chunks} chunks "
                             "made now; they take over when `streamt1 continue` gets there"), highlight=False)
    rewards = DEFAULT_REWARDS[preset.value]
    rewards = (short_reward or rewards[0], long_reward or rewards[1])
    try:
        scaling = None if no_scaling else ScalingConfig(
            beam_size=beam_size, top_k=top_k, noise_sigma=noise_sigma, short_threshold=short_threshold,
            long_threshold=long_threshold, fusion_cap=fusion_cap, window_chunks=window_chunks,
            max_sink_frames=max_sink,
            horizon_frames=num_chunks * config.chunk_frames if horizon is None else horizon)
        if scaling is not None:
            scaling.check_stream(config)
        if snapshot_every < 1 or keep_snapshots < 1:
            raise StreamT1Error(f"--snapshot-every and --keep-snapshots must be >= 1 (got {snapshot_every}, {keep_snapshots})")
        model_dir = absolute(model_dir)
        spec = replace(spec_for(preset.value, seed, config, scaling, None if no_scaling else rewards, schedule, positions),
                       snapshot_every=snapshot_every, snapshots_kept=keep_snapshots,
                       model_dir=None if model_dir is None else str(model_dir))
        load_check(spec, model_dir)
    except StreamT1Error as err:
        fail(str(err))
    dev = resolve_device(device)
    dt = resolve_dtype(dtype, dev)
    try:
        created = Session.create(session, replace(spec, compute=compute_of(dev, dt)))
    except StreamT1Error as err:
        fail(str(err))
    run_session(created, num_chunks, model_dir, dev, dt, quiet, compile_blocks, created=True)


def load_check(spec: SessionSpec, model_dir: Path | None) -> None:
    """Fail before creating anything when the weights a spec needs are not there."""
    from engine.models.factory import resolve_model_dir

    if PRESETS[spec.preset].trained:
        resolve_model_dir(model_dir)
    if spec.rewards is not None:
        check_rewards(spec.rewards.short, spec.rewards.long, model_dir)


def absolute(model_dir: Path | None) -> Path | None:
    """--model-dir (or $STREAMT1_MODEL_DIR) as an absolute path: the session remembers it."""
    return None if model_dir is None else model_dir.resolve()


def needs_weights(spec: SessionSpec) -> bool:
    """The preset or a scorer reads downloaded weights."""
    return PRESETS[spec.preset].trained or (spec.rewards is not None and
                                            any(r != "proxy" for r in (spec.rewards.short, spec.rewards.long)))


def session_model_dir(session: Session, given: Path | None) -> Path | None:
    """The weights folder for running `session`: --model-dir (or $STREAMT1_MODEL_DIR) when given,
    else the one it was made with (session.toml's model_dir)."""
    if given is not None or session.spec.model_dir is None:
        return absolute(given)
    remembered = Path(session.spec.model_dir)
    if needs_weights(session.spec) and not remembered.is_dir():
        raise StreamT1Error(f"{session.path} was made with the weights in {remembered}, which is not a folder any "
                            f"more: pass --model-dir DIR (or set {MODEL_DIR_ENV}) to use weights elsewhere")
    return remembered


def continue_(
    path: Annotated[Path, typer.Argument(help="The session to extend.")],
    seconds: SecondsOption = None,
    chunks: ChunksOption = None,
    prompt: Annotated[Optional[str], typer.Option(help="New prompt from the next chunk on, replacing the schedule's later prompts (LongLive's KV re-cache).")] = None,
    model_dir: ModelDirOption = None,
    device: DeviceOption = DeviceName.auto,
    dtype: DtypeOption = DtypeName.auto,
    quiet: QuietOption = False,
    compile_blocks: CompileOption = True,
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
    dev = resolve_device(device)
    run_session(session, num_chunks, model_dir, dev, resolve_dtype(dtype, dev), quiet, compile_blocks, new_prompt=prompt)


def branch(
    path: Annotated[Path, typer.Argument(help="The session to branch from.")],
    at: Annotated[int, typer.Option("--at", help="Keep the parent's chunks 0..AT-1, generate from chunk AT.")],
    to: Annotated[Path, typer.Option("--to", help="Folder of the new session.")],
    prompt: Annotated[Optional[str], typer.Option(help="New prompt from chunk AT on, replacing the parent's later prompts (default: the parent's schedule).")] = None,
    seed: Annotated[Optional[int], typer.Option(help="New seed for the chunks from AT on (default: the parent's).")] = None,
    positions: Annotated[Optional[PositionMode], typer.Option(help="Only `auto`, to take an `absolute` session past the rotary table (the same positions for every chunk below it).")] = None,
    seconds: SecondsOption = None,
    chunks: ChunksOption = None,
    model_dir: ModelDirOption = None,
    device: DeviceOption = DeviceName.auto,
    dtype: DtypeOption = DtypeName.auto,
    quiet: QuietOption = False,
    compile_blocks: CompileOption = True,
) -> None:
    """Start a new session from a parent's first AT chunks (referenced, not copied) and continue it:
    with its prompt schedule unless --prompt takes over from AT."""
    check_prompt(prompt, "--prompt")
    check_seed(seed)
    dev = resolve_device(device)
    dt = resolve_dtype(dtype, dev)
    try:
        parent = Session.open(path)
        if not 1 <= at <= parent.head:
            raise StreamT1Error(f"--at {at} is out of range: {path} has chunks 0..{parent.head - 1}, so "
                                f"branch at 1..{parent.head}")
        spec = parent.spec if prompt is None else parent.spec.reprompted(at, prompt)
        if positions is not None and positions is not spec.positions:
            if positions is not PositionMode.AUTO or spec.positions is not PositionMode.ABSOLUTE:
                raise StreamT1Error(f"--positions {positions.value}: a branch keeps its parent's positions "
                                    f"({spec.positions.value}), except absolute -> auto, which is the same below "
                                    "the table")
            spec = replace(spec, positions=positions)
        model_dir = session_model_dir(parent, model_dir)
        child = replace(spec, seed=spec.seed if seed is None else seed, compute=compute_of(dev, dt),
                        parent=ParentRef(str(path.resolve()), at, parent.spec.id),
                        model_dir=None if model_dir is None else str(model_dir))
        num_chunks = chunks_for(seconds, chunks, spec.stream, first=False)
        session = Session.create(to, child, head=at)
    except StreamT1Error as err:
        fail(str(err))
    run_session(session, num_chunks, model_dir, dev, dt, quiet, compile_blocks, created=True)
