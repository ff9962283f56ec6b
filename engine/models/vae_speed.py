"""GPU speed-ups for diffusers' Wan VAE decoder that keep its math: fewer passes over full-resolution
activations, which dominate the streaming decode (profile in docs/performance.md).

- RMS norm + SiLU fused into one pass (diffusers runs ~8 elementwise kernels, partly in fp32);
- spatial zero padding done inside the conv instead of an `F.pad` copy of the whole activation
  (only the causal time padding stays explicit, and it is usually covered by the cache frames);
- optionally (`convs_as_2d`), each 3D causal conv run as one 2D conv per time tap over a view of the
  frames, the taps' results added (faster than cuDNN's 3D convs, and than copying the taps side by
  side into the channels for one 2D conv: docs/performance.md). The partial sums add bf16
  roundings, measured by bench/decode_precision.py.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKLWan
from diffusers.models.autoencoders.autoencoder_kl_wan import WanCausalConv3d, WanResidualBlock, WanRMS_norm
from torch import Tensor, nn


def rms_norm_silu(x: Tensor, gamma: Tensor, bias: Tensor | float, scale: float) -> Tensor:
    """silu(normalize(x, dim=1) * scale * gamma + bias) in fp32, cast back to x's dtype."""
    # adapted from diffusers v0.42.1 (models/autoencoders/autoencoder_kl_wan.py, WanRMS_norm.forward)
    xf = x.float()
    normed = xf / torch.linalg.vector_norm(xf, dim=1, keepdim=True).clamp_min(1e-12)
    return F.silu(normed * scale * gamma.float() + bias).to(x.dtype)


class FusedRMSNormSiLU(nn.Module):
    """Wraps a channel-first `WanRMS_norm` (keeping its parameters) and applies the SiLU after it."""

    def __init__(self, norm: WanRMS_norm, compile_fn: bool) -> None:
        super().__init__()
        if not norm.channel_first:
            raise ValueError("only channel-first Wan RMS norms are fused")
        self.norm = norm
        self.fn = torch.compile(rms_norm_silu, dynamic=True) if compile_fn else rms_norm_silu

    def forward(self, x: Tensor) -> Tensor:
        return self.fn(x, self.norm.gamma, self.norm.bias, self.norm.scale)


def _time_padded(conv: WanCausalConv3d, x: Tensor, cache_x: Tensor | None) -> Tensor:
    """x with the conv's causal past in front: the cached frames, zeros for what is missing."""
    # adapted from diffusers v0.42.1 (models/autoencoders/autoencoder_kl_wan.py, WanCausalConv3d.forward)
    time_pad = conv._time_pad
    if cache_x is not None and time_pad > 0:
        x = torch.cat([cache_x.to(x.device), x], dim=2)
        time_pad -= cache_x.shape[2]
    if time_pad > 0:
        x = F.pad(x, (0, 0, 0, 0, time_pad, 0))
    return x


def _causal_conv_forward(self: WanCausalConv3d, x: Tensor, cache_x: Tensor | None = None) -> Tensor:
    """WanCausalConv3d.forward with the spatial padding left to the convolution itself."""
    return nn.Conv3d.forward(self, _time_padded(self, x, cache_x))


def _frames_as_conv2d(self: WanCausalConv3d, x: Tensor, cache_x: Tensor | None = None) -> Tensor:
    """The same causal conv as one 2D conv per time tap over frames, summed; output [B, O, T, H, W]
    in channels_last_3d when x is."""
    x = _time_padded(self, x, cache_x)
    batch, channels, in_frames, height, width = x.shape
    taps = self.kernel_size[0]
    frames = in_frames - taps + 1
    by_frame = x.transpose(1, 2)  # [B, T, C, H, W]: for channels_last_3d x, every frame is channels_last
    out = None
    for k in range(taps):
        planes = by_frame[:, k : k + frames].reshape(batch * frames, channels, height, width)
        weight = self.weight[:, :, k].contiguous(memory_format=torch.channels_last)
        y = F.conv2d(planes, weight, self.bias if k == 0 else None, padding=self.padding[1:])
        out = y if out is None else out.add_(y)
    return out.view(batch, frames, -1, height, width).transpose(1, 2)


def _pad_inside_conv(conv: WanCausalConv3d, as_2d: bool) -> None:
    w_pad, _, h_pad, _, t_pad, _ = conv._padding
    conv._time_pad = t_pad
    conv.padding = (0, h_pad, w_pad)
    plain = conv.stride == (1, 1, 1) and conv.dilation == (1, 1, 1) and conv.groups == 1
    forward = _frames_as_conv2d if as_2d and plain else _causal_conv_forward
    conv.forward = forward.__get__(conv)


def speed_up_decoder(vae: AutoencoderKLWan, compile_fn: bool = True, convs_as_2d: bool = True) -> None:
    """Rewire `vae.decoder` in place; outputs stay equal up to floating-point rounding."""
    decoder = vae.decoder
    for module in decoder.modules():
        if isinstance(module, WanResidualBlock):
            module.norm1 = FusedRMSNormSiLU(module.norm1, compile_fn)
            module.norm2 = FusedRMSNormSiLU(module.norm2, compile_fn)
            module.nonlinearity = nn.Identity()  # only ever applied right after norm1 / norm2
        elif isinstance(module, WanCausalConv3d):
            _pad_inside_conv(module, convs_as_2d)
    decoder.norm_out = FusedRMSNormSiLU(decoder.norm_out, compile_fn)
    decoder.nonlinearity = nn.Identity()  # only applied after norm_out
