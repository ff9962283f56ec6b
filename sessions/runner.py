"""Runs the chunk loop against a session: resume from the nearest snapshot (replaying at most M
chunks), generate and commit more while settled chunks grow the live video, snapshot every M
chunks and at the stop, pick the final beam and finish the video. The only place where the
engine's state meets the store."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from engine.config import AttentionKernel, CudaOptions, StreamConfig
from engine.frames import from_uint8
from engine.positions import PositionMode
from engine.records import ChunkRecord
from engine.rewards.base import ClipScorer, FrameScorer
from engine.scaling.config import ScalingConfig
from sessions.files import reason
from sessions.growing_video import GrowingVideo, SettledChunks
from sessions.lineage import final_beam, lineage
from sessions.snapshots import SnapshotWrite, read_snapshot, snapshot_heads, write_snapshot
from sessions.spec import Compute, PromptSwitch, RewardNames, SessionSpec
from sessions.store import Session, SessionError

if TYPE_CHECKING:  # `show` and `export` read sessions through this module: no model stack for them
    from engine.models.factory import Models
    from engine.parallel import Ranks
    from engine.stream import ChunkLoop, ChunkOutput, LoopState

FINAL_PICK_FRAMES = 480  # the final pick scores at most this many frames (30 s at 16 fps) of each beam


def spec_for(
    preset: str,
    seed: int,
    config: StreamConfig,
    scaling: ScalingConfig | None,
    rewards: tuple[str, str] | None,
    schedule: dict[int, str],
    positions: PositionMode = PositionMode.AUTO,
) -> SessionSpec:
    return SessionSpec(
        preset=preset,
        seed=seed,
        stream=config,
        scaling=scaling,
        rewards=None if rewards is None else RewardNames(*rewards),
        prompts=tuple(PromptSwitch(k, p) for k, p in sorted(schedule.items())),
        positions=positions,
    )


def compute_of(device: torch.device, dtype: torch.dtype, cuda: CudaOptions = CudaOptions()) -> Compute:
    """How chunks are computed, as a session records it: the dtype, then "+fp8" with FP8 matmuls and
    "+flash4" with FlashAttention-4 ("bfloat16+fp8+flash4")."""
    parts = [str(dtype).removeprefix("torch.")]
    if cuda.fp8:
        parts.append("fp8")
    if cuda.attention is not AttentionKernel.sdpa:
        parts.append(cuda.attention.value)
    return Compute(device.type, "+".join(parts))


def open_loop(
    spec: SessionSpec, models: Models, scorers: tuple[FrameScorer, ClipScorer] | None, ranks: Ranks | None = None
) -> ChunkLoop:
    from engine.stream import ChunkLoop

    return ChunkLoop(models, spec.stream, spec.scaling, scorers, spec.seed, spec.schedule, spec.positions, ranks)


# --- resuming ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Resumed:
    """How a loop got to the session's head: the snapshot it loaded (None: from chunk 0), the
    chunks it replayed, and the damaged snapshots it skipped (one line each)."""

    snapshot: int | None
    replayed: int
    skipped: list[str]


def _snapshots_below(session: Session, upto: int) -> Iterator[tuple[Session, int]]:
    """(owner, head) of every snapshot usable at `upto`, newest first: the session's own, then,
    for a branch, its parent's at or below the branch point."""
    for head in snapshot_heads(session):
        if head <= upto and (session.spec.parent is None or head >= session.spec.parent.at):
            yield session, head
    if session.spec.parent is not None:
        yield from _snapshots_below(session.parent, min(upto, session.spec.parent.at))


def resume(
    loop: ChunkLoop, session: Session, upto: int | None = None, on_chunk: Callable[[int], None] | None = None
) -> Resumed:
    """Bring `loop` to the state after the first `upto` (default: all) committed chunks: load the
    newest intact snapshot at or below it and replay the chunks after it."""
    upto = session.head if upto is None else upto
    skipped, start = [], None
    for owner, head in _snapshots_below(session, upto):
        try:
            loop.load(read_snapshot(owner, head, loop.models.device, loop.models.dtype))
            start = head
            break
        except SessionError as err:
            skipped.append(f"{err}: falling back to an older snapshot or to replay")
    for k in range(0 if start is None else start, upto):
        stored = session.chunk(k)
        loop.restore(ChunkRecord.from_json(stored.record), stored.latents, stored.noise)
        if on_chunk:
            on_chunk(k)
    return Resumed(start, upto - (start or 0), skipped)


# --- generating --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SnapshotPolicy:
    every: int  # chunks between snapshots (M)
    keep: int  # newest snapshots kept


class _Snapshotter:
    """Writes snapshots on their own thread (a snapshot may be many GB; commits must not wait for
    it), one at a time, copying GPU tensors on a side stream."""

    def __init__(self, session: Session, policy: SnapshotPolicy, device: torch.device) -> None:
        self.session, self.policy = session, policy
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="snapshot-writer")
        self._stream = torch.cuda.Stream(device) if device.type == "cuda" else None
        self._device = device
        self._pending: Future | None = None
        self.written: list[SnapshotWrite] = []
        self.failed: list[str] = []

    def submit(self, state: LoopState, ready: Callable[[], None]) -> None:
        """Snapshot `state` once `ready()` says its tensors are computed."""
        self.wait()
        event = None
        if self._device.type == "cuda":
            event = torch.cuda.Event()
            event.record(torch.cuda.current_stream(self._device))
        self._pending = self._pool.submit(self._write, state, ready, event)

    def _write(self, state: LoopState, ready: Callable[[], None], event) -> None:
        """A snapshot that cannot be written (a full disk) loses nothing committed: it is noted, and
        `continue` starts from an older snapshot, replaying more."""
        ready()
        try:
            if event is not None:
                event.synchronize()
                with torch.cuda.stream(self._stream):
                    self.written.append(write_snapshot(self.session, state, self.policy.keep))
            else:
                self.written.append(write_snapshot(self.session, state, self.policy.keep))
        except OSError as exc:
            self.failed.append(
                f"the snapshot at chunk {state.chunk} was not written ({reason(exc)}); every chunk is "
                "committed, and `continue` starts from an older snapshot"
            )

    def wait(self) -> None:
        if self._pending is not None:
            pending, self._pending = self._pending, None
            pending.result()

    def close(self) -> None:
        try:
            self.wait()
        finally:
            self._pool.shutdown(wait=True)


