"""Stream-T1 decisions against hand-computed cases: noise mix, seeds, fusion, top-k, sink routes."""

from __future__ import annotations

import math

import pytest
import torch

from engine.config import StreamConfig
from engine.errors import StreamT1Error
from engine.models.kv_cache import CacheSegment, KVCache, SinkRoute
from engine.scaling.config import ScalingConfig
from engine.scaling.noise import child_seed, first_chunk_seed, propagate_noise
from engine.scaling.pruning import fuse, fusion_alpha, select_top_k, short_term
from engine.scaling.sinking import ema_merge, route_evicted, sink_flag


def test_noise_mix_uses_parent_and_keeps_variance():
    parent = torch.full((4,), 2.0)
    eps = torch.full((4,), 3.0)
    out = propagate_noise(parent, eps, -0.1)
    assert torch.allclose(out, torch.full((4,), -0.2 + math.sqrt(0.99) * 3.0))
    assert propagate_noise(None, eps, -0.1) is eps
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(200_000, generator=g), torch.randn(200_000, generator=g)
    assert abs(propagate_noise(a, b, -0.1).var().item() - 1.0) < 0.01
    corr = torch.corrcoef(torch.stack([propagate_noise(a, b, -0.1), a]))[0, 1].item()
    assert abs(corr - (-0.1)) < 0.01


def test_seed_rule_matches_reference():
    assert [first_chunk_seed(42, i) for i in range(4)] == [42, 43, 44, 45]
    assert child_seed(42, 3, 1, 0, parent_seed=43) == 43  # child 0 reuses the parent's seed
    assert child_seed(42, 3, 1, 1, parent_seed=43) == 42 + 3000 + 100 + 1
    assert child_seed(42, 3, 0, 1, parent_seed=44) == 42 + 3000 + 1


def test_fusion_alpha_schedule_and_fused_score():
    # horizon 21 latent frames, chunk 3: alpha = start / 18, capped at 0.4
    assert [fusion_alpha(s, 21, 3, 0.4) for s in (0, 3, 6, 9)] == [0.0, 3 / 18, 6 / 18, 0.4]
    short, long = torch.tensor([1.0, 2.0]), torch.tensor([10.0, 0.0])
    assert torch.allclose(fuse(short, long, 0.25), torch.tensor([0.25 + 7.5, 0.5]))
    assert torch.allclose(short_term(torch.tensor([1.0, 2.0, 3.0, 5.0, 5.0, 5.0]), 3), torch.tensor([2.0, 5.0]))


def test_top_k_across_beams_is_global_and_stable():
    # candidates of beam 0: [0.1, 0.9], beam 1: [0.5, 0.9] -> keep 1 and 3 (tie: lower index first)
    assert select_top_k(torch.tensor([0.1, 0.9, 0.5, 0.9]), 2) == [1, 3]
    assert select_top_k(torch.tensor([0.3, 0.2, 0.1]), 1) == [0]


def test_sink_flags():
    kw = dict(short_threshold=0.0, long_threshold=0.2)
    assert sink_flag(1.0, 0.6, 2.0, 2.1, **kw) is SinkRoute.EMA  # short up, long drop 0.1
    assert sink_flag(1.0, 0.6, 2.0, 2.3, **kw) is SinkRoute.APPEND  # short up, long drop 0.3
    assert sink_flag(0.5, 0.6, 2.0, 2.0, **kw) is SinkRoute.DISCARD  # short down
    assert sink_flag(1.0, None, 2.0, None, **kw) is SinkRoute.DISCARD  # chunk 0 has no history


def segment(start: int, value: float, route=SinkRoute.DISCARD, layers: int = 2) -> CacheSegment:
    t = torch.full((1, 4, 1, 2), value)
    return CacheSegment(start, 3, (t,) * layers, (t + 100,) * layers, route)


def test_three_sink_routes_and_append_when_full_becomes_ema():
    cache = KVCache(sink=(segment(0, 1.0),))
    evicted = (segment(3, 5.0, SinkRoute.DISCARD), segment(6, 7.0, SinkRoute.APPEND), segment(9, 9.0, SinkRoute.EMA))
    new, events = route_evicted(cache, evicted, max_sink_frames=15, alpha=0.999)
    assert events == [(3, SinkRoute.DISCARD), (6, SinkRoute.APPEND), (9, SinkRoute.EMA)]
    assert [s.start_frame for s in new.sink] == [0, 6]  # appended at its original frames
    # EMA went into the most recent sink segment (the appended one), token by token
    assert torch.allclose(new.sink[1].keys[0], torch.full((1, 4, 1, 2), 0.999 * 7.0 + 0.001 * 9.0))
    assert torch.allclose(new.sink[1].values[1], torch.full((1, 4, 1, 2), 0.999 * 107.0 + 0.001 * 109.0))
    assert torch.equal(new.sink[0].keys[0], cache.sink[0].keys[0])  # original sink untouched
    assert torch.equal(evicted[1].keys[0], torch.full((1, 4, 1, 2), 7.0))  # inputs never mutated
    # a full sink turns APPEND into EMA
    full = KVCache(sink=tuple(segment(3 * i, float(i)) for i in range(5)))  # 15 frames
    new, events = route_evicted(full, (segment(30, 50.0, SinkRoute.APPEND),), max_sink_frames=15, alpha=0.5)
    assert events == [(30, SinkRoute.EMA)] and len(new.sink) == 5
    assert torch.allclose(new.sink[-1].keys[0], torch.full((1, 4, 1, 2), 0.5 * 4.0 + 0.5 * 50.0))
    assert new.sink[-1].start_frame == 12


def test_ema_merge_needs_matching_sizes():
    small = CacheSegment(0, 1, (torch.zeros(1, 2, 1, 2),), (torch.zeros(1, 2, 1, 2),))
    with pytest.raises(ValueError):
        ema_merge(small, segment(3, 1.0, layers=1), 0.9)


@pytest.mark.parametrize(
    "kwargs,needle",
    [
        (dict(top_k=0), "--top-k"),
        (dict(max_sink_frames=-3), "--max-sink"),
        (dict(noise_sigma=1.5), "--noise-sigma"),
        (dict(beam_size=0), "--beam-size"),
        (dict(fusion_cap=2.0), "--fusion-cap"),
        (dict(window_chunks=0), "--window-chunks"),
    ],
)
def test_invalid_scaling_config_is_a_clear_error(kwargs, needle):
    with pytest.raises(StreamT1Error, match=needle):
        ScalingConfig(**kwargs)


@pytest.mark.parametrize(
    "stream,valid,invalid",
    [
        (StreamConfig(), [3, 6, 15, 18], [0, 2, 4, 14, 16]),
        (StreamConfig(chunk_frames=2, sink_frames=2, local_window_frames=8), [2, 4, 10], [0, 1, 3, 9]),
    ],
    ids=["sink3-chunk3", "sink2-chunk2"],
)
def test_sink_cap_is_the_initial_sink_plus_whole_chunks(stream, valid, invalid):
    for frames in valid:
        ScalingConfig(max_sink_frames=frames).check_stream(stream)
    for frames in invalid:
        with pytest.raises(StreamT1Error, match="--max-sink") as err:
            ScalingConfig(max_sink_frames=frames).check_stream(stream)
    s, c = stream.sink_frames, stream.chunk_frames
    assert f"{s}, {s + c}, {s + 2 * c}" in str(err.value) and "\n" not in str(err.value)
