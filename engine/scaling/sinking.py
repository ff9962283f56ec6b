"""Stream-scaled memory sinking: reward feedback decides where a chunk's K/V go when it leaves the
rolling window (dropped, EMA-merged into the latest sink segment, or appended as a new sink).

Flags are decided per beam when a chunk is generated; they act at eviction (`route_evicted`).
Appended and merged segments keep their frame positions: keys are stored un-rotated and rotated at
attention time with each segment's start frame.
"""

from __future__ import annotations

from dataclasses import replace

from engine.models.kv_cache import CacheSegment, KVCache, SinkRoute


def sink_flag(
    short: float,
    earlier_short_mean: float | None,
    long: float,
    previous_long: float | None,
    short_threshold: float,
    long_threshold: float,
) -> SinkRoute:
    """short_increase = short - mean(earlier shorts of this beam); long_drop = previous long - long.
    EMA if the short-term reward rose and the long-term one did not drop; APPEND if it rose while
    the long-term reward dropped (a locally good chunk worth remembering); else DISCARD."""
    if earlier_short_mean is None or previous_long is None:
        return SinkRoute.DISCARD
    short_high = short - earlier_short_mean > short_threshold
    long_low = previous_long - long > long_threshold
    if not short_high:
        return SinkRoute.DISCARD
    return SinkRoute.APPEND if long_low else SinkRoute.EMA


def ema_merge(sink: CacheSegment, evicted: CacheSegment, alpha: float) -> CacheSegment:
    """sink = alpha * sink + (1 - alpha) * evicted, token by token, layer by layer (a new segment:
    beams sharing the old one keep it). The merged segment keeps the sink's frame positions."""
    if sink.keys[0].shape != evicted.keys[0].shape:
        raise ValueError("EMA merge needs a sink segment the size of a chunk")
    keys = tuple(alpha * s + (1 - alpha) * e for s, e in zip(sink.keys, evicted.keys))
    values = tuple(alpha * s + (1 - alpha) * e for s, e in zip(sink.values, evicted.values))
    return replace(sink, keys=keys, values=values)


def route_evicted(
    cache: KVCache, evicted: tuple[CacheSegment, ...], max_sink_frames: int, alpha: float
) -> tuple[KVCache, list[tuple[int, SinkRoute]]]:
    """Apply each evicted chunk's flag to `cache`; returns the new cache and (start_frame, route
    taken) events. APPEND turns into EMA when the sink is full."""
    events = []
    for segment in evicted:
        route = segment.route
        if route is SinkRoute.APPEND and cache.sink_frames + segment.num_frames > max_sink_frames:
            route = SinkRoute.EMA
        if route is SinkRoute.APPEND:
            cache = replace(cache, sink=cache.sink + (segment,))
        elif route is SinkRoute.EMA:
            cache = replace(cache, sink=cache.sink[:-1] + (ema_merge(cache.sink[-1], segment, alpha),))
        events.append((segment.start_frame, route))
    return cache, events
