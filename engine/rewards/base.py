"""The reward protocol: scorers see decoded frames as tensors (never files), batched.

Two roles in Stream-T1:
- short-term (`FrameScorer`): one score per image; a chunk's short-term reward is the mean over
  its frames (HPSv3 in the paper);
- long-term (`ClipScorer`): one score per clip, a sliding window of recent chunks (VideoReward /
  VideoAlign "Overall" in the paper), plus its named parts (VQ, MQ, TA), which decide nothing and
  are not stored: callers that want them (tests against the reference) read them from `ClipScores`.

Frames are float tensors in [-1, 1] on any device: [N, 3, H, W] images, [B, 3, F, H, W] clips.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from torch import Tensor


@dataclass(frozen=True)
class ClipScores:
    """Per-clip long-term scores: `overall` [B] drives decisions; `parts` (name -> [B]) are its terms."""

    overall: Tensor
    parts: dict[str, Tensor]


@runtime_checkable
class FrameScorer(Protocol):
    name: str

    def score_frames(self, frames: Tensor, prompt: str) -> Tensor:
        """[N, 3, H, W] in [-1, 1] -> [N] float32 scores (higher is better)."""
        ...


@runtime_checkable
class ClipScorer(Protocol):
    name: str

    def score_clips(self, clips: Tensor, prompt: str, fps: int) -> ClipScores:
        """[B, 3, F, H, W] in [-1, 1] at `fps` -> scores per clip (higher is better)."""
        ...
