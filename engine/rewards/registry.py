"""Reward scorers by name, for the CLI and sessions: the proxies, or the real reward models.

Real models are imported only when asked for, so choosing the proxies never loads transformers'
Qwen2-VL code. Where their files live: `engine.model_files`.
"""

from __future__ import annotations

from pathlib import Path

import torch

from engine.errors import StreamT1Error, WeightsError
from engine.model_files import hpsv3_files, videoreward_dir
from engine.rewards.base import ClipScorer, FrameScorer
from engine.rewards.proxies import SharpnessProxy, TemporalConsistencyProxy

SHORT_REWARDS = ("proxy", "hpsv3")
LONG_REWARDS = ("proxy", "videoreward")
# (short, long) per preset: the tiny preset has no trained weights, so it gets the proxies.
DEFAULT_REWARDS: dict[str, tuple[str, str]] = {"tiny": ("proxy", "proxy"), "longlive": ("hpsv3", "videoreward")}


def check_reward_names(short: str, long: str) -> None:
    """One-line error for an unknown scorer name, before anything is loaded."""
    for role, name, valid in (("short-term", short, SHORT_REWARDS), ("long-term", long, LONG_REWARDS)):
        if name not in valid:
            raise StreamT1Error(f"unknown {role} reward {name!r}: choose one of {', '.join(valid)}")


def _weights(model_dir: Path | None, name: str) -> Path:
    if model_dir is None:
        raise WeightsError(f"the {name} reward needs downloaded weights: pass --model-dir DIR, or use the proxy reward")
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
        checkpoint, processor_dir = hpsv3_files(_weights(model_dir, short))
        from engine.rewards.hpsv3 import HPSv3Scorer

        frame_scorer = HPSv3Scorer.from_files(checkpoint, processor_dir, device, dtype)
    if long == "proxy":
        clip_scorer = TemporalConsistencyProxy()
    else:
        folder = videoreward_dir(_weights(model_dir, long))
        from engine.rewards.videoreward import VideoRewardScorer

        clip_scorer = VideoRewardScorer.from_folder(folder, device, dtype)
    return frame_scorer, clip_scorer
