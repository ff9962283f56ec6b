"""THE chunk loop, one for plain LongLive (N = 1) and Stream-T1, for sessions and benchmarks alike.

One chunk: the prompt in force -> candidates (noise propagation from each surviving beam) -> each
beam's children denoise as one batch against that beam's cache (shared, never copied) -> decode ->
short- and long-term rewards -> fused score -> global top-k -> the survivors alone run the clean
cache-write forward -> evicted chunks are routed by their memory-sink flags -> a `ChunkOutput` for
the store. Plain LongLive is the same loop with one candidate a chunk and no rewards; since nothing
waits for its frames, its decode runs on a side CUDA stream, overlapping the next chunk.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import Tensor

from engine.beam import BeamState, ChunkLatents
from engine.config import StreamConfig
from engine.decode_queue import DecodeQueue, PendingFrames
from engine.errors import StreamT1Error
from engine.frames import from_uint8, to_uint8
from engine.models.causal_wan import AttentionPrefix, TextContext
from engine.models.factory import Models
from engine.models.kv_cache import CacheSegment, KVCache, SinkRoute
from engine.models.vae_stream import DecoderState
from engine.parallel import Ranks
from engine.positions import PositionMode, RotaryLayout, rotary_layout
from engine.records import BeamSummary, CandidateRecord, ChunkRecord, SinkEvent
from engine.rewards.base import ClipScorer, FrameScorer
from engine.rewards.inputs import decode_from_scratch, reference_clips
from engine.sampler import denoise_chunk, draw_noise, shifted_sigmas
from engine.scaling.config import ScalingConfig
from engine.scaling.noise import child_seed, first_chunk_seed, plain_seed, propagate_noise
from engine.scaling.pruning import fuse, fusion_alpha, select_top_k, short_term
from engine.scaling.sinking import route_evicted, sink_flag
from engine.timing import PhaseTimer

PLAIN_ON_ONE = (
    "plain LongLive makes one candidate a chunk, so one GPU runs it: start it without torchrun, or give "
    "many prompts to `streamt1 batch`"
)


class PromptContexts:
    """Cross-attention K/V per prompt, computed once (text encoder + per-layer projections)."""

    def __init__(self, models: Models) -> None:
        self.models = models
        self._cache: dict[str, TextContext] = {}

    def add_states(self, prompt: str, text_states: Tensor) -> None:
        """Register precomputed encoder states [1, text_len, text_dim] for `prompt` (benchmarks run
        without the 5.7 B-parameter UMT5)."""
        self._cache[prompt] = self.models.transformer.text_context(
            text_states.to(self.models.device, self.models.dtype)
        )

    def get(self, prompt: str) -> TextContext:
        if prompt not in self._cache:
            embeds = self.models.prompts.encode(prompt).to(self.models.device, self.models.dtype)
            self._cache[prompt] = self.models.transformer.text_context(embeds)
        return self._cache[prompt]


@dataclass(frozen=True)
class ChunkOutput:
    """One committed-to-be chunk: its record and each surviving beam's data, in beam order."""

    record: ChunkRecord
    latents: Tensor  # [beams, C, F, h, w] float32 CPU
    noise: Tensor  # [beams, C, F, h, w] float32 CPU
    frames: PendingFrames  # [beams, 3, F, H, W]; plain LongLive's may still be decoding

    def timed_record(self) -> ChunkRecord:
        """The record with the decode's own time, known once its frames are (plain LongLive decodes
        beside the next chunk, outside the loop's phases)."""
        if "decode" in self.record.seconds:
            return self.record
        return replace(self.record, seconds={**self.record.seconds, "decode": self.frames.seconds})


@dataclass(frozen=True)
class LoopState:
    """Everything the loop carries from one chunk to the next: what a snapshot stores."""

    chunk: int
    beams: tuple[BeamState, ...]

    def held_bytes(self) -> int:
        """Bytes each beam holds, summed over beams (beams may share tensors: memory is at most this)."""
        return sum(
            sum({t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in beam.tensors()}.values())
            for beam in self.beams
        )


@dataclass(frozen=True)
class _Candidate:
    parent: int | None
    child: int
    seed: int
    noise: Tensor  # x_init, [C, F, h, w] CPU
    step_noise: Tensor  # the sampler's fresh noise of steps 1.., [steps - 1, C, F, h, w] CPU


