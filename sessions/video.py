"""Video files: decoded frames in [-1, 1] to uint8 and an mp4 written as chunks arrive."""

from __future__ import annotations

from pathlib import Path
from types import TracebackType

import imageio.v2 as imageio
import numpy as np
from torch import Tensor


def to_uint8(frames: Tensor) -> np.ndarray:
    """[3, F, H, W] in [-1, 1] -> [F, H, W, 3] uint8 (round to nearest)."""
    pixels = ((frames.float().clamp(-1, 1) + 1) * 127.5).round().byte()
    return pixels.permute(1, 2, 3, 0).contiguous().numpy()


class Mp4Writer:
    """Appends frames to an H.264 mp4 (imageio-ffmpeg) so a long run shows progress on disk."""

    def __init__(self, path: Path, fps: int) -> None:
        self.path = path
        self._writer = imageio.get_writer(path, fps=fps, codec="libx264", quality=8, macro_block_size=8)
        self.frames_written = 0

    def append(self, frames: Tensor) -> None:
        for frame in to_uint8(frames):
            self._writer.append_data(frame)
            self.frames_written += 1

    def close(self) -> None:
        self._writer.close()

    def __enter__(self) -> "Mp4Writer":
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()
