"""Stream-T1 over the streaming engine: a beam search over chunks.

One chunk: children of every surviving beam get propagated noise -> each beam's children denoise as
one batch against that beam's cache (shared, never copied per candidate) -> each candidate is decoded
once from its parent's decoder state (a shared value, not copied) -> short- and long-term rewards
(batched) -> fused score ->
global top-k -> the survivors alone run the clean cache-write forward -> evicted chunks are routed by
their memory-sink flags.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import torch
from torch import Tensor

from engine.config import StreamConfig
from engine.frames import from_uint8, to_uint8
from engine.models.factory import Models
from engine.models.kv_cache import KVCache, SinkRoute
from engine.models.vae_stream import DecoderState
from engine.rewards.base import ClipScorer, FrameScorer
from engine.sampler import denoise_chunk, shifted_sigmas
from engine.scaling.config import ScalingConfig
from engine.scaling.noise import child_seed, first_chunk_seed, propagate_noise
from engine.scaling.pruning import fuse, fusion_alpha, select_top_k, short_term
from engine.scaling.sinking import route_evicted, sink_flag
from engine.stream import PromptContexts, latent_chunk_shape
from engine.timing import PhaseTimer


@dataclass(frozen=True, eq=False)
class Beam:
    """A surviving hypothesis: all the next chunk needs. Siblings share history tensors."""

    cache: KVCache
    decoder: DecoderState
    noise: Tensor  # initial (mixed) noise of its last chunk, [C, F, h, w] float32 CPU
    seed: int  # seed of its last chunk
    shorts: tuple[float, ...]
    longs: tuple[float, ...]
    latents: tuple[Tensor, ...]  # clean latents per chunk, [C, F, h, w] float32 CPU
    frames: tuple[Tensor, ...]  # decoded frames per chunk, [3, F, H, W] uint8 CPU
    lineage: tuple[int, ...]  # candidate index kept at each chunk
    sink_events: tuple[tuple[int, SinkRoute], ...] = ()  # (start frame, route) at each eviction


@dataclass(frozen=True)
class CandidateRecord:
    index: int
    parent: int | None  # beam index at the previous chunk
    child: int
    seed: int
    short: float
    long: float
    fused: float
    kept: bool
    flag: str | None  # memory-sink flag given to a kept chunk


@dataclass(frozen=True)
class ChunkRecord:
    """What the live view and the JSON lines show for one chunk."""

    chunk: int
    start_frame: int
    alpha: float
    candidates: list[CandidateRecord]
    beams: list[dict]  # per surviving beam: candidate, sink_frames, last sink event
    seconds: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict:
        return {
            "chunk": self.chunk,
            "start_frame": self.start_frame,
            "alpha": self.alpha,
            "candidates": [c.__dict__ for c in self.candidates],
            "beams": self.beams,
            "seconds": self.seconds,
        }


@dataclass(frozen=True)
class _Candidate:
    parent: int | None
    child: int
    seed: int
    generator: torch.Generator
    noise: Tensor  # x_init, [C, F, h, w] CPU


class BeamSearchStream:
    """Generates chunks with Stream-T1 test-time scaling; `beams` are the survivors, best first."""

    def __init__(self, models: Models, config: StreamConfig, scaling: ScalingConfig,
                 short_scorer: FrameScorer, long_scorer: ClipScorer, seed: int, prompt: str) -> None:
        self.models, self.config, self.scaling = models, config, scaling
        self.short_scorer, self.long_scorer = short_scorer, long_scorer
        self.seed = seed
        self.prompt = prompt
        self.sigmas = shifted_sigmas(config.timesteps, config.shift)
        self.prompts = PromptContexts(models)
        self.timer = PhaseTimer(models.device)
        self.beams: list[Beam] = []
        self.chunk = 0

    # --- one chunk -------------------------------------------------------------------------------
    def _candidates(self) -> list[_Candidate]:
        shape = latent_chunk_shape(self.models, self.config)
        specs: list[tuple[int | None, int, int]] = []
        if not self.beams:
            specs = [(None, i, first_chunk_seed(self.seed, i)) for i in range(self.scaling.candidates)]
        else:
            for b, beam in enumerate(self.beams):
                for c in range(self.scaling.beam_size):
                    specs.append((b, c, child_seed(self.seed, self.chunk, b, c, beam.seed)))
        out = []
        for parent, child, seed in specs:
            gen = torch.Generator().manual_seed(seed)
            eps = torch.randn(shape, generator=gen)
            parent_noise = None if parent is None else self.beams[parent].noise
            out.append(_Candidate(parent, child, seed, gen, propagate_noise(parent_noise, eps, self.scaling.noise_sigma)))
        return out

    def _groups(self, candidates: Sequence[_Candidate]) -> dict[int | None, list[int]]:
        groups: dict[int | None, list[int]] = {}
        for i, cand in enumerate(candidates):
            groups.setdefault(cand.parent, []).append(i)
        return groups

    @torch.no_grad()
    def step(self) -> ChunkRecord:
        models, cfg, sc, timer = self.models, self.config, self.scaling, self.timer
        model, device = models.transformer, models.device
        text = self.prompts.get(self.prompt)
        start = cfg.start_frame(self.chunk)
        grid = model.grid(models.preset.latent_height, models.preset.latent_width)
        candidates = self._candidates()
        groups = self._groups(candidates)
        n = len(candidates)

        latents: list[Tensor] = [torch.empty(0)] * n
        frames: list[Tensor] = [torch.empty(0)] * n
        decoder_states: list[DecoderState] = [None] * n  # type: ignore[list-item]
        prefixes = {}
        for parent, idx in groups.items():
            with timer.phase("denoise"):
                cache = KVCache() if parent is None else self.beams[parent].cache
                prefixes[parent] = prefix = model.build_prefix(cache, *grid)
                x_init = torch.stack([candidates[i].noise for i in idx]).to(device)

                def flow(x: Tensor, t: Tensor, prefix=prefix) -> Tensor:
                    return model.forward_chunk(x, t, start, text, prefix)[0]

                group_latents = denoise_chunk(flow, x_init, self.sigmas, [candidates[i].generator for i in idx])
            for row, i in enumerate(idx):
                latents[i] = group_latents[row : row + 1]
        with timer.phase("decode"):
            # One candidate at a time from its parent's state: states are immutable values (no
            # copies), and batch-1 decoding is what a resume replays, so it reproduces exactly.
            decoder = models.decoder
            for i, cand in enumerate(candidates):
                if cand.parent is None:
                    decoder.reset(1)
                else:
                    decoder.load_state(self.beams[cand.parent].decoder)
                frames[i] = decoder.decode_chunk(latents[i])[0]
                decoder_states[i] = decoder.state()

        with timer.phase("short_reward"):
            per_frame = self.short_scorer.score_frames(
                torch.stack(frames).transpose(1, 2).flatten(0, 1), self.prompt)
            shorts = short_term(per_frame.cpu(), frames[0].shape[1])
        with timer.phase("long_reward"):
            clips = torch.stack([self._window_clip(candidates[i].parent, frames[i]) for i in range(n)])
            longs = self.long_scorer.score_clips(clips, self.prompt, cfg.fps).overall.float().cpu()
        alpha = fusion_alpha(start, sc.horizon_frames, cfg.chunk_frames, sc.fusion_cap)
        fused = fuse(shorts, longs, alpha)
        kept = select_top_k(fused, sc.top_k)

        new_beams, flags = [], {}
        with timer.phase("cache_write"):
            for i in kept:
                cand = candidates[i]
                parent = None if cand.parent is None else self.beams[cand.parent]
                flag = sink_flag(float(shorts[i]), parent.shorts if parent else (), float(longs[i]),
                                 parent.longs[-1] if parent else None, sc.short_threshold, sc.long_threshold)
                flags[i] = flag
                zero_t = torch.zeros(1, device=device)
                _, segment = model.forward_chunk(latents[i], zero_t, start, text, prefixes[cand.parent], capture_kv=True)
                cache, evicted = (parent.cache if parent else KVCache()).push(replace(segment, route=flag), cfg)
                cache, events = route_evicted(cache, evicted, sc.max_sink_frames, sc.ema_alpha)
                new_beams.append(Beam(
                    cache=cache,
                    decoder=decoder_states[i],
                    noise=cand.noise,
                    seed=cand.seed,
                    shorts=(parent.shorts if parent else ()) + (float(shorts[i]),),
                    longs=(parent.longs if parent else ()) + (float(longs[i]),),
                    latents=(parent.latents if parent else ()) + (latents[i][0].float().cpu(),),
                    frames=(parent.frames if parent else ()) + (to_uint8(frames[i]),),
                    lineage=(parent.lineage if parent else ()) + (i,),
                    sink_events=(parent.sink_events if parent else ()) + tuple(events),
                ))
        self.beams = new_beams
        record = ChunkRecord(
            chunk=self.chunk,
            start_frame=start,
            alpha=alpha,
            candidates=[
                CandidateRecord(i, c.parent, c.child, c.seed, float(shorts[i]), float(longs[i]), float(fused[i]),
                                i in flags, flags[i].value if i in flags else None)
                for i, c in enumerate(candidates)
            ],
            beams=[
                {"candidate": b.lineage[-1], "sink_frames": b.cache.sink_frames,
                 "last_sink_event": None if not b.sink_events else
                 {"start_frame": b.sink_events[-1][0], "route": b.sink_events[-1][1].value}}
                for b in new_beams
            ],
            seconds=timer.take(),
        )
        self.chunk += 1
        return record

    def _window_clip(self, parent: int | None, frames: Tensor) -> Tensor:
        """The long-term reward's input: the last `window_chunks` chunks ending with this one."""
        history = () if parent is None else self.beams[parent].frames[-(self.scaling.window_chunks - 1):]
        if self.scaling.window_chunks == 1:
            history = ()
        past = [from_uint8(f, frames.device) for f in history]
        return torch.cat([*past, frames], dim=1)

    # --- the finished video ----------------------------------------------------------------------
    def best_beam_index(self) -> int:
        """The final pick: the surviving beam whose whole video the long-term scorer likes best."""
        if len(self.beams) == 1:
            return 0
        device = self.models.device
        clips = torch.stack([from_uint8(torch.cat(b.frames, dim=1), device) for b in self.beams])
        overall = self.long_scorer.score_clips(clips, self.prompt, self.config.fps).overall
        return int(torch.argmax(overall.float().cpu()))


def video_score(chunks: Sequence[Tensor], prompt: str, short_scorer: FrameScorer, long_scorer: ClipScorer,
                alpha: float, fps: int) -> float:
    """Fused score of a finished video (frames per chunk, [3, F, H, W] in [-1, 1]): alpha * mean
    short-term reward over all frames + (1 - alpha) * long-term reward of the whole clip."""
    video = torch.cat(list(chunks), dim=1)
    short = float(short_scorer.score_frames(video.transpose(0, 1), prompt).float().mean())
    long = float(long_scorer.score_clips(video[None], prompt, fps).overall.float()[0])
    return alpha * short + (1 - alpha) * long
