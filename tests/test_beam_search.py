"""Stream-T1 beam search on the tiny preset: batching is exact, pruned candidates leave nothing
behind, appended sinks keep their frame positions, and scaling beats plain LongLive on the proxies."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
import torch
from torch import Tensor

from engine.config import StreamConfig
from engine.frames import from_uint8, to_levels
from engine.models.causal_wan import apply_rope
from engine.models.kv_cache import CacheSegment, KVCache, SinkRoute
from engine.rewards.base import ClipScorer, FrameScorer
from engine.rewards.proxies import SharpnessProxy, TemporalConsistencyProxy
from engine.scaling.config import ScalingConfig
from engine.scaling.pruning import fusion_alpha
from engine.stream import ChunkLoop


@pytest.fixture
def models(tiny_models):
    return tiny_models


def search(models, seed: int, scaling: ScalingConfig | None = None) -> ChunkLoop:
    return ChunkLoop(
        models,
        StreamConfig(),
        scaling or ScalingConfig(),
        (SharpnessProxy(), TemporalConsistencyProxy()),
        seed,
        {0: "a red fox"},
    )


def final_videos(outputs) -> list[list[Tensor]]:
    """Each surviving beam's whole video (uint8 frames per chunk), following the records back."""
    videos = []
    for beam in range(len(outputs[-1].record.beams)):
        chunks, b = [], beam
        for out in reversed(outputs):
            chunks.insert(0, out.frames.uint8()[b])
            b = out.record.parent_beam(b)
        videos.append(chunks)
    return videos


def video_score(
    chunks: Sequence[Tensor], prompt: str, short_scorer: FrameScorer, long_scorer: ClipScorer, alpha: float, fps: int
) -> float:
    """Fused score of a finished video (frames per chunk, [3, F, H, W] in [-1, 1]): alpha * mean
    short-term reward over all frames + (1 - alpha) * long-term reward of the whole clip."""
    video = torch.cat(list(chunks), dim=1)
    short = float(short_scorer.score_frames(video.transpose(0, 1), prompt).float().mean())
    long = float(long_scorer.score_clips(video[None], prompt, fps).overall.float()[0])
    return alpha * short + (1 - alpha) * long


def test_batched_candidates_equal_each_alone(models):
    model = models.transformer
    s = search(models, 3)
    for _ in range(4):  # a rolled window with a real prefix
        s.step()
    prefix = model.build_prefix(s.beams[0].cache, *model.grid(8, 8))
    text = s.prompts.get("a red fox")
    x = torch.randn(3, 16, 3, 8, 8)
    t = torch.tensor([937.5, 937.5, 937.5])
    batched, _ = model.forward_chunk(x, t, 12, text, prefix)
    for i in range(3):
        alone, _ = model.forward_chunk(x[i : i + 1], t[:1], 12, text, prefix)
        torch.testing.assert_close(batched[i : i + 1], alone, rtol=1e-5, atol=1e-5)


def test_survivors_alone_enter_the_cache(models):
    s = search(models, 5)
    for _ in range(3):
        record = s.step().record
        kept = [c.index for c in record.candidates if c.kept]
        assert sorted(kept) == sorted(b.candidate for b in s.beams)
        assert len(kept) == s.scaling.top_k
    model = models.transformer
    text = s.prompts.get("a red fox")
    for beam in s.beams:
        # the newest cached chunk is exactly the clean cache-write of this beam's own latents
        newest = beam.cache.window[-1]
        parent_cache = KVCache(sink=beam.cache.sink, window=beam.cache.window[:-1])
        prefix = model.build_prefix(parent_cache, 4, 4)
        _, expected = model.forward_chunk(
            beam.latents_at(newest.start_frame)[None], torch.zeros(1), newest.start_frame, text, prefix, capture_kv=True
        )
        for got, want in zip(newest.keys, expected.keys):
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
        # nothing but this lineage's chunks: one segment per chunk, frames in order
        starts = [seg.start_frame for seg in beam.cache.segments]
        assert starts == sorted(set(starts)) and all(seg.keys[0].shape[0] == 1 for seg in beam.cache.segments)


