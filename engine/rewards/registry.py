"""Reward scorers by name, for the CLI and sessions: the proxies, or the real reward models.

Real models are imported only when asked for, so choosing the proxies never loads transformers'
Qwen2-VL code, and this module imports before their loaders exist.
"""

from __future__ import annotations

from pathlib import Path

import torch

from engine.errors import StreamT1Error, WeightsError
from engine.rewards.base import ClipScorer, FrameScorer
from engine.rewards.proxies import SharpnessProxy, TemporalConsistencyProxy

SHORT_REWARDS = ("proxy", "hpsv3")
LONG_REWARDS = ("proxy", "videoreward")
# (short, long) per preset: the tiny preset has no trained weights, so it gets the proxies.
DEFAULT_REWARDS: dict[str, tuple[str, str]] = {"tiny": ("proxy", "proxy"), "longlive": ("hpsv3", "videoreward")}

# Where the real reward models live, relative to MODEL_DIR.
HPSV3_CHECKPOINT = Path("HPSv3") / "HPSv3.safetensors"  # MizzenAI/HPSv3
HPSV3_PROCESSOR_DIR = Path("Qwen2-VL-7B-Instruct")  # Qwen/Qwen2-VL-7B-Instruct: processor, tokenizer
VIDEOREWARD_DIR = Path("VideoReward")  # KlingTeam/VideoReward
VIDEOREWARD_BASE_DIR = Path("Qwen2-VL-2B-Instruct")  # Qwen/Qwen2-VL-2B-Instruct: VideoReward's base model


def reward_download_items() -> list[tuple[str, tuple[str, ...], Path]]:
    """(hub repo, file patterns, folder under MODEL_DIR) for every real reward model and the
    processor / base-model files its loader reads (fetched as patterns: some are optional)."""
    from engine.rewards import hpsv3, videoreward

    return [
        (hpsv3.REPO, (hpsv3.CHECKPOINT_FILE,), HPSV3_CHECKPOINT.parent),
        (hpsv3.PROCESSOR_REPO, tuple(hpsv3.PROCESSOR_FILES), HPSV3_PROCESSOR_DIR),
        (videoreward.REPO, tuple(videoreward.FILES), VIDEOREWARD_DIR),
        (videoreward.BASE_REPO, tuple(videoreward.BASE_FILES), VIDEOREWARD_BASE_DIR),
    ]


def check_reward_names(short: str, long: str) -> None:
    """One-line error for an unknown scorer name, before anything is loaded."""
    for role, name, valid in (("short-term", short, SHORT_REWARDS), ("long-term", long, LONG_REWARDS)):
        if name not in valid:
            raise StreamT1Error(f"unknown {role} reward {name!r}: choose one of {', '.join(valid)}")


def _weights(model_dir: Path | None, name: str) -> Path:
    if model_dir is None:
        raise WeightsError(
            f"the {name} reward needs downloaded weights: pass --model-dir DIR, or use the proxy reward"
        )
    return Path(model_dir)


def check_rewards(short: str, long: str, model_dir: Path | None) -> None:
    """Every error `build_scorers` can know before loading: unknown names, no weights folder."""
    check_reward_names(short, long)
    for name in (short, long):
        if name != "proxy":
            _weights(model_dir, name)


def build_scorers(
    short: str, long: str, *, model_dir: Path | None, device: torch.device, dtype: torch.dtype
) -> tuple[FrameScorer, ClipScorer]:
    """The short-term and long-term scorers named `short` and `long`.

    Both names are checked before anything loads. `device` / `dtype` apply to the real models; the
    proxies compute in float32 wherever the frames are.
    """
    check_rewards(short, long, model_dir)
    frame_scorer: FrameScorer
    clip_scorer: ClipScorer
    if short == "proxy":
        frame_scorer = SharpnessProxy()
    else:
        root = _weights(model_dir, short)
        from engine.rewards.hpsv3 import HPSv3Scorer

        frame_scorer = HPSv3Scorer.from_files(root / HPSV3_CHECKPOINT, root / HPSV3_PROCESSOR_DIR, device, dtype)
    if long == "proxy":
        clip_scorer = TemporalConsistencyProxy()
    else:
        folder = _weights(model_dir, long) / VIDEOREWARD_DIR
        from engine.rewards.videoreward import VideoRewardScorer

        clip_scorer = VideoRewardScorer.from_folder(folder, device, dtype)
    return frame_scorer, clip_scorer
