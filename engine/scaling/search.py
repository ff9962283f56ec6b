"""Stream-T1 over the streaming engine: a beam search over chunks.

One chunk: children of every surviving beam get propagated noise -> each beam's children denoise as
one batch against that beam's cache (shared, never copied per candidate) -> each candidate is decoded
once from its parent's decoder state (a shared value, not copied) -> short- and long-term rewards
(batched) -> fused score ->
global top-k -> the survivors alone run the clean cache-write forward -> evicted chunks are routed by
their memory-sink flags.
"""

from __future__ import annotations

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
from engine.scaling.noise import child_seed, first_chunk_seed, plain_seed, propagate_noise
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
    """Generates chunks with Stream-T1 test-time scaling; `beams` are the survivors, best first.

    With `scaling=None` it is plain LongLive inside the same bookkeeping (one candidate a chunk,
    fresh noise per chunk, no rewards, FIFO eviction), so sessions treat both alike. The prompt
    schedule maps a first chunk to its prompt; at a switch every beam's window is re-cached under
    the new prompt (LongLive's KV re-cache). `restore` rebuilds the exact state from stored chunks.
    """

    def __init__(self, models: Models, config: StreamConfig, scaling: ScalingConfig | None,
                 scorers: tuple[FrameScorer, ClipScorer] | None, seed: int, prompts: dict[int, str]) -> None:
        if (scaling is None) != (scorers is None):
            raise ValueError("scaling and scorers go together")
        if 0 not in prompts:
            raise ValueError("the prompt schedule needs a prompt for chunk 0")
        self.models, self.config, self.scaling = models, config, scaling
        self.short_scorer, self.long_scorer = scorers if scorers else (None, None)
        self.seed = seed
        self.schedule = dict(prompts)
        self.sigmas = shifted_sigmas(config.timesteps, config.shift)
        self.prompts = PromptContexts(models)
        self.timer = PhaseTimer(models.device)
        self.beams: list[Beam] = []
        self.chunk = 0

    def prompt_at(self, chunk: int) -> str:
        return self.schedule[max(k for k in self.schedule if k <= chunk)]

    # --- one chunk -------------------------------------------------------------------------------
    def _candidates(self) -> list[_Candidate]:
        shape = latent_chunk_shape(self.models, self.config)
        sc = self.scaling
        if sc is None:
            specs = [(0 if self.beams else None, 0, plain_seed(self.seed, self.chunk))]
        elif not self.beams:
            specs = [(None, i, first_chunk_seed(self.seed, i)) for i in range(sc.candidates)]
        else:
            specs = [(b, c, child_seed(self.seed, self.chunk, b, c, beam.seed))
                     for b, beam in enumerate(self.beams) for c in range(sc.beam_size)]
        out = []
        for parent, child, seed in specs:
            gen = torch.Generator().manual_seed(seed)
            eps = torch.randn(shape, generator=gen)
            parent_noise = None if parent is None or sc is None else self.beams[parent].noise
            sigma = 0.0 if sc is None else sc.noise_sigma
            out.append(_Candidate(parent, child, seed, gen, propagate_noise(parent_noise, eps, sigma)))
        return out

    def _prefix(self, parent: int | None):
        model, preset = self.models.transformer, self.models.preset
        cache = KVCache() if parent is None else self.beams[parent].cache
        return model.build_prefix(cache, *model.grid(preset.latent_height, preset.latent_width))

    def _decode(self, parent: int | None, latents: Tensor) -> tuple[Tensor, DecoderState]:
        """One candidate from its parent's decoder state (an immutable value: nothing is copied);
        batch 1, as a resume replays it, so replay reproduces it exactly."""
        decoder = self.models.decoder
        if parent is None:
            decoder.reset(1)
        else:
            decoder.load_state(self.beams[parent].decoder)
        frames = decoder.decode_chunk(latents)[0]
        return frames, decoder.state()

    def _extend(self, parent_index: int | None, candidate: int, seed: int, noise: Tensor, latents: Tensor,
                frames: Tensor, decoder_state: DecoderState, short: float, long: float, flag: SinkRoute,
                prefix, text) -> Beam:
        """A survivor: its clean cache-write forward, the push into its parent's cache and the
        routing of what that evicts. Shared by generation and by `restore`."""
        model, cfg = self.models.transformer, self.config
        parent = None if parent_index is None else self.beams[parent_index]
        start = cfg.start_frame(self.chunk)
        zero_t = torch.zeros(1, device=self.models.device)
        _, segment = model.forward_chunk(latents, zero_t, start, text, prefix, capture_kv=True)
        cache, evicted = (parent.cache if parent else KVCache()).push(replace(segment, route=flag), cfg)
        events: list[tuple[int, SinkRoute]] = []
        if self.scaling is not None:
            cache, events = route_evicted(cache, evicted, self.scaling.max_sink_frames, self.scaling.ema_alpha)
        return Beam(
            cache=cache,
            decoder=decoder_state,
            noise=noise,
            seed=seed,
            shorts=(parent.shorts if parent else ()) + (short,),
            longs=(parent.longs if parent else ()) + (long,),
            latents=(parent.latents if parent else ()) + (latents[0].float().cpu(),),
            frames=(parent.frames if parent else ()) + (to_uint8(frames),),
            lineage=(parent.lineage if parent else ()) + (candidate,),
            sink_events=(parent.sink_events if parent else ()) + tuple(events),
        )

    def _switch_prompt_if_due(self) -> None:
        """At a prompt switch, re-cache every beam's window under the new prompt (LongLive's KV
        re-cache): the window chunks' clean latents re-run at t=0, block-causally, after the sink,
        which keeps its K/V (LongLive's global sink)."""
        if self.chunk == 0 or self.chunk not in self.schedule or self.prompt_at(self.chunk - 1) == self.schedule[self.chunk]:
            return
        text = self.prompts.get(self.schedule[self.chunk])
        self.beams = [replace(beam, cache=recache_window(self.models, self.config, beam, text)) for beam in self.beams]

    @torch.no_grad()
    def step(self) -> ChunkRecord:
        models, cfg, sc, timer = self.models, self.config, self.scaling, self.timer
        model, device = models.transformer, models.device
        with timer.phase("recache"):
            self._switch_prompt_if_due()
        prompt = self.prompt_at(self.chunk)
        text = self.prompts.get(prompt)
        start = cfg.start_frame(self.chunk)
        candidates = self._candidates()
        n = len(candidates)
        groups: dict[int | None, list[int]] = {}
        for i, cand in enumerate(candidates):
            groups.setdefault(cand.parent, []).append(i)

        latents: list[Tensor] = [torch.empty(0)] * n
        prefixes = {}
        for parent, idx in groups.items():
            with timer.phase("denoise"):
                prefixes[parent] = prefix = self._prefix(parent)
                x_init = torch.stack([candidates[i].noise for i in idx]).to(device)

                def flow(x: Tensor, t: Tensor, prefix=prefix) -> Tensor:
                    return model.forward_chunk(x, t, start, text, prefix)[0]

                group_latents = denoise_chunk(flow, x_init, self.sigmas, [candidates[i].generator for i in idx])
            for row, i in enumerate(idx):
                latents[i] = group_latents[row : row + 1]
        with timer.phase("decode"):
            decoded = [self._decode(c.parent, latents[i]) for i, c in enumerate(candidates)]
        frames = [f for f, _ in decoded]

        if sc is None:
            shorts = longs = fused = torch.zeros(1)
            alpha, kept = 0.0, [0]
        else:
            with timer.phase("short_reward"):
                per_frame = self.short_scorer.score_frames(torch.stack(frames).transpose(1, 2).flatten(0, 1), prompt)
                shorts = short_term(per_frame.cpu(), frames[0].shape[1])
            with timer.phase("long_reward"):
                pasts = {parent: self._window_past(parent, device) for parent in groups}  # once per beam
                clips = torch.stack([torch.cat((pasts[c.parent], frames[i]), dim=1) for i, c in enumerate(candidates)])
                longs = self.long_scorer.score_clips(clips, prompt, cfg.fps).overall.float().cpu()
            alpha = fusion_alpha(start, sc.horizon_frames, cfg.chunk_frames, sc.fusion_cap)
            fused = fuse(shorts, longs, alpha)
            kept = select_top_k(fused, sc.top_k)

        flags: dict[int, SinkRoute] = {}
        new_beams = []
        with timer.phase("cache_write"):
            for i in kept:
                cand = candidates[i]
                parent = None if cand.parent is None else self.beams[cand.parent]
                flags[i] = SinkRoute.DISCARD if sc is None or parent is None else sink_flag(
                    float(shorts[i]), parent.shorts, float(longs[i]), parent.longs[-1],
                    sc.short_threshold, sc.long_threshold)
                new_beams.append(self._extend(cand.parent, i, cand.seed, cand.noise, latents[i], frames[i],
                                              decoded[i][1], float(shorts[i]), float(longs[i]), flags[i],
                                              prefixes[cand.parent], text))
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
            beams=self._beam_summaries(),
            seconds=timer.take(),
        )
        self.chunk += 1
        return record

    def _beam_summaries(self) -> list[dict]:
        return [
            {"candidate": b.lineage[-1], "sink_frames": b.cache.sink_frames,
             "last_sink_event": None if not b.sink_events else
             {"start_frame": b.sink_events[-1][0], "route": b.sink_events[-1][1].value}}
            for b in self.beams
        ]

    @torch.no_grad()
    def restore(self, record: dict, latents: Tensor, noise: Tensor) -> None:
        """Replay one committed chunk: `record` as `ChunkRecord.to_json` wrote it, `latents` and
        `noise` [beams, C, F, h, w] of its survivors in beam order. Runs exactly the survivors'
        cache writes and decodes of the original run (same inputs and shapes), so the state equals
        the uninterrupted run's."""
        if record["chunk"] != self.chunk:
            raise ValueError(f"restoring chunk {record['chunk']} at chunk {self.chunk}")
        self._switch_prompt_if_due()
        text = self.prompts.get(self.prompt_at(self.chunk))
        device = self.models.device
        prefixes: dict[int | None, object] = {}
        new_beams = []
        for b, summary in enumerate(record["beams"]):
            cand = record["candidates"][summary["candidate"]]
            parent = cand["parent"]
            if parent not in prefixes:
                prefixes[parent] = self._prefix(parent)
            lat = latents[b : b + 1].to(device)
            frames, state = self._decode(parent, lat)
            new_beams.append(self._extend(parent, summary["candidate"], cand["seed"], noise[b], lat, frames, state,
                                          cand["short"], cand["long"], SinkRoute(cand["flag"]), prefixes[parent], text))
        self.beams = new_beams
        self.chunk += 1

    def _window_past(self, parent: int | None, device: torch.device) -> Tensor:
        """The parent's last `window_chunks - 1` chunks as float frames [3, F, H, W] (F may be 0):
        the long-term reward scores them followed by the candidate's chunk."""
        keep = self.scaling.window_chunks - 1
        history = () if parent is None or keep == 0 else self.beams[parent].frames[-keep:]
        p = self.models.preset
        empty = torch.empty(3, 0, p.height, p.width, device=device)
        return torch.cat([empty, *(from_uint8(f, device) for f in history)], dim=1)

    # --- the finished video ----------------------------------------------------------------------
    def best_beam_index(self) -> int:
        """The final pick: the surviving beam whose whole video the long-term scorer likes best."""
        if len(self.beams) == 1 or self.long_scorer is None:
            return 0
        device = self.models.device
        clips = torch.stack([from_uint8(torch.cat(b.frames, dim=1), device) for b in self.beams])
        overall = self.long_scorer.score_clips(clips, self.prompt_at(self.chunk - 1), self.config.fps).overall
        return int(torch.argmax(overall.float().cpu()))


def recache_window(models: Models, config: StreamConfig, beam: Beam, text) -> KVCache:
    """The beam's cache with its window chunks re-run at t=0 under `text`, oldest first, each
    attending to the kept sink and the chunks re-cached before it (block-causal)."""
    model, preset = models.transformer, models.preset
    grid = model.grid(preset.latent_height, preset.latent_width)
    cache = KVCache(sink=beam.cache.sink)
    zero_t = torch.zeros(1, device=models.device)
    for segment in beam.cache.window:
        latents = beam.latents[segment.start_frame // config.chunk_frames][None].to(models.device)
        _, fresh = model.forward_chunk(latents, zero_t, segment.start_frame, text,
                                       model.build_prefix(cache, *grid), capture_kv=True)
        cache = replace(cache, window=cache.window + (replace(fresh, route=segment.route),))
    return cache
