"""Video files: decoded frames in [-1, 1] or uint8 to an mp4, to PNG frames, or to HWC uint8
arrays. Files are written beside their target and renamed into place once whole and readable, so
a kill or a full disk never leaves a truncated video, nor removes the previous one."""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
from collections.abc import Iterable
from contextlib import suppress
from pathlib import Path

import imageio.v2 as imageio
import imageio.v3 as iio
import numpy as np
from torch import Tensor

from engine.errors import StreamT1Error
from engine.frames import to_uint8
from sessions.files import reason

try:
    import imageio_ffmpeg
except ImportError:  # reported by check_video_writer, before a run generates anything
    imageio_ffmpeg = None

FRAME_NAME = re.compile(r"frame_\d{5}\.png")  # what write_pngs writes, and all that --force replaces
logging.getLogger("imageio_ffmpeg").setLevel(logging.ERROR)  # its warnings repeat what our one line says


class VideoError(StreamT1Error):
    """A video or its frames could not be written whole (what was there before is kept)."""


INSTALL_WRITER = "pip install imageio-ffmpeg"  # ships an ffmpeg with libx264 for this platform


def check_video_writer() -> None:
    """Fail in one line when no video could be written: imageio-ffmpeg missing, no ffmpeg it can
    run, or one without the H.264 encoder. Runs ffmpeg once (~0.1 s), so a run checks it before it
    loads models and generates chunks whose video it could not write."""
    try:
        if imageio_ffmpeg is None:
            raise VideoError("imageio-ffmpeg is not installed")
        exe = imageio_ffmpeg.get_ffmpeg_exe()
        done = subprocess.run([exe, "-hide_banner", "-encoders"], capture_output=True, text=True, timeout=60)
        if done.returncode != 0:
            raise VideoError(f"{exe} -encoders exited with status {done.returncode}")
        if " libx264 " not in done.stdout:
            raise VideoError(f"{exe} has no libx264 (H.264) encoder")
    except (OSError, RuntimeError, subprocess.SubprocessError, VideoError) as exc:
        if isinstance(exc, OSError):
            why = f"{exc.filename}: {reason(exc)}" if exc.filename else reason(exc)
        else:
            why = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise VideoError(
            f"no video writer ({why}): install one with `{INSTALL_WRITER}`, or set IMAGEIO_FFMPEG_EXE "
            "to an ffmpeg with libx264"
        ) from exc


def frames_hwc(frames: Tensor) -> np.ndarray:
    """[3, F, H, W] (float in [-1, 1] or uint8) -> [F, H, W, 3] uint8."""
    return to_uint8(frames).permute(1, 2, 3, 0).contiguous().numpy()


def _partial(path: Path, suffix: str = "") -> Path:
    """A hidden sibling of `path` owned by this process (matched by files.LEFTOVERS)."""
    return path.with_name(f".{path.stem}.partial-{os.getpid()}{suffix}")


def _failed(path: Path, exc: Exception) -> VideoError:
    why = reason(exc) if isinstance(exc, OSError) else str(exc).splitlines()[0]
    return VideoError(
        f"writing {path} failed ({why}): nothing was written there; free some disk space, fix the "
        f"folder's permissions or move what is in the way, and try again"
    )


def write_mp4(path: Path, chunks: Iterable[Tensor], fps: int) -> int:
    """Write decoded chunks ([3, F, H, W] each) as one H.264 mp4 (imageio-ffmpeg); returns the
    number of frames. ffmpeg's exit status is not reported by imageio, so the file is read back
    (stream copy, no decode) and must hold every frame before it replaces `path`."""
    partial = _partial(path, path.suffix)
    written = 0
    try:
        open(
            partial, "wb"
        ).close()  # a read-only or unwritable folder is reported in its own words, not as a broken pipe
        with imageio.get_writer(
            partial, fps=fps, codec="libx264", quality=8, macro_block_size=8, ffmpeg_log_level="quiet"
        ) as writer:
            for chunk in chunks:
                for frame in frames_hwc(chunk):
                    writer.append_data(frame)
                    written += 1
        readable = imageio_ffmpeg.count_frames_and_secs(str(partial))[0]
        if readable != written:
            raise VideoError(f"ffmpeg wrote {readable} of {written} frames")
        with open(partial, "rb") as f:
            os.fsync(f.fileno())
        os.replace(partial, path)
    except (OSError, RuntimeError, VideoError) as exc:  # imageio-ffmpeg: OSError (broken pipe), RuntimeError
        raise _failed(path, exc) from exc
    finally:
        with suppress(OSError):  # gone, or never made (a read-only disk reports EROFS, not ENOENT)
            partial.unlink()
    return written


def write_pngs(folder: Path, chunks: Iterable[Tensor]) -> int:
    """Write decoded chunks as frame_00000.png, ... into a hidden sibling folder, then swap it in
    for `folder` (an empty one, or an earlier export's frames); returns the number of frames."""
    partial, old = _partial(folder), _partial(folder, ".old")
    written = 0
    try:
        partial.mkdir()
        for chunk in chunks:
            for frame in frames_hwc(chunk):
                iio.imwrite(partial / f"frame_{written:05d}.png", frame)
                written += 1
        if folder.is_dir() and any(folder.iterdir()):
            os.rename(folder, old)
            try:
                os.rename(partial, folder)
            except OSError:
                os.rename(old, folder)
                raise
        else:
            os.rename(partial, folder)  # replaces an empty folder
    except OSError as exc:
        raise _failed(folder, exc) from exc
    finally:
        shutil.rmtree(partial, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)
    return written
