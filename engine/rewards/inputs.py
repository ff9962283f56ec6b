"""The reward models' inputs exactly as the reference makes them (the `reference` reward-input mode).

The reference does not score the frames it streams. For each candidate it
- decodes the chunk's latents again with a fresh VAE cache (3 latent frames -> 9 frames, where the
  streaming decode gives 12) and scores those frames with HPSv3;
- decodes the last <= 10 chunks' latents the same way, converts them to 8 bits, writes an H.264 mp4
  at 16 fps (torchvision's `write_video`) and scores what VideoReward's reader decodes from it.
These are the pieces, as pure functions; the chunk loop picks them per mode. Frames reach 8 bits by
truncation here as everywhere (`engine.frames`).
"""

from __future__ import annotations

import subprocess

import imageio_ffmpeg
import torch
from torch import Tensor

from engine.frames import from_uint8, to_uint8
from engine.models.vae_stream import StreamingVaeDecoder

# torchvision's write_video: libx264 in yuv420p, x264's defaults otherwise (CRF 23, preset medium).
# x264's output can depend on its thread count, so it is pinned (the reference leaves it to the host).
H264_OUTPUT = ("-c:v", "libx264", "-pix_fmt", "yuv420p", "-threads", "8")


def decode_from_scratch(decoder: StreamingVaeDecoder, latents: Tensor, piece: int = 3) -> Tensor:
    """Normalized latents [B, z, F, h, w] -> [B, 3, 4F - 3, H, W] float32 in [-1, 1], decoded as a
    video of their own (a fresh causal cache, as the reference's `use_cache=False`), `piece` latent
    frames a decoder call (the causal cache makes that one decode; it bounds the memory of a
    10-chunk window); the decoder's streaming state is left as it was."""
    saved = decoder.state()
    decoder.reset(latents.shape[0])
    try:
        return torch.cat([decoder.decode_chunk(part) for part in latents.split(piece, dim=2)], dim=2)
    finally:
        decoder.load_state(saved)


def _ffmpeg(args: list[str], data: bytes) -> bytes:
    proc = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", *args], input=data, capture_output=True)
    if proc.returncode:
        raise RuntimeError(f"ffmpeg failed: {proc.stderr.decode(errors='replace').strip()}")
    return proc.stdout


def h264_round_trip(clip: Tensor, fps: int) -> Tensor:
    """A uint8 clip [3, F, H, W] (H, W even, as yuv420p needs) after an H.264 mp4 encode at `fps`
    and a decode back to RGB, in memory: uint8 [3, F, H, W] on the CPU. The mp4 is fragmented,
    since a pipe cannot be rewound to write the index up front; the video stream is the same."""
    _, frames, height, width = clip.shape
    if height % 2 or width % 2:
        raise ValueError(f"H.264 in yuv420p needs an even frame size, got {height}x{width}")
    raw = clip.cpu().permute(1, 2, 3, 0).contiguous().numpy().tobytes()
    mp4 = _ffmpeg(
        [
            "-f",
            "rawvideo",
            "-pix_fmt",
            "rgb24",
            "-s",
            f"{width}x{height}",
            "-r",
            str(fps),
            "-i",
            "pipe:0",
            *H264_OUTPUT,
            "-movflags",
            "frag_keyframe+empty_moov",
            "-f",
            "mp4",
            "pipe:1",
        ],
        raw,
    )
    decoded = _ffmpeg(["-i", "pipe:0", "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1"], mp4)
    out = torch.frombuffer(bytearray(decoded), dtype=torch.uint8)
    if out.numel() != len(raw):
        raise RuntimeError(f"the H.264 round trip gave {out.numel() // (3 * height * width)} frames for {frames}")
    return out.view(frames, height, width, 3).permute(3, 0, 1, 2)


def reference_clips(decoder: StreamingVaeDecoder, latents: Tensor, fps: int, piece: int = 3) -> Tensor:
    """VideoReward's input as the reference makes it: window latents [B, z, F, h, w] decoded from
    scratch, truncated to 8 bits, through an H.264 mp4 and back: [B, 3, 4F - 3, H, W] float32 in
    [-1, 1] on the latents' device, at the decoded levels (`from_uint8`)."""
    pixels = decode_from_scratch(decoder, latents, piece)
    return torch.stack([from_uint8(h264_round_trip(to_uint8(clip), fps), latents.device) for clip in pixels])
