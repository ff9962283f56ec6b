"""Chunk-by-chunk Wan VAE decoding that keeps the causal temporal cache between chunks.

diffusers' `AutoencoderKLWan.decode` already decodes one latent frame at a time through a causal
feature cache (`_feat_map`), but clears it on every call, so decoding a stream chunk by chunk with
it restarts the video at each chunk (flicker, and 1 frame instead of 4 for each chunk's first latent
frame). We drive `vae.decoder` ourselves with a cache list we own, so the VAE module is never
mutated and its own `decode` keeps working; the cache is exposed as a value (`DecoderState`) that
the caller can fork per beam, select rows of, and save for an exact resume.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from diffusers import AutoencoderKLWan
from diffusers.models.autoencoders.autoencoder_kl_wan import WanCausalConv3d, unpatchify
from torch import Tensor

_REP = "Rep"  # diffusers' marker for an upsample3d cache that has seen only the first latent frame


@dataclass(frozen=True)
class DecoderState:
    """The decoder's causal cache after `frames` latent frames: one entry per causal conv.

    Entries are the last <= 2 input frames of each `WanCausalConv3d` ([B, C, t, h, w]); None before
    the first frame and for the 1x1 shortcut convs diffusers never caches. After exactly one frame
    diffusers holds the string "Rep" for temporal upsamplers; that is stored as None too
    (frames == 1 tells it apart), so a state is plain tensors + ints and can go to disk as is.

    Size at the real preset (Wan2.1 VAE, 480x832), per batch row, after any chunk: 32 tensors,
    944,286,720 elements = 3.78 GB in fp32, 1.89 GB in bf16 (measured by shape propagation through
    a real-size `AutoencoderKLWan()` on the meta device). 57% of it is the full-resolution stage
    (7 convs x 2 frames x 96 channels x 480x832). Keep few of them alive: one per surviving beam.
    """

    feats: tuple[Tensor | None, ...]
    frames: int  # latent frames decoded so far
    batch_size: int

    def select(self, indices: Tensor) -> DecoderState:
        """Rows `indices` of every cache tensor (repeats allowed): forks beams or drops pruned ones."""
        feats = tuple(None if f is None else f.index_select(0, indices.to(f.device)) for f in self.feats)
        return DecoderState(feats, self.frames, int(indices.numel()))


class StreamingVaeDecoder:
    """Decodes normalized latent chunks [B, z, F, h, w] to pixels, continuing one causal video.

    Output equals one `vae.decode` of all chunks concatenated (the first latent frame gives 1 pixel
    frame, every later one 4). Tiling and slicing of the VAE are not used. `whole_chunks` decodes each
    later chunk in one decoder call (faster on GPUs; equal up to float rounding, ~4e-6).
    """

    def __init__(self, vae: AutoencoderKLWan, whole_chunks: bool = False) -> None:
        self.vae = vae
        self.whole_chunks = whole_chunks
        self._num_convs = sum(isinstance(m, WanCausalConv3d) for m in vae.decoder.modules())
        cfg = vae.config
        self._mean = torch.tensor(cfg.latents_mean).view(1, cfg.z_dim, 1, 1, 1)
        self._std_inv = 1.0 / torch.tensor(cfg.latents_std).view(1, cfg.z_dim, 1, 1, 1)
        self.reset(1)

    def reset(self, batch_size: int) -> None:
        """Start a new video for `batch_size` rows."""
        self.load_state(DecoderState((None,) * self._num_convs, 0, batch_size))

    def state(self) -> DecoderState:
        """The current cache; cheap (no copy) since decoding replaces cache tensors, never edits them."""
        rep = self._frames == 1
        feats = tuple(None if rep and isinstance(f, str) else f for f in self._feats)
        return DecoderState(feats, self._frames, self._batch_size)

    def load_state(self, state: DecoderState) -> None:
        """Continue from `state` (e.g. a forked beam or one read back from disk)."""
        if len(state.feats) != self._num_convs:
            raise ValueError(f"state has {len(state.feats)} cache entries, this VAE needs {self._num_convs}")
        device, dtype = self.vae.device, self.vae.dtype
        self._feats: list[Tensor | str | None] = [
            (_REP if state.frames == 1 else None) if f is None else f.to(device, dtype) for f in state.feats
        ]
        self._frames = state.frames
        self._batch_size = state.batch_size

    @torch.no_grad()
    def decode_chunk(self, latents: Tensor) -> Tensor:
        """Normalized latents [B, z, F, h, w] -> pixels [B, 3, F_out, H, W] in [-1, 1], float32."""
        if latents.shape[0] != self._batch_size:
            raise ValueError(f"latents batch {latents.shape[0]} != decoder state batch {self._batch_size}")
        vae = self.vae
        z = latents.to(vae.device, vae.dtype)
        # De-normalize exactly as WanPipeline does before vae.decode; then the decode loop is adapted from
        # diffusers v0.42.1 (models/autoencoders/autoencoder_kl_wan.py, AutoencoderKLWan._decode).
        std_inv, mean = (t.to(z.device, z.dtype, non_blocking=True) for t in (self._std_inv, self._mean))  # no sync
        z = z / std_inv + mean
        x = vae.post_quant_conv(z)
        if self.whole_chunks and self._frames >= 2:
            # One decoder call for all frames of the chunk: the causal convs see the same inputs,
            # 3x fewer (and larger) kernels; equal to the frame-by-frame result up to fp rounding.
            out = vae.decoder(x, feat_cache=self._feats, feat_idx=[0], first_chunk=False)
            self._frames += x.shape[2]
        else:
            outs = []
            for i in range(x.shape[2]):
                outs.append(
                    vae.decoder(x[:, :, i : i + 1], feat_cache=self._feats, feat_idx=[0], first_chunk=self._frames == 0)
                )
                self._frames += 1
            out = torch.cat(outs, 2)
        if vae.config.patch_size is not None:
            out = unpatchify(out, patch_size=vae.config.patch_size)
        return out.clamp(-1.0, 1.0).float()
