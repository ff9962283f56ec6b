"""Weight-free reward proxies on hand-built frames, and choosing scorers by name."""

from __future__ import annotations

import math
import sys
import types
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from engine.errors import StreamT1Error, WeightsError
from engine.model_files import HPSV3_CHECKPOINT, HPSV3_PROCESSOR_DIR, VIDEOREWARD_BASE_DIR, VIDEOREWARD_DIR
from engine.models.presets import PRESETS
from engine.rewards.base import ClipScorer, FrameScorer
from engine.rewards.proxies import SharpnessProxy, TemporalConsistencyProxy
from engine.rewards.registry import DEFAULT_REWARDS, LONG_REWARDS, SHORT_REWARDS, build_scorers

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
MAX_LOG = math.log1p(1020.0**2)


def from_255(v: torch.Tensor) -> torch.Tensor:
    """0..255 values -> the [-1, 1] frames scorers take."""
    return v.float() / 127.5 - 1


def gray(v: torch.Tensor) -> torch.Tensor:
    """[H, W] 0..255 -> one gray [1, 3, H, W] frame."""
    return from_255(v).expand(1, 3, *v.shape)


def shapes(size: int = 64) -> torch.Tensor:
    """A clean frame of flat discs on a dark background: sharp edges, no noise."""
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    frame = torch.full((3, size, size), -0.8)
    for cx, cy, r, value in ((15, 20, 10, 0.9), (45, 40, 15, 0.2), (30, 50, 8, -0.3)):
        frame[:, (xx - cx) ** 2 + (yy - cy) ** 2 < r * r] = value
    frame[1] *= 0.7
    return frame[None]


def blur(frames: torch.Tensor, sigma: float) -> torch.Tensor:
    taps = torch.arange(-4, 5, dtype=torch.float32)
    w = torch.exp(-(taps**2) / (2 * sigma**2))
    w = w / w.sum()
    kernel = (w[:, None] * w[None, :]).expand(3, 1, 9, 9)
    return F.conv2d(F.pad(frames, (4, 4, 4, 4), mode="replicate"), kernel, groups=3)


# --- sharpness -------------------------------------------------------------------------------------


def test_step_edge_exact():
    # Columns 0, 0, 255, 255, 255: the Laplacian at the 3 valid columns is 255, -255, 0 on every
    # row; the noise operator cancels on a straight edge.
    v = torch.tensor([0.0, 0.0, 255.0, 255.0, 255.0]).expand(5, 5)
    expected = math.log1p(2 * 255.0**2 / 3) / MAX_LOG
    assert SharpnessProxy().score_frames(gray(v), "").item() == pytest.approx(expected, rel=1e-5)


def test_step_edge_uses_luma():
    v = torch.zeros(3, 5, 5)
    v[0, :, 2:] = 255.0  # red only: luma 0.299 * 255
    expected = math.log1p(2 * (0.299 * 255.0) ** 2 / 3) / MAX_LOG
    assert SharpnessProxy().score_frames(from_255(v)[None], "").item() == pytest.approx(expected, rel=1e-5)


def test_edge_pixel_exact_noise_discount():
    # One bright pixel on the top border at column 1: the Laplacian is 255 at one of the 9 valid
    # positions; Immerkaer's operator gives -510 and 255 at two of them.
    v = torch.zeros(5, 5)
    v[0, 1] = 255.0
    lap_var = 255.0**2 * (1 / 9 - 1 / 81)
    noise_var = math.pi / 2 * (765 / 9 / 6) ** 2
    expected = math.log1p(lap_var) / MAX_LOG * (1 - 20 * noise_var / lap_var)
    assert SharpnessProxy().score_frames(gray(v), "").item() == pytest.approx(expected, rel=1e-4)


def test_impulse_and_constant_score_zero():
    impulse = torch.zeros(5, 5)
    impulse[2, 2] = 255.0  # Laplacian variance 144500 < 20 x Immerkaer noise variance: all noise
    frames = torch.cat([gray(impulse), gray(torch.full((5, 5), 90.0))])
    assert SharpnessProxy().score_frames(frames, "").tolist() == [0.0, 0.0]


