"""Video files: decoded frames in [-1, 1] to uint8 and an mp4 written as chunks arrive."""

from __future__ import annotations

from pathlib import Path
from types import TracebackType

import imageio.v2 as imageio
import numpy as np
from torch import Tensor

from engine.frames import to_uint8


def frames_hwc(frames: Tensor) -> np.ndarray:
    """[3, F, H, W] (float in [-1, 1] or uint8) -> [F, H, W, 3] uint8."""
    return to_uint8(frames).permute(1, 2, 3, 0).contiguous().numpy()


class Mp4Writer:
    """Appends frames to an H.264 mp4 (imageio-ffmpeg) so a long run shows progress on disk."""

    def __init__(self, path: Path, fps: int) -> None:
        self.path = path
        self._writer = imageio.get_writer(path, fps=fps, codec="libx264", quality=8, macro_block_size=8)
        self.frames_written = 0

    def append(self, frames: Tensor) -> None:
        for frame in frames_hwc(frames):
            self._writer.append_data(frame)
            self.frames_written += 1

    def close(self) -> None:
        self._writer.close()

    def __enter__(self) -> "Mp4Writer":
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()