def generate(
    loop: ChunkLoop,
    session: Session,
    compute: Compute,
    num_chunks: int,
    on_record: Callable[[ChunkRecord], None],
    after_commit: Callable[[ChunkRecord], None] | None = None,
    snapshots: SnapshotPolicy | None = None,
    video: GrowingVideo | None = None,
    settled: SettledChunks | None = None,
) -> tuple[list[SnapshotWrite], list[str]]:
    """Generate `num_chunks` chunks; a background thread commits each (whole or not at all, in
    order, recording `compute` with it) while the next one generates, then runs
    `after_commit(record)` and grows the live video. Every `snapshots.every` chunks, and when
    leaving (even by Ctrl-C), the state goes to a snapshot. `record.seconds["commit_wait"]` is how
    long generation waited on the disk. Returns the snapshots written and one line for each that
    could not be."""
    snapshotter = None if snapshots is None else _Snapshotter(session, snapshots, loop.models.device)
    committed: tuple[LoopState, ChunkOutput] | None = None
    try:
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="session-writer") as writer:
            queued: list[Future] = []
            for _ in range(num_chunks):
                output = loop.step()
                after = loop.state()
                started = time.perf_counter()
                for done in [f for f in queued if f.done()]:
                    done.result()  # a failed write stops the run here, with the session at its last whole chunk
                    queued.remove(done)
                if len(queued) > 1:  # never run more than one chunk ahead of the disk
                    queued.pop(0).result()
                output.record.seconds["commit_wait"] = time.perf_counter() - started
                queued.append(writer.submit(_commit, session, compute, output, after_commit, video, settled))
                committed = (after, output)
                if snapshotter is not None and after.chunk % snapshots.every == 0:
                    snapshotter.submit(after, output.frames.wait)
                on_record(output.record)
            for future in queued:
                future.result()
    finally:
        if snapshotter is not None:
            try:
                if committed is not None and committed[0].chunk == session.head:
                    snapshotter.submit(committed[0], committed[1].frames.wait)
            finally:
                snapshotter.close()
    return ([], []) if snapshotter is None else (snapshotter.written, snapshotter.failed)


def _commit(
    session: Session,
    compute: Compute,
    output: ChunkOutput,
    after_commit: Callable[[ChunkRecord], None] | None,
    video: GrowingVideo | None,
    settled: SettledChunks | None,
) -> None:
    """Write one chunk; chunks it settles go to the live video first, so HEAD never gets ahead of it."""
    record = output.timed_record()
    try:
        frames = output.frames.uint8()
        if video is not None and settled is not None:
            video.append(settled.add(record), {record.chunk: frames})
        session.commit(record.to_json(), output.latents, output.noise, frames, compute)
        if after_commit is not None:
            after_commit(record)
    except OSError as exc:  # disk full, permissions, a vanished folder: the run stops at a whole chunk
        raise SessionError(
            f"writing chunk {record.chunk} failed ({exc.strerror or exc}): {session.holds()}; "
            f"fix that and `streamt1 continue {session.path}`"
        ) from exc


# --- the finished video ------------------------------------------------------------------------------
def final_pick(session: Session, scorer: ClipScorer | None, device: torch.device) -> int:
    """The reference's final pick: the surviving beam whose video the long-term scorer likes best.
    Bounded: each beam's last FINAL_PICK_FRAMES frames (its whole video up to 30 s, as the
    reference scores it) are read back from the store, one beam at a time."""
    head = session.head
    last = ChunkRecord.from_json(session.record(head - 1))
    if len(last.beams) == 1 or scorer is None:
        return 0
    config = session.spec.stream
    scores = []
    for beam in range(len(last.beams)):
        chunks: list[Tensor] = []
        frames = 0
        for k, b in reversed(list(enumerate(lineage(session, beam, head)))):
            if frames >= FINAL_PICK_FRAMES:
                break
            chunks.insert(0, session.chunk(k).frames[b])
            frames += chunks[0].shape[1]
        clip = from_uint8(torch.cat(chunks, dim=1)[:, -FINAL_PICK_FRAMES:], device)
        scores.append(float(scorer.score_clips(clip[None], last.prompt, config.fps).overall.float()[0]))
    return max(range(len(scores)), key=lambda i: (scores[i], -i))


def video_frames(session: Session, beam: int | None = None, upto: int | None = None) -> Iterator[Tensor]:
    """Stored uint8 frames [3, F, H, W], chunk by chunk (bounded memory), of one surviving beam's
    video at the head (default: the final pick), optionally only its first `upto` chunks."""
    upto = session.head if upto is None else upto
    if not 1 <= upto <= session.head:
        raise SessionError(f"--upto {upto} is out of range: {session.path} has {session.head} chunks")
    beams = lineage(session, final_beam(session) if beam is None else beam, session.head)
    return (session.chunk(k).frames[b] for k, b in enumerate(beams[:upto]))
