"""What a report shows of one session, read from its committed chunks only (no lock is taken, so a
run can go on; chunks below `HEAD` never change): the spec, the branch lineage, every chunk's
candidates and survivors, the final pick's path and the sink evictions derived from the records."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from engine.config import StreamConfig
from engine.models.presets import PRESETS
from engine.records import ChunkRecord
from sessions.lineage import final_beam
from sessions.spec import Compute, SessionSpec
from sessions.store import Session, compute_in


@dataclass(frozen=True)
class Branch:
    """The session continues the one at `path` from chunk `at` (chunks below it are that one's)."""

    path: str
    at: int


@dataclass(frozen=True)
class ComputeSpan:
    """Chunks `first`..`last`, computed alike (None: a session from before sessions recorded it).
    Chunks computed otherwise are not bitwise what an unbroken run would have made."""

    first: int
    last: int
    compute: Compute | None

    def __str__(self) -> str:
        chunks = f"chunk {self.first}" if self.first == self.last else f"chunks {self.first}..{self.last}"
        return f"{self.compute or 'unrecorded'} ({chunks})"


@dataclass(frozen=True)
class Eviction:
    """A chunk leaving a beam's rolling window, and where its K/V went."""

    chunk: int  # the chunk whose cache write evicted it
    beam: int  # surviving beam at that chunk
    evicted_chunk: int
    route: str


@dataclass(frozen=True)
class SessionView:
    path: Path
    spec: SessionSpec
    ancestors: tuple[Branch, ...]  # the parent first, then its parent, ...
    chunks: tuple[ChunkRecord, ...]
    computes: tuple[ComputeSpan, ...]
    final_beam: int  # surviving beam at the head that export and video.mp4 use
    final_path: tuple[int, ...]  # the final pick's beam index at every chunk
    evictions: tuple[Eviction, ...]

    @property
    def scored(self) -> bool:
        """Plain LongLive sessions make one unscored candidate a chunk."""
        return self.spec.scaling is not None

    @property
    def untrained(self) -> bool:
        return not PRESETS[self.spec.preset].trained

    @property
    def config(self) -> StreamConfig:
        return self.spec.stream

    def first_frame(self, chunk: int) -> int:
        """Index in the video of the chunk's first frame (the video's first chunk is shorter)."""
        return self.config.first_frame(chunk)

    def final_candidates(self) -> list[int]:
        """The candidate index the final pick kept at every chunk."""
        return [ch.beams[b].candidate for ch, b in zip(self.chunks, self.final_path)]

    def final_scores(self, key: str) -> list[float]:
        """The final pick's `short`, `long` or `fused` score at every chunk."""
        return [getattr(ch.candidates[i], key) for ch, i in zip(self.chunks, self.final_candidates())]


def load_session(session: Session) -> SessionView:
    """Read a session as it is committed now."""
    records = tuple(session.records(0, session.head))
    chunks = tuple(ChunkRecord.from_json(r) for r in records)
    final = final_beam(session) if chunks else 0
    return SessionView(
        path=session.path,
        spec=session.spec,
        ancestors=ancestors(session),
        chunks=chunks,
        computes=compute_spans([compute_in(r) for r in records]),
        final_beam=final,
        final_path=lineage(chunks, final),
        evictions=evictions(chunks, session.spec.stream.chunk_frames),
    )


def ancestors(session: Session) -> tuple[Branch, ...]:
    chain = []
    while session.spec.parent is not None:
        chain.append(Branch(str(session.parent.path), session.spec.parent.at))
        session = session.parent
    return tuple(chain)


def compute_spans(computes: list[Compute | None]) -> tuple[ComputeSpan, ...]:
    """Runs of consecutive chunks computed alike."""
    spans: list[ComputeSpan] = []
    for k, compute in enumerate(computes):
        if spans and spans[-1].compute == compute:
            spans[-1] = ComputeSpan(spans[-1].first, k, compute)
        else:
            spans.append(ComputeSpan(k, k, compute))
    return tuple(spans)


def lineage(chunks: tuple[ChunkRecord, ...], beam: int) -> tuple[int, ...]:
    """Beam index at every chunk of the lineage ending in surviving beam `beam` at the last chunk."""
    path = [beam] if chunks else []
    for chunk in reversed(chunks[1:]):
        path.insert(0, chunk.parent_beam(path[0]))
    return tuple(path)


def evictions(chunks: tuple[ChunkRecord, ...], chunk_frames: int) -> tuple[Eviction, ...]:
    """A beam's latest sink event differs from its parent beam's exactly when its cache write evicted
    a chunk (one chunk in, at most one out); plain sessions record none."""
    out = []
    for prev, chunk in zip(chunks, chunks[1:]):
        for b, beam in enumerate(chunk.beams):
            event = beam.last_sink_event
            if event is not None and event != prev.beams[chunk.parent_beam(b)].last_sink_event:
                out.append(Eviction(chunk.chunk, b, event.start_frame // chunk_frames, event.route))
    return tuple(out)
