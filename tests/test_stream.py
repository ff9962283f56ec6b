"""The chunk loop in plain LongLive mode on the tiny preset: deterministic per seed, frame counts,
window bounded."""

from __future__ import annotations

import torch

from engine.config import StreamConfig
from engine.models.factory import random_models
from engine.models.presets import TINY
from engine.stream import ChunkLoop


def run(seed: int, chunks: int = 5) -> list[torch.Tensor]:
    models = random_models(TINY, torch.device("cpu"), torch.float32)
    loop = ChunkLoop(models, StreamConfig(), None, None, seed, {0: "a red fox"})
    out = []
    for k in range(chunks):
        chunk = loop.step()
        assert chunk.frames.uint8().shape == (1, 3, 9 if k == 0 else 12, TINY.height, TINY.width)
        assert set(chunk.timed_record().seconds) == {"recache", "denoise", "cache_write", "decode"}
        out.append(chunk.latents)
    assert loop.beams[0].cache.num_frames == StreamConfig().local_window_frames - StreamConfig().chunk_frames
    return out


def test_same_seed_same_video_other_seed_differs():
    a, b, c = run(7), run(7), run(8)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not torch.equal(a[0], c[0])
    # chunks differ from each other (noise is drawn per chunk, not reused)
    assert not torch.equal(a[1], a[2])
