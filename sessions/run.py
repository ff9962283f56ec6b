"""One run of a session, as the CLI and the benchmarks make it: resume at the head (nearest
snapshot, then at most M replayed chunks), generate and commit `num_chunks` more with the chunk log,
the live video, snapshots and the report kept current, then pick the final beam and finish the
video. `load_networks` loads what a run needs (models, scorers, CUDA tuning; `batch` uses it too),
`SessionRun` opens its loop; the caller owns the session lock and the display (callbacks for records and notes)."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from engine.config import CudaOptions
from engine.models.attention import check_attention
from engine.models.presets import PRESETS
from engine.records import ChunkRecord
from sessions.files import reason
from sessions.growing_video import VIDEO_FILE, rebuild_live_video
from sessions.lineage import lineage, save_final_pick
from sessions.records import ChunkLog
from sessions.report.write import ReportWriter
from sessions.runner import Resumed, SnapshotPolicy, compute_of, final_pick, generate, open_loop, resume
from sessions.snapshots import SnapshotWrite, remove_unfinished
from sessions.store import Session, SessionError, with_compute
from sessions.video import VideoError, check_video_writer

if TYPE_CHECKING:
    import torch

    from engine.models.factory import Models
    from engine.parallel import Ranks
    from engine.rewards.base import ClipScorer, FrameScorer
    from engine.stream import ChunkLoop
    from sessions.spec import Compute

LOG_FILE = "chunks.jsonl"


@dataclass(frozen=True)
class RunSummary:
    resumed: Resumed | None  # None: the session had no chunk yet
    snapshots: list[SnapshotWrite]
    final_beam: int
    video_frames: int
    chunks: int  # the session's head after the run
    video: Path  # the final pick's video (video.mp4)
    log: Path  # the chunk records (chunks.jsonl)


def load_networks(
    preset: str,
    rewards: tuple[str, str] | None,
    model_dir: Path | None,
    device: torch.device,
    dtype: torch.dtype,
    cuda: CudaOptions,
) -> tuple[Models, tuple[FrameScorer, ClipScorer] | None]:
    """The preset's networks and the (short, long) `rewards` scorers (None: plain LongLive), tuned
    for CUDA as `cuda` says: what every run loads, one session (`SessionRun.load`) or a batch.
    --fp8 and --attention are checked first, before minutes of loading."""
    from engine.cuda_setup import prepare_for_cuda
    from engine.models.factory import load_models
    from engine.rewards.registry import build_scorers

    if cuda.fp8:
        from engine.fp8 import check_fp8

        check_fp8(device)
    check_attention(cuda.attention, device, dtype)
    models = load_models(PRESETS[preset], model_dir, device, dtype)
    scorers = None if rewards is None else build_scorers(*rewards, model_dir=model_dir, device=device, dtype=dtype)
    prepare_for_cuda(models, scorers or (), cuda)
    return models, scorers


class SessionRun:
    """A session ready to generate: its loop (models and scorers) opened at the session's spec.
    `load` builds everything from the spec, as `streamt1 new`/`continue`/`branch` do; `batch` and
    the benchmarks pass a loop of their own, and the CUDA options its networks run with (recorded
    with each chunk). `run` may be called once per loop."""

    def __init__(self, session: Session, loop: ChunkLoop, cuda: CudaOptions) -> None:
        self.session, self.loop, self.cuda = session, loop, cuda

    @classmethod
    def load(
        cls,
        session: Session,
        model_dir: Path | None,
        device: torch.device,
        dtype: torch.dtype,
        cuda: CudaOptions = CudaOptions(),
        ranks: Ranks | None = None,
    ) -> SessionRun:
        """Check the video writer (before minutes of loading and generating), load the preset's
        networks and the session's scorers, tune them for CUDA, open the loop."""
        check_video_writer()
        spec = session.spec
        rewards = None if spec.rewards is None else (spec.rewards.short, spec.rewards.long)
        models, scorers = load_networks(spec.preset, rewards, model_dir, device, dtype, cuda)
        return cls(session, open_loop(spec, models, scorers, ranks), cuda)

    @property
    def trained(self) -> bool:
        """False for random-init weights (the tiny preset): its video is noise-like by design."""
        return self.loop.models.preset.trained

    @property
    def reward_names(self) -> tuple[str, str]:
        """(short-term, long-term) scorer names, ("none", "none") for plain LongLive."""
        loop = self.loop
        return ("none", "none") if loop.long_scorer is None else (loop.short_scorer.name, loop.long_scorer.name)

    @property
    def compute(self) -> Compute:
        """How this run computes its chunks (recorded with each)."""
        return compute_of(self.loop.models.device, self.loop.models.dtype, self.cuda)

    def compute_note(self) -> str | None:
        """A note when the session's last chunk was computed on another device or dtype."""
        session, here = self.session, self.compute
        if not session.head:
            return None
        try:
            made = session.computed_on(session.head - 1)
        except SessionError:  # the run reads every chunk next and names the first damaged one
            return None
        if made in (None, here):
            return None
        return (
            f"note: chunk {session.head - 1} of {session.path} was computed on {made}; continuing on {here}, "
            "so the new chunks are not bitwise those of an unbroken run there"
        )

    def run(
        self,
        num_chunks: int,
        on_record: Callable[[ChunkRecord], None],
        new_prompt: str | None = None,
        resuming: Callable[[], object] = nullcontext,
        on_note: Callable[[str], None] = print,
        on_resumed: Callable[[], None] = lambda: None,
        report: bool = True,
    ) -> RunSummary:
        """`_run` below under the caller's session lock, after the compute note (if any) to `on_note`."""
        if note := self.compute_note():
            on_note(note)
        return _run(
            self.session,
            self.loop,
            self.compute,
            num_chunks,
            on_record,
            new_prompt,
            resuming,
            on_note,
            on_resumed,
            report,
        )


