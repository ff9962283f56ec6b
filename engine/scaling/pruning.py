"""Stream-scaled reward pruning: fuse short- and long-term rewards, keep the global top-k."""

from __future__ import annotations

from torch import Tensor


def fusion_alpha(start_frame: int, horizon_frames: int, chunk_frames: int, cap: float) -> float:
    """Weight of the short-term reward: start_frame / (horizon - chunk), capped. The long-term reward
    leads early; the short-term weight grows to `cap`."""
    span = horizon_frames - chunk_frames
    if span <= 0:
        return cap
    return min(start_frame / span, cap)


def fuse(short: Tensor, long: Tensor, alpha: float) -> Tensor:
    """score = alpha * short + (1 - alpha) * long (the scales are not normalized, as in the paper)."""
    return alpha * short + (1.0 - alpha) * long


def select_top_k(scores: Tensor, k: int) -> list[int]:
    """Indices of the k best candidates, best first; ties keep the lower index (deterministic)."""
    order = sorted(range(scores.numel()), key=lambda i: (-float(scores[i]), i))
    return order[:k]


def short_term(frame_scores: Tensor, frames_per_candidate: int) -> Tensor:
    """Mean per-frame score of each candidate's chunk: [N * F] -> [N]."""
    return frame_scores.view(-1, frames_per_candidate).float().mean(dim=1)
