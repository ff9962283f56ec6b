"""The one adapter from a stored chunk record (a dict today, as `ChunkRecord.to_json` writes it plus
the prompt) to the typed values the report reads. When records become dataclasses, only
`ChunkView.from_record` changes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class CandidateView:
    index: int
    parent: int | None  # beam index at the previous chunk
    seed: int
    short: float
    long: float
    fused: float
    kept: bool
    flag: str | None  # memory-sink flag given to a kept chunk


@dataclass(frozen=True)
class SinkEventView:
    start_frame: int  # first latent frame of the evicted chunk
    route: str  # discard, ema or append: what its K/V became


@dataclass(frozen=True)
class BeamView:
    candidate: int  # index of the candidate this surviving beam continues
    sink_frames: int
    last_sink_event: SinkEventView | None  # the latest eviction in this beam's history


@dataclass(frozen=True)
class ChunkView:
    chunk: int
    start_frame: int
    alpha: float  # weight of the short-term reward in the fused score
    prompt: str
    candidates: tuple[CandidateView, ...]
    beams: tuple[BeamView, ...]  # survivors, best fused first
    seconds: dict[str, float]  # wall time per phase

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> ChunkView:
        return cls(
            chunk=record["chunk"],
            start_frame=record["start_frame"],
            alpha=record["alpha"],
            prompt=record["prompt"],
            candidates=tuple(
                CandidateView(c["index"], c["parent"], c["seed"], c["short"], c["long"], c["fused"], c["kept"], c["flag"])
                for c in record["candidates"]),
            beams=tuple(
                BeamView(b["candidate"], b["sink_frames"],
                         None if b["last_sink_event"] is None else SinkEventView(**b["last_sink_event"]))
                for b in record["beams"]),
            seconds=dict(record["seconds"]),
        )

    def parent_beam(self, beam: int) -> int | None:
        """Beam index at the previous chunk that surviving beam `beam` grew from."""
        return self.candidates[self.beams[beam].candidate].parent