def test_blur_lowers_and_noise_does_not_win():
    g = torch.Generator().manual_seed(0)
    sharp = shapes()
    frames = torch.cat([sharp, blur(sharp, 1.0), blur(sharp, 2.5), torch.rand(1, 3, 64, 64, generator=g) * 2 - 1])
    s = SharpnessProxy().score_frames(frames, "")
    assert s[0] > s[1] > s[2] > s[3]
    assert s[3] < 0.05  # white noise: its Laplacian energy is all explained by noise
    noisy = (sharp + 0.05 * torch.randn(sharp.shape, generator=g)).clamp(-1, 1)
    assert SharpnessProxy().score_frames(noisy, "").item() < s[0]


# --- temporal ------------------------------------------------------------------------------------


def clip(frames_255: list[torch.Tensor]) -> torch.Tensor:
    """Frames of [H, W] 0..255 values (same on all channels) -> one [1, 3, F, H, W] clip."""
    v = torch.stack(frames_255)[None, None].expand(1, 3, -1, -1, -1)
    return from_255(v)


def test_constant_and_alternating_clips():
    const = clip([torch.full((4, 4), 77.0)] * 6)
    alternating = clip([torch.full((4, 4), 255.0 * (t % 2)) for t in range(6)])
    s = TemporalConsistencyProxy().score_clips(torch.cat([const, alternating]), "", 16)
    assert s.overall.tolist() == pytest.approx([1.0, 0.0], abs=1e-6)
    assert s.parts["flicker"].tolist() == pytest.approx([1.0, 0.0], abs=1e-6)
    assert s.parts["smoothness"].tolist() == pytest.approx([1.0, 0.0], abs=1e-6)


def test_temporal_exact():
    # |f1 - f0| averages 102, |f2 - f1| 153: flicker (255 - 127.5) / 255 = 0.5.
    # f1 - (f0 + f2) / 2 = 51 - 127.5, 102 - 127.5, 0 - 127.5, 255 - 127.5: mean abs 89.25.
    f1 = torch.tensor([[51.0, 102.0], [0.0, 255.0]])
    s = TemporalConsistencyProxy().score_clips(clip([torch.zeros(2, 2), f1, torch.full((2, 2), 255.0)]), "", 16)
    assert s.parts["flicker"].item() == pytest.approx(0.5, abs=1e-6)
    assert s.parts["smoothness"].item() == pytest.approx(1 - 89.25 / 255, abs=1e-6)
    assert s.overall.item() == pytest.approx((0.5 + 1 - 89.25 / 255) / 2, abs=1e-6)


def test_linear_fade_is_smooth_but_flickers():
    s = TemporalConsistencyProxy().score_clips(clip([torch.full((3, 3), 51.0 * t) for t in range(6)]), "", 16)
    assert s.parts["flicker"].item() == pytest.approx(1 - 51 / 255, abs=1e-6)
    assert s.parts["smoothness"].item() == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("num_frames", [1, 2])
def test_short_clips_have_nothing_to_penalise(num_frames: int):
    frames = [torch.full((2, 2), 255.0 * t) for t in range(num_frames)]
    s = TemporalConsistencyProxy().score_clips(clip(frames), "", 16)
    assert s.parts["smoothness"].item() == 1.0
    assert s.parts["flicker"].item() == (1.0 if num_frames == 1 else 0.0)


# --- both: batching, devices, dtypes ----------------------------------------------------------------


def random_frames(n: int, g: torch.Generator) -> torch.Tensor:
    """Smooth-ish random frames so that scores are neither 0 nor 1."""
    return blur(torch.rand(n, 3, 24, 32, generator=g) * 3 - 1.5, 1.5).clamp(-1, 1)


def test_batch_equals_one_by_one():
    g = torch.Generator().manual_seed(1)
    frames = random_frames(5, g)
    sharp = SharpnessProxy().score_frames(frames, "")
    assert torch.allclose(sharp, torch.cat([SharpnessProxy().score_frames(f[None], "") for f in frames]), atol=1e-6)
    clips = random_frames(12, g).view(3, 4, 3, 24, 32).transpose(1, 2)
    batch = TemporalConsistencyProxy().score_clips(clips, "", 16)
    singles = [TemporalConsistencyProxy().score_clips(c[None], "", 16) for c in clips]
    assert torch.allclose(batch.overall, torch.cat([s.overall for s in singles]), atol=1e-6)
    for name in ("flicker", "smoothness"):
        assert torch.allclose(batch.parts[name], torch.cat([s.parts[name] for s in singles]), atol=1e-6)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_devices_and_dtypes(device: str, dtype: torch.dtype):
    g = torch.Generator().manual_seed(2)
    frames = random_frames(6, g).to(dtype)
    reference_frames = frames.float()  # the same values, upcast on the CPU
    sharp = SharpnessProxy().score_frames(frames.to(device), "")
    assert sharp.dtype == torch.float32 and sharp.device.type == device
    assert torch.allclose(sharp.cpu(), SharpnessProxy().score_frames(reference_frames, ""), atol=1e-5)
    clips = frames.view(2, 3, 3, 24, 32).transpose(1, 2)
    s = TemporalConsistencyProxy().score_clips(clips.to(device), "", 16)
    ref = TemporalConsistencyProxy().score_clips(clips.float(), "", 16)
    for got, want in [(s.overall, ref.overall), *((s.parts[k], ref.parts[k]) for k in ref.parts)]:
        assert got.dtype == torch.float32 and got.device.type == device
        assert torch.allclose(got.cpu(), want, atol=1e-5)


