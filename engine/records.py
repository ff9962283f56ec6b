"""What one chunk decided, as typed values with a JSON form (store attributes, chunks.jsonl, the
live view, `show`). The JSON keys are the session format's; `from_json` reads what `to_json` wrote."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class CandidateRecord:
    index: int
    parent: int | None  # beam index at the previous chunk
    child: int
    seed: int
    short: float
    long: float
    fused: float
    kept: bool
    flag: str | None  # memory-sink flag given to a kept chunk
    rank: int = 0  # the process (GPU) that made it


@dataclass(frozen=True)
class SinkEvent:
    """A chunk leaving the rolling window, and where its K/V went."""

    start_frame: int
    route: str  # a SinkRoute value


@dataclass(frozen=True)
class BeamSummary:
    """A surviving beam after the chunk: which candidate it is, its sink size, its last eviction."""

    candidate: int
    sink_frames: int
    last_sink_event: SinkEvent | None


@dataclass(frozen=True)
class ChunkRecord:
    chunk: int
    start_frame: int
    alpha: float
    prompt: str
    candidates: list[CandidateRecord]
    beams: list[BeamSummary]  # best fused score first
    seconds: dict[str, float] = field(default_factory=dict)
    received_bytes: int = 0  # what this chunk's process received from the others (candidate-parallel runs)

    def parent_beam(self, beam: int) -> int | None:
        """Index at the previous chunk of the beam that surviving beam `beam` grew from."""
        return self.candidates[self.beams[beam].candidate].parent

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> ChunkRecord:
        beams = [
            BeamSummary(
                b["candidate"],
                b["sink_frames"],
                None if b["last_sink_event"] is None else SinkEvent(**b["last_sink_event"]),
            )
            for b in raw["beams"]
        ]
        return cls(
            chunk=raw["chunk"],
            start_frame=raw["start_frame"],
            alpha=raw["alpha"],
            prompt=raw["prompt"],
            candidates=[CandidateRecord(**c) for c in raw["candidates"]],
            beams=beams,
            seconds=dict(raw.get("seconds", {})),
            received_bytes=raw.get("received_bytes", 0),
        )
