"""The self-attention KV cache as an immutable value: sink segments + a FIFO window of chunks.

Keys are stored WITHOUT rotary position; they are rotated at attention time with the frame index
each segment carries, so a segment keeps its original position wherever it sits (appended sinks in
Stream-T1 attend at the frames they were generated at). Forking a beam shares the segment tensors:
no copy of the history is ever made.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import Enum

from torch import Tensor

from engine.config import StreamConfig


class SinkRoute(str, Enum):
    """What happens to a chunk's K/V when it leaves the rolling window (Stream-T1 memory sinking)."""

    DISCARD = "discard"
    EMA = "ema"
    APPEND = "append"


@dataclass(frozen=True)
class CacheSegment:
    """K/V of consecutive latent frames for every layer; tensors are [B, tokens, heads, head_dim]."""

    start_frame: int
    num_frames: int
    keys: tuple[Tensor, ...]
    values: tuple[Tensor, ...]
    route: SinkRoute = SinkRoute.DISCARD

    @property
    def num_layers(self) -> int:
        return len(self.keys)


@dataclass(frozen=True)
class KVCache:
    """What the next chunk attends to besides itself: `sink` segments, then `window` in time order."""

    sink: tuple[CacheSegment, ...] = ()
    window: tuple[CacheSegment, ...] = ()

    @property
    def segments(self) -> tuple[CacheSegment, ...]:
        return self.sink + self.window

    @property
    def sink_frames(self) -> int:
        return sum(s.num_frames for s in self.sink)

    @property
    def num_frames(self) -> int:
        return sum(s.num_frames for s in self.segments)

    def push(self, segment: CacheSegment, config: StreamConfig) -> tuple[KVCache, tuple[CacheSegment, ...]]:
        """Add a freshly written chunk; return the new cache and the chunks that left the window.

        The first `sink_frames` frames of a video become the sink and are never evicted; later chunks
        enter the FIFO window, which keeps the `config.window_chunks` most recent ones.
        """
        if self.sink_frames < config.sink_frames and not self.window:
            return replace(self, sink=self.sink + (segment,)), ()
        window = self.window + (segment,)
        keep = config.window_chunks
        evicted = window[: len(window) - keep] if len(window) > keep else ()
        return replace(self, window=window[len(evicted) :]), evicted
