"""Stream-scaled noise propagation and the reference's seed rule.

x_init = sigma * parent_noise + sqrt(1 - sigma^2) * eps keeps unit variance for independent
unit-variance inputs; parent_noise is the (already mixed) initial noise of the parent beam's last
chunk, so older chunks enter with weight sigma^j.
"""

from __future__ import annotations

import math

from torch import Tensor


def propagate_noise(parent_noise: Tensor | None, eps: Tensor, sigma: float) -> Tensor:
    """Initial noise of a chunk: eps for chunk 0 (no parent), else the mix with the parent's noise."""
    if parent_noise is None:
        return eps
    return sigma * parent_noise + math.sqrt(1.0 - sigma * sigma) * eps


def first_chunk_seed(seed: int, candidate: int) -> int:
    """Chunk 0: candidate i draws from seed + i."""
    return seed + candidate


def child_seed(seed: int, chunk: int, beam: int, child: int, parent_seed: int) -> int:
    """Chunk k >= 1: child 0 reuses its parent's last seed; child c > 0 gets
    seed + k*1000 + beam*100 + c (beam = the parent's rank among the surviving beams)."""
    if child == 0:
        return parent_seed
    return seed + chunk * 1000 + beam * 100 + child


def plain_seed(seed: int, chunk: int) -> int:
    """Plain LongLive (no scaling): fresh noise every chunk, from (session seed, chunk) alone."""
    return seed + chunk * 1000
