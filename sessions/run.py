"""One run of a session, as the CLI and the benchmarks make it: resume at the head (nearest
snapshot, then at most M replayed chunks), generate and commit `num_chunks` more with the chunk log,
the live video, snapshots and the report kept current, then pick the final beam and finish the
video. The caller owns the loop (models, scorers) and the display."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass

from engine.records import ChunkRecord
from engine.stream import ChunkLoop
from sessions.files import reason
from sessions.growing_video import VIDEO_FILE, rebuild_live_video
from sessions.lineage import lineage, save_final_pick
from sessions.records import ChunkLog
from sessions.report.write import ReportWriter
from sessions.runner import Resumed, SnapshotPolicy, final_pick, generate, resume
from sessions.snapshots import SnapshotWrite, remove_unfinished
from sessions.store import Session
from sessions.video import VideoError

LOG_FILE = "chunks.jsonl"


@dataclass(frozen=True)
class RunSummary:
    resumed: Resumed | None  # None: the session had no chunk yet
    snapshots: list[SnapshotWrite]
    final_beam: int
    video_frames: int


def run(session: Session, loop: ChunkLoop, num_chunks: int, on_record: Callable[[ChunkRecord], None],
        new_prompt: str | None = None, resuming: Callable[[], object] = nullcontext,
        on_note: Callable[[str], None] = print, on_resumed: Callable[[], None] = lambda: None,
        report: bool = True) -> RunSummary:
    """Run under the caller's session lock. `new_prompt` takes over from the first new chunk (a
    switch belongs to the session once that chunk is committed); `resuming()` is a context shown
    while the loop catches up (a spinner); `on_note` gets one line per damaged snapshot skipped;
    `on_resumed()` runs once the loop is at the head, before the first new chunk."""
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
        log.write(record.to_json())
        if writer is not None:
            writer.after_commit(record.chunk + 1)

    policy = SnapshotPolicy(session.spec.snapshot_every, session.spec.snapshots_kept)
    try:
        with log:
            snapshots, failed = generate(loop, session, num_chunks, on_record, after_commit, policy, video, settled)
    except BaseException:
        video.close()  # the live file keeps every settled chunk
        raise
    beam = final_pick(session, loop.long_scorer, loop.models.device)
    save_final_pick(session, beam)
    try:
        frames = video.finish(list(enumerate(lineage(session, beam, session.head)))[settled.settled:])
    except (OSError, RuntimeError) as exc:  # imageio-ffmpeg: a broken pipe (disk full), or ffmpeg's failure
        raise VideoError(f"writing {session.path / VIDEO_FILE} failed ({exc}). All {session.head} chunks are "
                         f"committed: `streamt1 export {session.path} OUT.mp4` writes the video") from exc
    for line in failed:
        on_note(f"note: {line}")
    if writer is not None:
        try:
            writer.close()
        except OSError as exc:  # the report is a view: a failure to write it loses nothing
            on_note(f"note: the report was not written ({reason(exc)}); `streamt1 report {session.path}` writes it")
    return RunSummary(resumed, snapshots, beam, frames)