@dataclass(frozen=True)
class _Survivor:
    """What a kept candidate's owner shares with the other ranks: its clean latents [C, F, h, w]
    (float32 CPU), the K/V segment of its cache write, its decoder cache and its uint8 frames."""

    latents: Tensor
    segment: CacheSegment
    decoder: DecoderState
    frames: Tensor

    def to_parts(self) -> tuple[dict, list[Tensor]]:
        feats = [f for f in self.decoder.feats if f is not None]
        meta = {
            "start_frame": self.segment.start_frame,
            "num_frames": self.segment.num_frames,
            "layers": self.segment.num_layers,
            "cached": [f is not None for f in self.decoder.feats],
            "decoded": self.decoder.frames,
            "batch_size": self.decoder.batch_size,
        }
        return meta, [self.latents, self.frames, *self.segment.keys, *self.segment.values, *feats]

    @classmethod
    def from_parts(cls, meta: dict, tensors: list[Tensor]) -> _Survivor:
        layers = meta["layers"]
        keys, values, rest = (
            tensors[2 : 2 + layers],
            tensors[2 + layers : 2 + 2 * layers],
            iter(tensors[2 + 2 * layers :]),
        )
        feats = tuple(next(rest) if cached else None for cached in meta["cached"])
        segment = CacheSegment(meta["start_frame"], meta["num_frames"], tuple(keys), tuple(values))
        return cls(tensors[0], segment, DecoderState(feats, meta["decoded"], meta["batch_size"]), tensors[1])