def test_appended_sink_attends_at_its_original_frames(models):
    model = models.transformer
    keys = tuple(torch.randn(1, 48, 2, 12) for _ in range(2))
    vals = tuple(torch.randn(1, 48, 2, 12) for _ in range(2))
    sink0 = CacheSegment(0, 3, keys, vals)
    appended = CacheSegment(6, 3, keys, vals, SinkRoute.APPEND)
    prefix = model.build_prefix(KVCache(sink=(sink0, appended)), 4, 4)
    torch.testing.assert_close(prefix.keys[0][:, :48], apply_rope(keys[0], *model.rope(0, 3, 4, 4)))
    torch.testing.assert_close(prefix.keys[0][:, 48:], apply_rope(keys[0], *model.rope(6, 3, 4, 4)))
    assert not torch.allclose(prefix.keys[0][:, :48], prefix.keys[0][:, 48:])


def test_memory_sinking_changes_the_cache_when_flags_say_so(models):
    # thresholds that make every kept chunk (after the first) APPEND: sinks grow up to the cap
    s = search(models, 9, ScalingConfig(short_threshold=-1e9, long_threshold=-1e9, max_sink_frames=9))
    routes = set()
    for _ in range(7):
        record = s.step().record
        routes |= {b.last_sink_event.route for b in record.beams if b.last_sink_event is not None}
    beam = s.beams[0]
    assert [seg.start_frame for seg in beam.cache.sink][:3] == [0, 3, 6]
    assert beam.cache.sink_frames == 9  # capped at max_sink_frames; further APPENDs became EMA
    assert {SinkRoute.APPEND.value, SinkRoute.EMA.value} <= routes


def test_scaling_beats_plain_longlive_on_the_proxies(models):
    chunks, cfg, short, long = 4, StreamConfig(), SharpnessProxy(), TemporalConsistencyProxy()
    alpha = fusion_alpha(
        cfg.start_frame(chunks - 1), ScalingConfig().horizon_frames, cfg.chunk_frames, ScalingConfig().fusion_cap
    )
    scaled, plain = [], []
    for seed in range(10):
        s = search(models, seed)
        videos = final_videos([s.step() for _ in range(chunks)])
        # the final pick, as sessions make it for videos of up to 30 s: the long-term scorer on each whole video
        clips = [torch.cat([from_uint8(f, torch.device("cpu")) for f in v], dim=1) for v in videos]
        best = max(
            range(len(clips)),
            key=lambda i: (float(long.score_clips(clips[i][None], "a red fox", cfg.fps).overall[0]), -i),
        )
        scaled.append(
            video_score(
                [from_uint8(f, torch.device("cpu")) for f in videos[best]], "a red fox", short, long, alpha, cfg.fps
            )
        )
        gen = ChunkLoop(models, cfg, None, None, seed, {0: "a red fox"})
        frames = [from_uint8(gen.step().frames.uint8()[0], torch.device("cpu")) for _ in range(chunks)]
        plain.append(video_score(frames, "a red fox", short, long, alpha, cfg.fps))
    mean_scaled, mean_plain = sum(scaled) / 10, sum(plain) / 10
    print(f"mean final fused proxy score: scaled {mean_scaled:.4f} vs plain {mean_plain:.4f}")
    assert mean_scaled > mean_plain


class Recording:
    """A proxy scorer that keeps every input it is handed."""

    def __init__(self, scorer) -> None:
        self.scorer, self.name, self.seen = scorer, scorer.name, []

    def score_frames(self, frames: Tensor, prompt: str) -> Tensor:
        self.seen.append(frames)
        return self.scorer.score_frames(frames, prompt)

    def score_clips(self, clips: Tensor, prompt: str, fps: int):
        self.seen.append(clips)
        return self.scorer.score_clips(clips, prompt, fps)


def test_both_rewards_see_the_same_truncated_levels(models):
    """The long-term reward reads a survivor's chunk back from the beam's uint8 history: at the
    8-bit levels the short-term reward's inputs truncate to (no level lost on the way)."""
    short, long = Recording(SharpnessProxy()), Recording(TemporalConsistencyProxy())
    s = ChunkLoop(models, StreamConfig(), ScalingConfig(), (short, long), 5, {0: "a red fox"})
    first = s.step().record
    # scored one sibling group (2 candidates) per call: 2 calls a chunk
    fresh = to_levels(torch.cat(short.seen[:2])).unflatten(0, (4, -1)).transpose(1, 2)  # [candidates, 3, 9, H, W]
    survivors = {b.candidate for b in first.beams}
    second = s.step().record
    history = to_levels(torch.cat(long.seen[2:4])[:, :, :9])
    matched = {next(i for i in range(4) if torch.equal(fresh[i], h)) for h in history}
    assert matched == survivors
    for b, beam in enumerate(s.beams):
        origin = first.beams[second.parent_beam(b)].candidate
        assert torch.equal(beam.reward_frames[0], fresh[origin].to(torch.uint8))
