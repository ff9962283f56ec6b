"""Contact-sheet thumbnails: frames of the final pick, read from the store (digest-checked), shrunk
and inlined as JPEG data URIs. Long sessions are sampled evenly, so the sheet stays small."""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass

from PIL import Image

from sessions.report.model import SessionView
from sessions.store import Session
from sessions.video import frames_hwc

THUMB_HEIGHT = 96  # pixels; smaller frames are kept as they are
MAX_SHEET_CHUNKS = 120  # chunks on a contact sheet; longer sessions are sampled evenly


@dataclass(frozen=True)
class Thumb:
    chunk: int
    beam: int  # the final pick's beam at that chunk
    frame: int  # index in the video
    seconds: float  # time of that frame in the video
    uri: str  # data:image/jpeg;base64,...


def sheet_chunks(head: int, limit: int = MAX_SHEET_CHUNKS) -> list[int]:
    """Every chunk, or `limit` evenly spaced ones including the first and the last."""
    if head <= limit:
        return list(range(head))
    return sorted({round(i * (head - 1) / (limit - 1)) for i in range(limit)})


def _jpeg(frame) -> str:
    image = Image.fromarray(frame)
    if image.height > THUMB_HEIGHT:
        image = image.resize((max(1, round(image.width * THUMB_HEIGHT / image.height)), THUMB_HEIGHT), Image.LANCZOS)
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=82)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def thumbnails(
    session: Session,
    view: SessionView,
    chunks: list[int],
    per_chunk: int = 1,
) -> list[Thumb]:
    """`per_chunk` evenly spaced frames of each listed chunk of the final pick."""
    fps = view.config.fps
    out = []
    for k in chunks:
        beam = view.final_path[k]
        count = view.config.pixel_frames(k)
        shown = min(per_chunk, count)
        frames = frames_hwc(session.chunk(k).frames[beam]) if shown else None
        for i in range(shown):
            offset = (2 * i + 1) * count // (2 * shown)
            frame = view.first_frame(k) + offset
            out.append(Thumb(k, beam, frame, frame / fps, _jpeg(frames[offset])))
    return out
