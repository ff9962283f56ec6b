"""The chunk loop: prompt + stream state -> next chunk (noise -> 4-step denoise -> cache write ->
decode). This is plain LongLive streaming; test-time scaling builds on the same pieces."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from engine.config import StreamConfig
from engine.models.causal_wan import TextContext
from engine.models.factory import Models
from engine.models.kv_cache import KVCache
from engine.sampler import denoise_chunk, draw_noise, shifted_sigmas
from engine.timing import PhaseTimer


@dataclass(frozen=True)
class ChunkResult:
    """One generated chunk: clean latents, its decoded frames and where the time went."""

    index: int
    latents: Tensor  # [1, C, F, h, w] float32, on the model device
    frames: Tensor  # [1, 3, F_out, H, W] float32 in [-1, 1], on the CPU
    seconds: dict[str, float]


def chunk_seed(seed: int, chunk: int) -> int:
    """Seed of a chunk's noise generator: depends only on (session seed, chunk), so a stream
    restarted at any chunk draws the same noise as an uninterrupted one."""
    return seed + chunk * 1000


class StreamGenerator:
    """Generates a video chunk by chunk with a rolling KV cache and a streaming VAE decoder."""

    def __init__(self, models: Models, config: StreamConfig, seed: int) -> None:
        self.models = models
        self.config = config
        self.seed = seed
        self.sigmas = shifted_sigmas(config.timesteps, config.shift)
        self.cache = KVCache()
        self.chunk = 0
        self.timer = PhaseTimer(models.device)
        self._text: TextContext | None = None
        self._text_cache: dict[str, TextContext] = {}
        models.decoder.reset(1)

    def set_prompt(self, prompt: str) -> None:
        """Prompt for the chunks from now on (its cross-attention K/V are computed once)."""
        if prompt not in self._text_cache:
            embeds = self.models.prompts.encode(prompt).to(self.models.device, self.models.dtype)
            self._text_cache[prompt] = self.models.transformer.text_context(embeds)
        self._text = self._text_cache[prompt]

    def set_text_states(self, text_states: Tensor) -> None:
        """Use precomputed text encoder states [1, text_len, text_dim] (benchmarks without UMT5)."""
        self._text = self.models.transformer.text_context(text_states.to(self.models.device, self.models.dtype))

    @property
    def latent_shape(self) -> tuple[int, int, int, int]:
        p = self.models.preset
        return (p.transformer["in_channels"], self.config.chunk_frames, p.latent_height, p.latent_width)

    @torch.no_grad()
    def step(self) -> ChunkResult:
        """Generate, cache and decode the next chunk."""
        if self._text is None:
            raise RuntimeError("set a prompt before generating")
        model, device = self.models.transformer, self.models.device
        start = self.config.start_frame(self.chunk)
        grid = model.grid(*self.latent_shape[2:])
        generator = torch.Generator().manual_seed(chunk_seed(self.seed, self.chunk))
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
        with timer.phase("decode"):
            frames = self.models.decoder.decode_chunk(latents).cpu()
        result = ChunkResult(self.chunk, latents, frames, timer.take())
        self.chunk += 1
        return result
