"""Reward inputs: 8 bits by truncation, and the reference's inputs (decode from scratch, H.264 round trip)."""

from __future__ import annotations

from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import pytest
import torch
from diffusers import AutoencoderKLWan

from engine.config import StreamConfig
from engine.frames import from_uint8, to_levels, to_uint8
from engine.models.vae_stream import StreamingVaeDecoder
from engine.rewards.inputs import decode_from_scratch, h264_round_trip, reference_clips
from engine.rewards.proxies import SharpnessProxy, TemporalConsistencyProxy
from engine.scaling.config import ScalingConfig
from engine.stream import ChunkLoop

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


def written_and_read(clip: torch.Tensor, path: Path, fps: int = 16) -> torch.Tensor:
    """A uint8 clip [3, F, H, W] written to an H.264 mp4 file as torchvision's write_video does (x264
    defaults, yuv420p; the thread count pinned as ours is) and read back."""
    with imageio.get_writer(
        path,
        fps=fps,
        codec="libx264",
        pixelformat="yuv420p",
        quality=None,
        macro_block_size=1,
        output_params=["-threads", "8"],
    ) as writer:
        for frame in clip.permute(1, 2, 3, 0).numpy():
            writer.append_data(frame)
    with imageio.get_reader(path) as reader:
        assert reader.get_meta_data()["fps"] == fps
        return torch.from_numpy(np.stack(list(reader.iter_data()))).permute(3, 0, 1, 2)


def test_h264_round_trip_equals_a_written_and_read_mp4(tmp_path: Path):
    clip = smooth_clip(21, seed=3)
    ours = h264_round_trip(clip, fps=16)
    expected = written_and_read(clip, tmp_path / "clip.mp4")
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


class Recorded:
    """A scorer that keeps every batch it is given (a copy), then scores as `inner` does."""

    def __init__(self, inner) -> None:
        self.inner, self.name, self.inputs = inner, inner.name, []

    def score_frames(self, frames: torch.Tensor, prompt: str) -> torch.Tensor:
        self.inputs.append(frames.clone())
        return self.inner.score_frames(frames, prompt)

    def score_clips(self, clips: torch.Tensor, prompt: str, fps: int):
        self.inputs.append(clips.clone())
        return self.inner.score_clips(clips, prompt, fps)


def scored_run(models, reward_inputs: str, chunks: int):
    short, long = Recorded(SharpnessProxy()), Recorded(TemporalConsistencyProxy())
    scaling = ScalingConfig(reward_inputs=reward_inputs, window_chunks=3)
    loop = ChunkLoop(models, StreamConfig(), scaling, (short, long), 3, {0: "a red fox"})
    return loop, [loop.step() for _ in range(chunks)], short.inputs, long.inputs


def test_reference_inputs_are_scratch_decodes_and_an_h264_clip(tiny_models, tmp_path: Path):
    loop, outs, shorts, longs = scored_run(tiny_models, "reference", 3)
    sc, decoder = loop.scaling, loop.models.decoder
    last = outs[-1].record
    for b, beam in enumerate(last.beams):  # each survivor of the last chunk, traced back through its lineage
        cand = last.candidates[beam.candidate]
        window, k, parent = [outs[2].latents[b]], 1, cand.parent
        while k >= 0:
            window.insert(0, outs[k].latents[parent])
            parent, k = outs[k].record.parent_beam(parent), k - 1
        group, row = divmod(beam.candidate, sc.beam_size)
        call = len(shorts) - sc.top_k + group  # the last chunk's calls, one per parent in beam order
        fresh = decode_from_scratch(decoder, outs[2].latents[b][None])[0]  # [3, 9, H, W]
        assert shorts[call].shape[0] == sc.beam_size * 9
        assert torch.equal(shorts[call][row * 9 : (row + 1) * 9], fresh.transpose(0, 1))
        scratch = decode_from_scratch(decoder, torch.cat(window, dim=1)[None])[0]
        assert scratch.shape[1] == 4 * 9 - 3
        mp4 = written_and_read(to_uint8(scratch), tmp_path / f"beam{b}.mp4")
        assert torch.equal(to_uint8(longs[call][row]), mp4)
        assert not torch.equal(mp4, to_uint8(scratch))  # the round trip changed the frames it scores


def test_video_inputs_are_the_streamed_frames(tiny_models):
    _, outs, shorts, longs = scored_run(tiny_models, "video", 3)
    assert shorts[-1].shape[0] == 2 * 12  # two siblings' streamed chunks of 12 frames
    assert longs[-1].shape[2] == 9 + 12 + 12  # the parent's last two chunks and the candidate's
    group, row = divmod(outs[-1].record.beams[0].candidate, 2)
    frames = shorts[len(shorts) - 2 + group][row * 12 : (row + 1) * 12]
    assert torch.equal(to_uint8(frames.transpose(0, 1)), outs[-1].frames.uint8()[0])