def _run(
    session: Session,
    loop: ChunkLoop,
    compute: Compute,
    num_chunks: int,
    on_record: Callable[[ChunkRecord], None],
    new_prompt: str | None = None,
    resuming: Callable[[], object] = nullcontext,
    on_note: Callable[[str], None] = print,
    on_resumed: Callable[[], None] = lambda: None,
    report: bool = True,
) -> RunSummary:
    """Run under the caller's session lock, recording `compute` with each chunk. `new_prompt` takes
    over from the first new chunk (a switch belongs to the session once that chunk is committed);
    `resuming()` is a context shown while the loop catches up (a spinner); `on_note` gets one line
    per damaged snapshot skipped; `on_resumed()` runs once the loop is at the head, before the
    first new chunk."""
    start = session.head
    remove_unfinished(session)
    resumed = None
    if start:
        with resuming():
            resumed = resume(loop, session)
        for line in resumed.skipped:
            on_note(f"note: {line}")
    video, settled = rebuild_live_video(session, session.spec.stream.fps)
    try:  # rebuilt from every committed record, which checks their digests before anything new is made
        log = ChunkLog(session.path / LOG_FILE, session.records(0, start))
    except BaseException:
        video.close()
        raise
    on_resumed()
    reprompted = new_prompt is not None and new_prompt != loop.prompt_at(start)
    if reprompted:  # committed with each new chunk (HEAD moving is the switch), then in session.toml
        session.spec = session.spec.reprompted(start, new_prompt)
        loop.schedule = session.spec.schedule
    writer = ReportWriter(session.path) if report else None

    def after_commit(record: ChunkRecord) -> None:
        if reprompted and record.chunk == start:
            session.write_spec()  # the human-readable copy of the schedule its first chunk committed
        log.write(with_compute(record.to_json(), compute))
        if writer is not None:
            writer.after_commit(record.chunk + 1)

    policy = SnapshotPolicy(session.spec.snapshot_every, session.spec.snapshots_kept)
    try:
        with log:
            snapshots, failed = generate(
                loop, session, compute, num_chunks, on_record, after_commit, policy, video, settled
            )
    except BaseException:
        video.close()  # the live file keeps every settled chunk
        raise
    beam = final_pick(session, loop.long_scorer, loop.models.device)
    save_final_pick(session, beam)
    try:
        frames = video.finish(list(enumerate(lineage(session, beam, session.head)))[settled.settled :])
    except (OSError, RuntimeError) as exc:  # imageio-ffmpeg: a broken pipe (disk full), or ffmpeg's failure
        raise VideoError(
            f"writing {session.path / VIDEO_FILE} failed ({exc}). All {session.head} chunks are "
            f"committed: `streamt1 export {session.path} OUT.mp4` writes the video"
        ) from exc
    for line in failed:
        on_note(f"note: {line}")
    if writer is not None:
        try:
            writer.close()
        except OSError as exc:  # the report is a view: a failure to write it loses nothing
            on_note(f"note: the report was not written ({reason(exc)}); `streamt1 report {session.path}` writes it")
    return RunSummary(
        resumed, snapshots, beam, frames, session.head, session.path / VIDEO_FILE, session.path / LOG_FILE
    )