class ChunkLoop:
    """Generates chunks; `beams` are the survivors, best fused score first.

    With `scaling=None` it is plain LongLive (one candidate a chunk, fresh noise per chunk, no
    rewards, FIFO eviction). The prompt schedule maps a first chunk to its prompt; at a switch
    every beam's window is re-cached under the new prompt (LongLive's KV re-cache). `restore`
    replays a stored chunk, `state`/`load` move the whole state in and out (snapshots).
    """

    def __init__(
        self,
        models: Models,
        config: StreamConfig,
        scaling: ScalingConfig | None,
        scorers: tuple[FrameScorer, ClipScorer] | None,
        seed: int,
        prompts: dict[int, str],
        positions: PositionMode = PositionMode.AUTO,
        ranks: Ranks | None = None,
    ) -> None:
        if (scaling is None) != (scorers is None):
            raise ValueError("scaling and scorers go together")
        if 0 not in prompts:
            raise ValueError("the prompt schedule needs a prompt for chunk 0")
        if scaling is not None:
            scaling.check_stream(config)
        self.ranks = ranks or Ranks()
        if scaling is None and self.ranks.size > 1:
            raise StreamT1Error(PLAIN_ON_ONE)
        self.models, self.config, self.scaling, self.positions = models, config, scaling, positions
        self.short_scorer, self.long_scorer = scorers if scorers else (None, None)
        self.seed = seed
        self.schedule = dict(prompts)
        self.sigmas = shifted_sigmas(config.timesteps, config.shift)
        self.prompts = PromptContexts(models)
        self.timer = PhaseTimer(models.device)
        self.decodes = DecodeQueue(models.decoder, models.device)
        self.beams: list[BeamState] = []
        self.chunk = 0

    def prompt_at(self, chunk: int) -> str:
        return self.schedule[max(k for k in self.schedule if k <= chunk)]

    @property
    def reward_chunks(self) -> int:
        """Earlier chunks of a beam that the long-term reward scores with a candidate."""
        return 0 if self.scaling is None else self.scaling.window_chunks - 1

    @property
    def latent_shape(self) -> tuple[int, int, int, int]:
        """[C, F, h, w] of one chunk's latents."""
        p = self.models.preset
        return (p.transformer["in_channels"], self.config.chunk_frames, p.latent_height, p.latent_width)

    # --- state ---------------------------------------------------------------------------------------
    def state(self) -> LoopState:
        return LoopState(self.chunk, tuple(self.beams))

    def load(self, state: LoopState) -> None:
        self.chunk, self.beams = state.chunk, list(state.beams)

    # --- positions and attention prefixes ------------------------------------------------------------
    def _layout(self, cache: KVCache, start_frame: int) -> RotaryLayout:
        return rotary_layout(
            self.positions, cache, start_frame, self.config.chunk_frames, self.models.transformer.table_frames
        )

    def _prefix(self, cache: KVCache, layout: RotaryLayout) -> AttentionPrefix | None:
        model, preset = self.models.transformer, self.models.preset
        return model.build_prefix(cache, *model.grid(preset.latent_height, preset.latent_width), layout.segments)

    # --- one chunk -----------------------------------------------------------------------------------
    def _candidates(self) -> list[_Candidate]:
        sc = self.scaling
        if sc is None:
            specs = [(0 if self.beams else None, 0, plain_seed(self.seed, self.chunk))]
        elif not self.beams:
            specs = [(None, i, first_chunk_seed(self.seed, i)) for i in range(sc.candidates)]
        else:
            specs = [
                (b, c, child_seed(self.seed, self.chunk, b, c, beam.seed))
                for b, beam in enumerate(self.beams)
                for c in range(sc.beam_size)
            ]
        out = []
        for parent, child, seed in specs:
            drawn = draw_noise(torch.Generator().manual_seed(seed), self.latent_shape, len(self.sigmas))
            parent_noise = None if parent is None or sc is None else self.beams[parent].noise
            sigma = 0.0 if sc is None else sc.noise_sigma
            out.append(_Candidate(parent, child, seed, propagate_noise(parent_noise, drawn[0], sigma), drawn[1:]))
        return out

    def _work_groups(self, candidates: list[_Candidate]) -> dict[tuple[int | None, int], list[int]]:
        """This rank's candidates in the batches it denoises and scores together: one parent's
        children (chunk 0's fresh candidates in blocks of beam_size), so a batch is the same on one
        process and on as many ranks as there are beams."""
        n, size = len(candidates), 1 if self.scaling is None else self.scaling.beam_size
        groups: dict[tuple[int | None, int], list[int]] = {}
        for i, cand in enumerate(candidates):
            if self.ranks.owner(i, n) == self.ranks.rank:
                groups.setdefault((cand.parent, i // size if cand.parent is None else 0), []).append(i)
        return groups

    def _cache_segment(
        self, latents: Tensor, prefix: AttentionPrefix | None, layout: RotaryLayout, text: TextContext
    ) -> CacheSegment:
        """A survivor's clean t=0 forward: the K/V its chunk leaves in the cache."""
        zero_t = torch.zeros(1, device=self.models.device)
        start = self.config.start_frame(self.chunk)
        return self.models.transformer.forward_chunk(
            latents, zero_t, start, text, prefix, capture_kv=True, position=layout.chunk
        )[1]

    def _push(
        self, parent: BeamState | None, segment: CacheSegment, flag: SinkRoute
    ) -> tuple[KVCache, list[SinkEvent]]:
        """The segment pushed into its parent's cache, and the routing of what that evicts."""
        cache, evicted = (parent.cache if parent else KVCache()).push(replace(segment, route=flag), self.config)
        events: list[tuple[int, SinkRoute]] = []
        if self.scaling is not None:
            cache, events = route_evicted(cache, evicted, self.scaling.max_sink_frames, self.scaling.ema_alpha)
        return cache, [SinkEvent(f, r.value) for f, r in events]

    def _grow(
        self,
        parent: BeamState | None,
        cache: KVCache,
        events: list[SinkEvent],
        candidate: int,
        seed: int,
        noise: Tensor,
        cpu_latents: Tensor,
        frames: Tensor | None,
        decoder_state: DecoderState,
        short: float,
        long: float,
    ) -> BeamState:
        """The survivor as a beam: `cpu_latents` [C, F, h, w] float32 CPU, `frames` uint8 or None."""
        base = parent or BeamState(
            cache=KVCache(),
            decoder=decoder_state,
            noise=noise,
            seed=seed,
            short_sum=0.0,
            short_count=0,
            last_long=None,
            window_latents=(),
            reward_frames=(),
            candidate=candidate,
        )
        return base.grown(
            cache,
            decoder_state,
            noise,
            seed,
            short,
            long,
            ChunkLatents(self.config.start_frame(self.chunk), cpu_latents),
            frames,
            self.reward_chunks,
            candidate,
            events,
        )

    def _switch_prompt_if_due(self) -> None:
        """At a prompt switch, re-cache every beam's window under the new prompt (LongLive's KV
        re-cache): the window chunks' clean latents re-run at t=0, block-causally, after the sink,
        which keeps its K/V (LongLive's global sink)."""
        if (
            self.chunk == 0
            or self.chunk not in self.schedule
            or self.prompt_at(self.chunk - 1) == self.schedule[self.chunk]
        ):
            return
        text = self.prompts.get(self.schedule[self.chunk])
        self.beams = [replace(beam, cache=self.recache_window(beam, text)) for beam in self.beams]

    def recache_window(self, beam: BeamState, text: TextContext) -> KVCache:
        """The beam's cache with its window chunks re-run at t=0 under `text`, oldest first, each
        attending to the kept sink and the chunks re-cached before it (block-causal)."""
        cache = KVCache(sink=beam.cache.sink)
        zero_t = torch.zeros(1, device=self.models.device)
        for segment in beam.cache.window:
            latents = beam.latents_at(segment.start_frame)[None].to(self.models.device)
            layout = self._layout(cache, segment.start_frame)
            _, fresh = self.models.transformer.forward_chunk(
                latents,
                zero_t,
                segment.start_frame,
                text,
                self._prefix(cache, layout),
                capture_kv=True,
                position=layout.chunk,
            )
            cache = replace(cache, window=cache.window + (replace(fresh, route=segment.route),))
        return cache

    @torch.no_grad()
    def step(self) -> ChunkOutput:
        cfg, sc, timer = self.config, self.scaling, self.timer
        model, device = self.models.transformer, self.models.device
        with timer.phase("recache"):
            self._switch_prompt_if_due()
        prompt = self.prompt_at(self.chunk)
        text = self.prompts.get(prompt)
        start = cfg.start_frame(self.chunk)
        candidates = self._candidates()
        groups = self._work_groups(candidates)
        latents: dict[int, Tensor] = {}
        contexts: dict[int | None, tuple[AttentionPrefix | None, RotaryLayout]] = {}
        for (parent, _), idx in groups.items():
            with timer.phase("denoise"):
                if parent not in contexts:
                    cache = KVCache() if parent is None else self.beams[parent].cache
                    layout = self._layout(cache, start)
                    contexts[parent] = (self._prefix(cache, layout), layout)
                prefix, layout = contexts[parent]
                x_init = torch.stack([candidates[i].noise for i in idx]).to(device, non_blocking=True)
                step_noise = torch.stack([candidates[i].step_noise for i in idx], dim=1).to(device, non_blocking=True)

                def flow(x: Tensor, t: Tensor, prefix=prefix, position=layout.chunk) -> Tensor:
                    return model.forward_chunk(x, t, start, text, prefix, position=position)[0]

                group_latents = denoise_chunk(flow, x_init, self.sigmas, step_noise)
            for row, i in enumerate(idx):
                latents[i] = group_latents[row : row + 1]

        if sc is None:
            output = self._commit_plain(candidates[0], latents[0], contexts, text, prompt, start)
        else:
            output = self._commit_scaled(candidates, latents, contexts, groups, text, prompt, start)
        self.chunk += 1
        return output

    def _commit_plain(
        self, cand: _Candidate, latents: Tensor, contexts, text: TextContext, prompt: str, start: int
    ) -> ChunkOutput:
        """Plain LongLive: cache write, then a decode that nothing here waits for."""
        parent = self.beams[0] if self.beams else None
        with self.timer.phase("cache_write"):
            segment = self._cache_segment(latents, *contexts[cand.parent], text)
            cache, events = self._push(parent, segment, SinkRoute.DISCARD)
        # queued after the cache write, so the decode overlaps the next chunk's denoising
        pending, state = self.decodes.decode(latents, None if parent is None else parent.decoder, overlap=True)
        cpu_latents = latents.float().cpu()
        beam = self._grow(parent, cache, events, 0, cand.seed, cand.noise, cpu_latents[0], None, state, 0.0, 0.0)
        self.beams = [beam]
        record = ChunkRecord(
            self.chunk,
            start,
            0.0,
            prompt,
            [CandidateRecord(0, cand.parent, 0, cand.seed, 0.0, 0.0, 0.0, True, SinkRoute.DISCARD.value)],
            self._beam_summaries(),
            self.timer.take(),
        )
        return ChunkOutput(record, cpu_latents, cand.noise[None], pending)

    def _commit_scaled(
        self,
        candidates: list[_Candidate],
        latents: dict[int, Tensor],
        contexts,
        groups,
        text: TextContext,
        prompt: str,
        start: int,
    ) -> ChunkOutput:
        """Stream-T1: decode and score this rank's candidates, gather every score, keep the global
        top-k; each survivor's owner writes its cache and shares it, so every rank grows every beam."""
        cfg, sc, timer, ranks = self.config, self.scaling, self.timer, self.ranks
        n = len(candidates)
        with timer.phase("decode"):
            decoded: dict[int, tuple[Tensor, DecoderState]] = {}
            for i in latents:
                parent = candidates[i].parent
                pending, state = self.decodes.decode(
                    latents[i], None if parent is None else self.beams[parent].decoder, overlap=False
                )
                decoded[i] = (pending.on_device()[0], state)
        on_device: list[tuple[list[int], Tensor, Tensor]] = []  # read back once all groups are queued
        for (parent, _), idx in groups.items():
            with timer.phase("reward_inputs"):
                frames, clips = self._reward_inputs(parent, [latents[i] for i in idx], [decoded[i][0] for i in idx])
            with timer.phase("short_reward"):
                per_frame = self.short_scorer.score_frames(frames.transpose(1, 2).flatten(0, 1), prompt)
            with timer.phase("long_reward"):
                overall = self.long_scorer.score_clips(clips, prompt, cfg.fps).overall.float()
            on_device.append((idx, per_frame, overall))
        scores: dict[int, tuple[float, float]] = {}
        for idx, per_frame, overall in on_device:
            shorts, longs = short_term(per_frame.cpu(), per_frame.numel() // len(idx)), overall.cpu()
            scores.update({i: (float(shorts[row]), float(longs[row])) for row, i in enumerate(idx)})
        with timer.phase("score_gather"):  # waits for the slowest rank's candidates
            shorts, longs = ranks.gather_scores(scores, n)
        alpha = fusion_alpha(start, sc.horizon_frames, cfg.chunk_frames, sc.fusion_cap)
        fused = fuse(shorts, longs, alpha)
        kept = select_top_k(fused, sc.top_k)

        flags: dict[int, SinkRoute] = {}
        new_beams, kept_latents, kept_frames = [], [], []
        for i in kept:
            cand = candidates[i]
            parent = None if cand.parent is None else self.beams[cand.parent]
            flags[i] = (
                SinkRoute.DISCARD
                if parent is None
                else sink_flag(
                    float(shorts[i]),
                    parent.earlier_short_mean,
                    float(longs[i]),
                    parent.last_long,
                    sc.short_threshold,
                    sc.long_threshold,
                )
            )
        # every owner writes its survivors' caches first, so ranks write at once rather than in turn
        segments: dict[int, CacheSegment] = {}
        for i in kept:
            if ranks.owner(i, n) == ranks.rank:
                with timer.phase("cache_write"):
                    segments[i] = self._cache_segment(latents[i], *contexts[candidates[i].parent], text)
        mine = {  # read back once every cache write is queued
            i: _Survivor(latents[i][0].float().cpu(), segment, decoded[i][1], to_uint8(decoded[i][0]))
            for i, segment in segments.items()
        }
        for i in kept:
            cand = candidates[i]
            parent = None if cand.parent is None else self.beams[cand.parent]
            with timer.phase("exchange"):
                parts = mine[i].to_parts() if i in mine else None
                survivor = _Survivor.from_parts(*ranks.share(parts, ranks.owner(i, n)))
            cache, events = self._push(parent, survivor.segment, flags[i])
            new_beams.append(
                self._grow(
                    parent,
                    cache,
                    events,
                    i,
                    cand.seed,
                    cand.noise,
                    survivor.latents,
                    survivor.frames,
                    survivor.decoder,
                    float(shorts[i]),
                    float(longs[i]),
                )
            )
            kept_latents.append(survivor.latents)
            kept_frames.append(survivor.frames)
        self.beams = new_beams
        moved = ranks.traffic.take()
        record = ChunkRecord(
            chunk=self.chunk,
            start_frame=start,
            alpha=alpha,
            prompt=prompt,
            candidates=[
                CandidateRecord(
                    i,
                    c.parent,
                    c.child,
                    c.seed,
                    float(shorts[i]),
                    float(longs[i]),
                    float(fused[i]),
                    i in flags,
                    flags[i].value if i in flags else None,
                    ranks.owner(i, n),
                )
                for i, c in enumerate(candidates)
            ],
            beams=self._beam_summaries(),
            seconds=timer.take(),
            received_bytes=moved,
        )
        return ChunkOutput(
            record,
            torch.stack(kept_latents),
            torch.stack([candidates[i].noise for i in kept]),
            PendingFrames(torch.stack(kept_frames)),
        )

    def _beam_summaries(self) -> list[BeamSummary]:
        return [BeamSummary(b.candidate, b.cache.sink_frames, b.last_sink_event) for b in self.beams]

    def _reward_inputs(self, parent: int | None, latents: list[Tensor], frames: list[Tensor]) -> tuple[Tensor, Tensor]:
        """What one parent's candidates are scored on: the short-term scorer's frames [n, 3, F, H, W]
        and the long-term scorer's clips [n, 3, T, H, W], from each candidate's `latents`
        [1, C, F, h, w] and streamed `frames` [3, F', H, W]. `video`: the streamed frames, and the
        parent's last chunks as stored followed by them. `reference`: as the reference pipeline
        makes them, each chunk re-decoded from scratch, and the window's latents re-decoded from
        scratch through an H.264 mp4."""
        cfg, device = self.config, self.models.device
        if self.scaling.reward_inputs == "video":
            past = self._reward_past(parent, device)
            return torch.stack(frames), torch.stack([torch.cat((past, f), dim=1) for f in frames])
        decoder, piece = self.models.decoder, cfg.chunk_frames
        history = [
            h[None].to(device, non_blocking=True) for h in (() if parent is None else self.beams[parent].reward_latents)
        ]
        fresh = torch.cat([decode_from_scratch(decoder, x, piece) for x in latents])
        windows = [torch.cat([*history, x.float()], dim=2) for x in latents]
        return fresh, torch.cat([reference_clips(decoder, w, cfg.fps, piece) for w in windows])

    def _reward_past(self, parent: int | None, device: torch.device) -> Tensor:
        """The parent's last `window_chunks - 1` chunks as float frames [3, F, H, W] (F may be 0):
        the long-term reward scores them followed by the candidate's chunk."""
        history = () if parent is None else self.beams[parent].reward_frames
        p = self.models.preset
        empty = torch.empty(3, 0, p.height, p.width, device=device)
        return torch.cat([empty, *(from_uint8(f, device) for f in history)], dim=1)

    # --- replay --------------------------------------------------------------------------------------
    @torch.no_grad()
    def restore(self, record: ChunkRecord, latents: Tensor, noise: Tensor) -> None:
        """Replay one committed chunk from its record and its survivors' `latents` and `noise`
        [beams, C, F, h, w]. Runs exactly the survivors' cache writes and decodes of the original
        run (same inputs and shapes), so the state equals the uninterrupted run's."""
        if record.chunk != self.chunk:
            raise ValueError(f"restoring chunk {record.chunk} at chunk {self.chunk}")
        self._switch_prompt_if_due()
        text = self.prompts.get(self.prompt_at(self.chunk))
        start = self.config.start_frame(self.chunk)
        contexts: dict[int | None, tuple[AttentionPrefix | None, RotaryLayout]] = {}
        new_beams = []
        for b, summary in enumerate(record.beams):
            cand = record.candidates[summary.candidate]
            parent = None if cand.parent is None else self.beams[cand.parent]
            if cand.parent not in contexts:
                cache = KVCache() if parent is None else parent.cache
                layout = self._layout(cache, start)
                contexts[cand.parent] = (self._prefix(cache, layout), layout)
            lat = latents[b : b + 1].to(self.models.device)
            segment = self._cache_segment(lat, *contexts[cand.parent], text)
            cache, events = self._push(parent, segment, SinkRoute(cand.flag))
            pending, state = self.decodes.decode(
                lat, None if parent is None else parent.decoder, overlap=self.scaling is None
            )
            frames = None if self.scaling is None else to_uint8(pending.on_device()[0])
            new_beams.append(
                self._grow(
                    parent,
                    cache,
                    events,
                    summary.candidate,
                    cand.seed,
                    noise[b],
                    latents[b].float(),
                    frames,
                    state,
                    cand.short,
                    cand.long,
                )
            )
        self.beams = new_beams
        self.chunk += 1