def test_inputs_are_not_modified():
    frames = random_frames(2, torch.Generator().manual_seed(3)) * 1.5  # beyond [-1, 1]: clamped inside
    before = frames.clone()
    SharpnessProxy().score_frames(frames, "")
    TemporalConsistencyProxy().score_clips(frames.transpose(0, 1)[None], "", 16)
    assert torch.equal(frames, before)


# --- registry ------------------------------------------------------------------------------------


def build(short: str, long: str, model_dir: Path | None = None):
    return build_scorers(short, long, model_dir=model_dir, device=torch.device("cpu"), dtype=torch.float32)


def test_proxies_by_name():
    short, long = build("proxy", "proxy")
    assert isinstance(short, FrameScorer) and isinstance(long, ClipScorer)
    assert (short.name, long.name) == ("sharpness-proxy", "temporal-proxy")


@pytest.mark.parametrize(
    ("short", "long", "listed"),
    [
        ("none", "proxy", "proxy, hpsv3"),
        ("proxy", "none", "proxy, videoreward"),
        ("videoreward", "proxy", "proxy, hpsv3"),
        ("proxy", "hpsv3", "proxy, videoreward"),
    ],
)
def test_unknown_names(short: str, long: str, listed: str):
    with pytest.raises(StreamT1Error, match=listed) as err:
        build(short, long)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(("short", "long"), [("hpsv3", "proxy"), ("proxy", "videoreward")])
def test_real_models_need_a_model_dir(short: str, long: str):
    with pytest.raises(WeightsError, match="--model-dir"):
        build(short, long)


def test_real_models_get_their_paths(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    calls: dict[str, tuple] = {}

    class HPSv3Scorer:
        @classmethod
        def from_files(cls, *args):
            calls["hpsv3"] = args
            return "hpsv3"

    class VideoRewardScorer:
        @classmethod
        def from_folder(cls, *args):
            calls["videoreward"] = args
            return "videoreward"

    fake = types.SimpleNamespace(HPSv3Scorer=HPSv3Scorer, VideoRewardScorer=VideoRewardScorer)
    monkeypatch.setitem(sys.modules, "engine.rewards.hpsv3", fake)
    monkeypatch.setitem(sys.modules, "engine.rewards.videoreward", fake)
    cpu, bf16 = torch.device("cpu"), torch.bfloat16
    got = build_scorers("hpsv3", "videoreward", model_dir=tmp_path, device=cpu, dtype=bf16)
    assert got == ("hpsv3", "videoreward")
    assert calls["hpsv3"] == (tmp_path / "HPSv3/HPSv3.safetensors", tmp_path / "Qwen2-VL-7B-Instruct", cpu, bf16)
    assert calls["videoreward"] == (tmp_path / "VideoReward", cpu, bf16)
    assert (HPSV3_CHECKPOINT, HPSV3_PROCESSOR_DIR, VIDEOREWARD_DIR, VIDEOREWARD_BASE_DIR) == (
        Path("HPSv3/HPSv3.safetensors"),
        Path("Qwen2-VL-7B-Instruct"),
        Path("VideoReward"),
        Path("Qwen2-VL-2B-Instruct"),
    )


def test_defaults_cover_every_preset():
    assert set(DEFAULT_REWARDS) == set(PRESETS)
    assert DEFAULT_REWARDS["tiny"] == ("proxy", "proxy")
    assert DEFAULT_REWARDS["longlive"] == ("hpsv3", "videoreward")
    assert all(s in SHORT_REWARDS and lng in LONG_REWARDS for s, lng in DEFAULT_REWARDS.values())
