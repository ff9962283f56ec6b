"""VAE decoding off the critical path: on CUDA, a chunk's decode can run on a side stream while the
next chunk denoises on the main stream (the decoder's conv/elementwise work overlaps the
transformer's matmuls). On CPU, or when the frames are needed at once (rewards), it decodes in
place. Each decode continues a given decoder state, a value, so beams never share a mutable cache."""

from __future__ import annotations

import time

import torch
from torch import Tensor

from engine.frames import to_uint8
from engine.models.vae_stream import DecoderState, StreamingVaeDecoder


class PendingFrames:
    """Decoded frames [B, 3, F, H, W] of a chunk, available once the decode has finished. A CUDA
    decode is known by its `stream` and its `start` / `done` events."""

    def __init__(
        self,
        frames: Tensor,
        done: torch.cuda.Event | None = None,
        start: torch.cuda.Event | None = None,
        stream: torch.cuda.Stream | None = None,
        seconds: float | None = None,
    ) -> None:
        self._frames, self._done, self._start, self._stream, self._seconds = frames, done, start, stream, seconds

    def wait(self) -> None:
        """Block the host until the decode has finished."""
        if self._done is not None:
            self._done.synchronize()

    def on_device(self) -> Tensor:
        """Float frames in [-1, 1] on the decode's device, for work queued next on the current
        stream: that stream waits for the decode (the host does not)."""
        if self._done is not None:
            stream = torch.cuda.current_stream(self._frames.device)
            stream.wait_event(self._done)
            self._frames.record_stream(stream)  # the decode's stream may not reuse them before this one is done
        return self._frames

    def uint8(self) -> Tensor:
        """uint8 frames on the CPU, as the store and the video files hold them. Converted on the
        decode's own stream, so a caller on another thread never waits behind the next chunk."""
        if self._stream is None:
            return to_uint8(self._frames)
        self.wait()
        with torch.cuda.stream(self._stream):
            return to_uint8(self._frames)

    @property
    def seconds(self) -> float:
        """The decode's own time (GPU time on CUDA)."""
        if self._seconds is None:
            self.wait()
            self._seconds = self._start.elapsed_time(self._done) / 1000.0
        return self._seconds


class DecodeQueue:
    """Runs decodes on a side CUDA stream (`overlap`) or in place."""

    def __init__(self, decoder: StreamingVaeDecoder, device: torch.device) -> None:
        self.decoder = decoder
        self.device = device
        self.side_stream = torch.cuda.Stream(device) if device.type == "cuda" else None

    def decode(self, latents: Tensor, state: DecoderState | None, overlap: bool) -> tuple[PendingFrames, DecoderState]:
        """Decode `latents` [B, z, F, h, w] continuing `state` (None: a new video of B rows)."""
        decoder = self.decoder
        if self.device.type != "cuda":
            start = time.perf_counter()
            frames = self._decode(latents, state)
            return PendingFrames(frames, seconds=time.perf_counter() - start), decoder.state()
        start, done = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        main = torch.cuda.current_stream(self.device)
        stream = self.side_stream if overlap else main
        if stream is not main:
            stream.wait_stream(main)
            latents.record_stream(stream)
        with torch.cuda.stream(stream):
            start.record()
            frames = self._decode(latents, state)
            done.record()
        return PendingFrames(frames, done, start, stream), decoder.state()

    def _decode(self, latents: Tensor, state: DecoderState | None) -> Tensor:
        if state is None:
            self.decoder.reset(latents.shape[0])
        else:
            self.decoder.load_state(state)
        return self.decoder.decode_chunk(latents)
