"""VAE decoding off the critical path: on CUDA, a chunk's decode runs on a side stream while the
next chunk denoises on the main stream (the decoder's conv/elementwise work overlaps the
transformer's matmuls). On CPU it decodes in place. Frames are fetched when asked for."""

from __future__ import annotations

import time

import torch
from torch import Tensor

from engine.models.vae_stream import StreamingVaeDecoder


class PendingFrames:
    """Decoded frames of one chunk, available once the decode finished; `seconds` is its GPU time."""

    def __init__(self, frames: Tensor, done: torch.cuda.Event | None, start: torch.cuda.Event | None,
                 seconds: float | None = None) -> None:
        self._frames, self._done, self._start = frames, done, start
        self._seconds = seconds
        self._cpu: Tensor | None = None

    def result(self) -> Tensor:
        """[B, 3, F, H, W] float32 on the CPU (waits for the decode)."""
        if self._cpu is None:
            if self._done is not None:
                self._done.synchronize()
            self._cpu = self._frames.cpu()
            self._frames = None
        return self._cpu

    @property
    def seconds(self) -> float:
        if self._seconds is None:
            self.result()
            self._seconds = self._start.elapsed_time(self._done) / 1000.0
        return self._seconds


class DecodeQueue:
    """Submits chunk latents to a streaming decoder, asynchronously where the device allows."""

    def __init__(self, decoder: StreamingVaeDecoder, device: torch.device, overlap: bool = True) -> None:
        self.decoder = decoder
        self.device = device
        self.side_stream = torch.cuda.Stream(device) if overlap and device.type == "cuda" else None

    def submit(self, latents: Tensor) -> PendingFrames:
        if self.device.type != "cuda":
            start = time.perf_counter()
            frames = self.decoder.decode_chunk(latents)
            return PendingFrames(frames, None, None, time.perf_counter() - start)
        start, done = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        main = torch.cuda.current_stream(self.device)
        stream = self.side_stream or main
        if stream is not main:
            stream.wait_stream(main)
            latents.record_stream(stream)
        with torch.cuda.stream(stream):
            start.record()
            frames = self.decoder.decode_chunk(latents)
            done.record()
        return PendingFrames(frames, done, start)
