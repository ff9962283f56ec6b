"""Video files: decoded frames in [-1, 1] or uint8 to an mp4 or to HWC uint8 arrays."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
from torch import Tensor

from engine.frames import to_uint8


def frames_hwc(frames: Tensor) -> np.ndarray:
    """[3, F, H, W] (float in [-1, 1] or uint8) -> [F, H, W, 3] uint8."""
    return to_uint8(frames).permute(1, 2, 3, 0).contiguous().numpy()


def write_mp4(path: Path, chunks: Iterable[Tensor], fps: int) -> int:
    """Write decoded chunks ([3, F, H, W] each) as one H.264 mp4 (imageio-ffmpeg); returns the
    number of frames written."""
    written = 0
    with imageio.get_writer(path, fps=fps, codec="libx264", quality=8, macro_block_size=8) as writer:
        for chunk in chunks:
            for frame in frames_hwc(chunk):
                writer.append_data(frame)
                written += 1
    return written
