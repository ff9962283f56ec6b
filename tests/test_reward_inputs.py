"""Reward inputs: 8 bits by truncation, and the reference's inputs (decode from scratch, H.264 round trip)."""

from __future__ import annotations

from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import pytest
import torch
from diffusers import AutoencoderKLWan

from engine.frames import from_uint8, to_levels, to_uint8
from engine.models.vae_stream import StreamingVaeDecoder
from engine.rewards.inputs import decode_from_scratch, h264_round_trip, reference_clips

CPU = torch.device("cpu")


def test_frames_are_truncated_and_read_back_at_the_same_levels():
    x = torch.tensor([-1.0, -0.999, 0.0, 0.5, 0.999, 1.0, 1.5])
    assert to_uint8(x).tolist() == [0, 0, 127, 191, 254, 255, 255]  # rounding: 0, 0, 128, 191, 255, 255, 255
    levels = torch.arange(256, dtype=torch.uint8)
    back = from_uint8(levels, CPU)
    assert back.min() >= -1 and back.max() == 1
    assert torch.equal(to_levels(back), levels.float())  # the edges v / 127.5 - 1 lose a level for 63 of them
    assert torch.equal(to_uint8(back), levels)


@pytest.fixture(scope="module")
def decoder(tiny_vae: AutoencoderKLWan) -> StreamingVaeDecoder:
    return StreamingVaeDecoder(tiny_vae)


def latents(batch: int, frames: int, seed: int) -> torch.Tensor:
    return torch.randn(batch, 16, frames, 8, 8, generator=torch.Generator().manual_seed(seed))


def test_decode_from_scratch_gives_9_frames_and_leaves_the_stream_alone(decoder):
    stream = latents(1, 9, seed=1).split(3, dim=2)
    decoder.reset(1)
    streamed = [decoder.decode_chunk(stream[0]), decoder.decode_chunk(stream[1])]
    chunk = latents(2, 3, seed=2)
    fresh = decode_from_scratch(decoder, chunk)
    assert fresh.shape == (2, 3, 9, 64, 64)
    continued = decoder.decode_chunk(stream[2])
    assert continued.shape[2] == 12
    decoder.reset(2)
    torch.testing.assert_close(fresh, decoder.decode_chunk(chunk), rtol=0, atol=0)  # a new video's first chunk
    decoder.reset(1)
    decoder.decode_chunk(stream[0])
    decoder.decode_chunk(stream[1])
    torch.testing.assert_close(continued, decoder.decode_chunk(stream[2]), rtol=0, atol=0)
    assert not torch.equal(streamed[1][:, :, -9:], decode_from_scratch(decoder, stream[1]))


def smooth_clip(frames: int, seed: int) -> torch.Tensor:
    """A uint8 clip [3, F, 64, 48] with structure (a moving gradient plus noise), so H.264 has work."""
    g = torch.Generator().manual_seed(seed)
    y, x = torch.meshgrid(torch.arange(64.0), torch.arange(48.0), indexing="ij")
    t = torch.arange(frames, dtype=torch.float32).view(-1, 1, 1)
    base = torch.stack(
        [128 + 100 * torch.sin((x + 2 * t) / 7), 128 + 100 * torch.cos((y - t) / 9), 2 * (x + y) + 0 * t]
    )
    return (base + 20 * torch.randn(base.shape, generator=g)).clamp(0, 255).to(torch.uint8)


def test_h264_round_trip_equals_a_written_and_read_mp4(tmp_path: Path):
    clip = smooth_clip(21, seed=3)
    ours = h264_round_trip(clip, fps=16)
    path = tmp_path / "clip.mp4"
    with imageio.get_writer(
        path,
        fps=16,
        codec="libx264",
        pixelformat="yuv420p",
        quality=None,
        macro_block_size=1,
        output_params=["-threads", "8"],
    ) as writer:
        for frame in clip.permute(1, 2, 3, 0).numpy():
            writer.append_data(frame)
    with imageio.get_reader(path) as reader:
        assert reader.get_meta_data()["fps"] == 16
        expected = torch.from_numpy(np.stack(list(reader.iter_data()))).permute(3, 0, 1, 2)
    assert ours.shape == clip.shape and ours.dtype == torch.uint8
    assert torch.equal(ours, expected)
    diff = (ours.float() - clip.float()).abs()
    assert 0 < diff.mean() < 20  # lossy, but the same picture


def test_h264_round_trip_refuses_odd_sizes():
    with pytest.raises(ValueError, match="even frame size"):
        h264_round_trip(torch.zeros(3, 2, 63, 48, dtype=torch.uint8), fps=16)


def test_reference_clips_are_scratch_decodes_through_h264(decoder):
    window = latents(2, 6, seed=4)
    clips = reference_clips(decoder, window, fps=16)
    assert clips.shape == (2, 3, 21, 64, 64)
    scratch = decode_from_scratch(decoder, window)
    for row in range(2):
        assert torch.equal(to_uint8(clips[row]), h264_round_trip(to_uint8(scratch[row]), fps=16))
