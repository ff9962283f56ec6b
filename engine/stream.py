"""The chunk loop: prompt + stream state -> next chunk (noise -> 4-step denoise -> cache write ->
decode, the decode overlapping the next chunk on CUDA). This is plain LongLive streaming; test-time
scaling builds on the same pieces."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor

from engine.config import StreamConfig
from engine.decode_queue import DecodeQueue, PendingFrames
from engine.models.causal_wan import TextContext
from engine.models.factory import Models
from engine.models.kv_cache import KVCache
from engine.sampler import denoise_chunk, draw_noise, shifted_sigmas
from engine.scaling.noise import plain_seed
from engine.timing import PhaseTimer


@dataclass(frozen=True)
class ChunkResult:
    """One generated chunk: clean latents, its (possibly still decoding) frames, phase times."""

    index: int
    latents: Tensor  # [1, C, F, h, w] float32, on the model device
    pending: PendingFrames
    phase_seconds: dict[str, float]  # denoise, cache_write (main stream)

    @property
    def frames(self) -> Tensor:
        """[1, 3, F_out, H, W] float32 in [-1, 1] on the CPU; waits for the decode."""
        return self.pending.result()

    @property
    def seconds(self) -> dict[str, float]:
        """Phase times including the decode's own (GPU) time; waits for the decode."""
        return {**self.phase_seconds, "decode": self.pending.seconds}


class PromptContexts:
    """Cross-attention K/V per prompt, computed once (text encoder + per-layer projections)."""

    def __init__(self, models: Models) -> None:
        self.models = models
        self._cache: dict[str, TextContext] = {}

    def add_states(self, prompt: str, text_states: Tensor) -> None:
        """Register precomputed encoder states [1, text_len, text_dim] for `prompt` (benchmarks run
        without the 5.7 B-parameter UMT5)."""
        self._cache[prompt] = self.models.transformer.text_context(text_states.to(self.models.device, self.models.dtype))

    def get(self, prompt: str) -> TextContext:
        if prompt not in self._cache:
            embeds = self.models.prompts.encode(prompt).to(self.models.device, self.models.dtype)
            self._cache[prompt] = self.models.transformer.text_context(embeds)
        return self._cache[prompt]


def latent_chunk_shape(models: Models, config: StreamConfig) -> tuple[int, int, int, int]:
    """[C, F, h, w] of one chunk's latents."""
    p = models.preset
    return (p.transformer["in_channels"], config.chunk_frames, p.latent_height, p.latent_width)


class StreamGenerator:
    """Generates a video chunk by chunk with a rolling KV cache and a streaming VAE decoder."""

    def __init__(self, models: Models, config: StreamConfig, seed: int, overlap_decode: bool = True) -> None:
        self.models = models
        self.config = config
        self.seed = seed
        self.sigmas = shifted_sigmas(config.timesteps, config.shift)
        self.cache = KVCache()
        self.chunk = 0
        self.timer = PhaseTimer(models.device)
        self._text: TextContext | None = None
        self._prompts = PromptContexts(models)
        models.decoder.reset(1)
        self.decodes = DecodeQueue(models.decoder, models.device, overlap_decode)

    def set_prompt(self, prompt: str) -> None:
        """Prompt for the chunks from now on (its cross-attention K/V are computed once)."""
        self._text = self._prompts.get(prompt)

    def set_text_states(self, text_states: Tensor) -> None:
        """Use precomputed text encoder states [1, text_len, text_dim] (benchmarks without UMT5)."""
        self._prompts.add_states("", text_states)
        self._text = self._prompts.get("")

    @property
    def latent_shape(self) -> tuple[int, int, int, int]:
        return latent_chunk_shape(self.models, self.config)

    @torch.no_grad()
    def step(self) -> ChunkResult:
        """Generate, cache and decode the next chunk."""
        if self._text is None:
            raise RuntimeError("set a prompt before generating")
        model, device = self.models.transformer, self.models.device
        start = self.config.start_frame(self.chunk)
        grid = model.grid(*self.latent_shape[2:])
        generator = torch.Generator().manual_seed(plain_seed(self.seed, self.chunk))
        timer = self.timer

        with timer.phase("denoise"):
            prefix = model.build_prefix(self.cache, *grid)
            x_init = draw_noise([generator], self.latent_shape, device)

            def flow(x: Tensor, t: Tensor) -> Tensor:
                return model.forward_chunk(x, t, start, self._text, prefix)[0]

            latents = denoise_chunk(flow, x_init, self.sigmas, [generator])
        with timer.phase("cache_write"):
            zero_t = torch.zeros(1, device=device)
            _, segment = model.forward_chunk(latents, zero_t, start, self._text, prefix, capture_kv=True)
            self.cache, _ = self.cache.push(segment, self.config)
        result = ChunkResult(self.chunk, latents, self.decodes.submit(latents), timer.take())
        self.chunk += 1
        return result

    def stream(self, num_chunks: int) -> Iterator[ChunkResult]:
        """Yield `num_chunks` chunks, each once the NEXT one is queued, so its decode overlaps the
        next chunk's denoising; the caller reads `frames` without stalling the GPU."""
        pending: ChunkResult | None = None
        for _ in range(num_chunks):
            chunk = self.step()
            if pending is not None:
                yield pending
            pending = chunk
        if pending is not None:
            yield pending
