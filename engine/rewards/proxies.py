"""Weight-free stand-ins for HPSv3 / VideoReward, built from classical image and video measures.

They exist so that the tiny preset and the tests make real, frame-dependent pruning and sinking
decisions without downloading reward models. They judge neither text alignment nor aesthetics, and
are always labelled as proxies. Everything runs batched in float32 on the frames' own device; the
prompt is ignored.

Frames in [-1, 1] are clamped and mapped to the 0..255 scale of the classical formulas
(v = (x + 1) * 127.5), without rounding to integers.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from engine.rewards.base import ClipScores

# ITU-R BT.601 luma weights, as OpenCV's RGB -> gray.
_LUMA = (0.299, 0.587, 0.114)
# White noise of variance s^2 gives a Laplacian of variance 20 s^2 (the sum of its squared taps).
_LAPLACIAN_NOISE_GAIN = 20.0
# |Laplacian| <= 4 * 255 on a 0..255 image, so its variance is at most 1020^2.
_MAX_LAPLACIAN_VAR = 1020.0**2


def _to_255(x: Tensor) -> Tensor:
    return (x.clamp(-1, 1).float() + 1) * 127.5


class SharpnessProxy:
    """Noise-discounted Laplacian-variance sharpness of the luma, per frame, in [0, 1].

    On luma Y (0..255), at the positions where the 3x3 stencils fit, with L = Y * [[0, 1, 0],
    [1, -4, 1], [0, 1, 0]] (OpenCV's Laplacian, ksize=1) and Immerkaer's (1996) noise estimate
    sigma = sqrt(pi/2) * mean|Y * M| / 6, M = [[1, -2, 1], [-2, 4, -2], [1, -2, 1]] (the product of
    two second differences: it cancels on straight edges and smooth gradients, not on pixel noise):

        sharpness = log1p(var L) / log1p(1020^2)                 (Laplacian variance, bounded)
        edge_share = clamp(1 - 20 sigma^2 / var L, 0, 1)          (0 when var L = 0)
        score = sharpness * edge_share

    Laplacian variance alone rewards noise most of all (white noise maximises it), and the tiny
    preset's frames are noise-like. `edge_share` is the part of the Laplacian energy that white
    noise of the estimated level does not explain: ~0 for white noise, 1 for clean edges. So the
    score prefers crisp, spatially coherent structure; pixel-scale texture counts as noise.
    """

    name = "sharpness-proxy"

    def score_frames(self, frames: Tensor, prompt: str) -> Tensor:
        """[N, 3, H, W] in [-1, 1] (H, W >= 3) -> [N] float32."""
        luma_weights = torch.tensor(_LUMA, device=frames.device).view(1, 3, 1, 1)
        y = (_to_255(frames) * luma_weights).sum(1)
        # Second differences by slicing (exact float32; a conv could run in TF32 on CUDA).
        d_xx = y[..., :, :-2] - 2 * y[..., :, 1:-1] + y[..., :, 2:]
        d_yy = y[..., :-2, :] - 2 * y[..., 1:-1, :] + y[..., 2:, :]
        laplacian = d_xx[..., 1:-1, :] + d_yy[..., :, 1:-1]  # [[0, 1, 0], [1, -4, 1], [0, 1, 0]]
        noise = d_xx[..., :-2, :] - 2 * d_xx[..., 1:-1, :] + d_xx[..., 2:, :]  # Immerkaer's operator
        lap_var = laplacian.var(dim=(-2, -1), correction=0)
        noise_var = math.pi / 2 * (noise.abs().mean(dim=(-2, -1)) / 6) ** 2
        edge_share = torch.where(lap_var > 0, 1 - _LAPLACIAN_NOISE_GAIN * noise_var / lap_var, 0.0)
        sharpness = torch.log1p(lap_var) / math.log1p(_MAX_LAPLACIAN_VAR)
        return sharpness * edge_share.clamp(0, 1)


def _mean_abs(d: Tensor) -> Tensor:
    """Mean |d| per clip; 0 when the clip is too short to hold a single pair/triple of frames."""
    return d.abs().flatten(1).mean(1) if d.shape[2] else d.new_zeros(d.shape[0])


class TemporalConsistencyProxy:
    """Temporal flicker and smoothness of a clip on all its RGB frames, each in [0, 1].

    On v in 0..255, with t over consecutive frames and means over pixels, channels and t:

        flicker    = (255 - mean|v_t - v_t+1|) / 255                 (VBench temporal flickering)
        smoothness = (255 - mean|v_t - (v_t-1 + v_t+1) / 2|) / 255    (VBench motion smoothness with
                                                                       its AMT interpolator replaced
                                                                       by the neighbours' average)
        overall    = (flicker + smoothness) / 2

    Both reward stillness: a frozen clip scores 1.0, frames that alternate black and white 0.0.
    Clips too short for a pair (triple) score 1.0 on that term: nothing to penalise. Every frame is
    used at the clip's own rate, so `fps` does not enter.
    """

    name = "temporal-proxy"

    def score_clips(self, clips: Tensor, prompt: str, fps: int) -> ClipScores:
        """[B, 3, F, H, W] in [-1, 1] -> overall [B] float32, parts "flicker" and "smoothness"."""
        v = _to_255(clips)
        flicker = 1 - _mean_abs(v[:, :, 1:] - v[:, :, :-1]) / 255
        smoothness = 1 - _mean_abs(v[:, :, 1:-1] - (v[:, :, :-2] + v[:, :, 2:]) / 2) / 255
        return ClipScores(overall=(flicker + smoothness) / 2, parts={"flicker": flicker, "smoothness": smoothness})
