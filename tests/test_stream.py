"""The chunk loop in plain LongLive mode on the tiny preset: deterministic per seed, frame counts,
window bounded; the stream geometry those rest on."""

from __future__ import annotations

import pytest
import torch

from engine.config import StreamConfig
from engine.errors import StreamT1Error
from engine.models.factory import random_models
from engine.models.presets import TINY
from engine.stream import ChunkLoop, ChunkOutput

CHUNKS = 5  # the first chunk fills the sink, the next two the window, the last two roll it


def run(seed: int) -> tuple[ChunkLoop, list[ChunkOutput]]:
    """A plain run on freshly built networks (so nothing carries over from an earlier run)."""
    models = random_models(TINY, torch.device("cpu"), torch.float32)
    loop = ChunkLoop(models, StreamConfig(), None, None, seed, {0: "a red fox"})
    return loop, [loop.step() for _ in range(CHUNKS)]


@pytest.fixture(scope="module")
def seven() -> tuple[ChunkLoop, list[ChunkOutput]]:
    return run(7)


def test_same_seed_same_video_other_seed_differs(seven):
    a = [out.latents for out in seven[1]]
    b = [out.latents for out in run(7)[1]]
    c = [out.latents for out in run(8)[1]]
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not torch.equal(a[0], c[0])
    # chunks differ from each other (noise is drawn per chunk, not reused)
    assert not torch.equal(a[1], a[2])


def test_plain_chunks_have_their_frame_counts_and_a_bounded_window(seven):
    loop, outputs = seven
    for k, chunk in enumerate(outputs):
        assert chunk.frames.uint8().shape == (1, 3, 9 if k == 0 else 12, TINY.height, TINY.width)
        assert set(chunk.timed_record().seconds) == {"recache", "denoise", "cache_write", "decode"}
    assert loop.beams[0].cache.num_frames == StreamConfig().local_window_frames - StreamConfig().chunk_frames


def test_stream_config_geometry():
    longlive = StreamConfig()  # 12 = 3 sink + 6 previous + 3 current latent frames
    assert (longlive.sink_chunks, longlive.window_chunks) == (1, 2)
    assert [longlive.start_frame(k) for k in range(4)] == [0, 3, 6, 9]
    assert [longlive.pixel_frames(k) for k in range(3)] == [9, 12, 12]  # the first latent frame decodes to 1
    other = StreamConfig(chunk_frames=2, sink_frames=4, local_window_frames=12)
    assert (other.sink_chunks, other.window_chunks, other.start_frame(3), other.pixel_frames(0)) == (2, 3, 6, 5)
    for bad in (dict(chunk_frames=0), dict(sink_frames=2), dict(local_window_frames=13), dict(local_window_frames=5)):
        with pytest.raises(StreamT1Error):
            StreamConfig(**bad)
