"""Where each attended frame sits on Wan's rotary table (1024 latent frames, ~4 min 16 s).

Keys are cached un-rotated, so positions are a choice made at attention time, per chunk:
- `absolute`: every frame at its true index, exactly LongLive (and Stream-T1's appended sinks at the
  frames they were generated at); a chunk past the table is an error.
- `rebased`: the sink segments packed from position 0 in cache order (original sink, then each
  appended Stream-T1 sink in the order it was appended), the window right after them, then the
  chunk being generated. Relative distances inside the window and to the chunk are the true ones;
  the sink sits just before the window instead of far in the past. Positions never grow.
- `auto` (the default): absolute while the chunk fits the table, rebased from the first chunk that
  does not. A video below the table is exactly LongLive.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING

from engine.errors import StreamT1Error

if TYPE_CHECKING:  # the CLI's option types import this module: no torch for `streamt1 --help`
    from engine.models.kv_cache import KVCache


class PositionMode(str, Enum):
    ABSOLUTE = "absolute"
    REBASED = "rebased"
    AUTO = "auto"


@dataclass(frozen=True)
class RotaryLayout:
    """Rotary start position of each cached segment (sink, then window) and of the chunk."""

    segments: tuple[int, ...]
    chunk: int


def rotary_layout(
    mode: PositionMode, cache: KVCache, start_frame: int, chunk_frames: int, table_frames: int
) -> RotaryLayout:
    """The positions for generating (or re-caching) the chunk that starts at `start_frame`."""
    fits = start_frame + chunk_frames <= table_frames
    if mode is PositionMode.ABSOLUTE or (mode is PositionMode.AUTO and fits):
        if not fits:
            raise StreamT1Error(
                f"latent frame {start_frame + chunk_frames - 1} is past the rotary table ({table_frames} frames) "
                "with --positions absolute: branch the session at its head with `--positions auto` to go on "
                "(exact for every chunk made so far)"
            )
        return RotaryLayout(tuple(s.start_frame for s in cache.segments), start_frame)
    starts, position = [], 0
    for segment in cache.segments:
        starts.append(position)
        position += segment.num_frames
    if position + chunk_frames > table_frames:
        raise StreamT1Error(
            f"sink + window + chunk ({position + chunk_frames} latent frames) do not fit the rotary "
            f"table ({table_frames} frames): use a smaller --max-sink"
        )
    return RotaryLayout(tuple(starts), position)
