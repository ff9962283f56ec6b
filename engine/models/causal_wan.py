"""Block-causal, KV-cached forward of diffusers' `WanTransformer3DModel` (LongLive's causal Wan).

We keep diffusers' modules and its block forward unchanged and own only what streaming needs:
- attention processors that, when handed our chunk context, attend over [cached prefix + chunk]
  and (optionally) capture the chunk's un-rotated K/V; handed anything else they defer to diffusers'
  own processor, so the wrapped model still runs its ordinary bidirectional forward;
- rotary tables with a frame offset, per-prompt cross-attention K/V, and the chunk-level
  embedding/head around the blocks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from diffusers import WanTransformer3DModel
from diffusers.models.transformers.transformer_wan import WanAttention, WanAttnProcessor, _get_qkv_projections
from einops import rearrange
from torch import Tensor, nn

from engine.config import AttentionKernel
from engine.models.attention import attend, attend_after_prefix
from engine.models.kv_cache import CacheSegment, KVCache

RopeTables = tuple[Tensor, Tensor]  # cos, sin: [1, tokens, 1, head_dim] float32


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate interleaved channel pairs of x [B, S, H, D] (diffusers' Wan convention), math in fp32."""
    # adapted from diffusers v0.42.1 (models/transformers/transformer_wan.py, WanAttnProcessor.__call__'s
    # apply_rotary_emb): stack + flatten instead of strided writes into an empty tensor.
    x1, x2 = x.unflatten(-1, (-1, 2)).unbind(-1)
    c, s = cos[..., 0::2], sin[..., 1::2]
    return torch.stack((x1 * c - x2 * s, x1 * s + x2 * c), dim=-1).flatten(-2).type_as(x)


def timestep_sinusoid(timestep: Tensor, dim: int) -> Tensor:
    """[B] timesteps -> [B, dim] float64 [cos | sin] embedding, as Wan's `sinusoidal_embedding_1d`
    computes it (frequencies 10000^(-j / (dim/2))). diffusers' `Timesteps` for Wan (flip_sin_to_cos,
    downscale_freq_shift 0) is the same layout and formula in float32, which moves fp32 flow
    predictions by ~3e-5 at t = 1000; the caller casts the float64 result."""
    half = dim // 2
    # Wan's formula (Wan-Video/Wan2.1, wan/modules/model.py), in float64 throughout.
    freqs = torch.pow(10000.0, -torch.arange(half, dtype=torch.float64, device=timestep.device) / half)
    angles = torch.outer(timestep.to(torch.float64), freqs)
    return torch.cat((torch.cos(angles), torch.sin(angles)), dim=1)


def _project(attn: WanAttention, out: Tensor, like: Tensor) -> Tensor:
    """Attention output [B, S, H, D] through the output projection, in `like`'s dtype."""
    return attn.to_out[1](attn.to_out[0](out.flatten(2, 3).type_as(like)))


@dataclass(frozen=True)
class TextContext:
    """Cross-attention K/V of one prompt for every layer ([1, text_len, heads, head_dim])."""

    keys: tuple[Tensor, ...]
    values: tuple[Tensor, ...]


@dataclass(frozen=True)
class AttentionPrefix:
    """A cache's keys rotated at their own frames and concatenated per layer, built once per chunk
    and read by every forward of that chunk. Batch is the cache's (1 or one row per query)."""

    keys: tuple[Tensor, ...]
    values: tuple[Tensor, ...]

    @property
    def num_tokens(self) -> int:
        return self.keys[0].shape[1]


@dataclass
class _LayerContext:
    """What one layer's self-attention needs; travels through diffusers' block forward in the
    `rotary_emb` slot. Holding tensors (not a layer index) keeps every layer's graph identical for
    torch.compile."""

    rope: RopeTables
    prefix_keys: Tensor | None
    prefix_values: Tensor | None
    captured: list[tuple[Tensor, Tensor]] | None


@dataclass(frozen=True)
class _LayerText:
    """One layer's cross-attention K/V; travels in the `encoder_hidden_states` slot."""

    keys: Tensor
    values: Tensor


class _CausalSelfAttention(WanAttnProcessor):
    """Self-attention of the current chunk over [prefix + chunk]; captures un-rotated K/V if asked.
    Without our layer context it is diffusers' own processor."""

    kernel = AttentionKernel.sdpa

    def __call__(
        self,
        attn: WanAttention,
        hidden_states: Tensor,
        encoder_hidden_states=None,
        attention_mask=None,
        rotary_emb=None,
    ) -> Tensor:
        if not isinstance(rotary_emb, _LayerContext):
            return super().__call__(attn, hidden_states, encoder_hidden_states, attention_mask, rotary_emb)
        ctx = rotary_emb
        # adapted from diffusers v0.42.1 (models/transformers/transformer_wan.py, WanAttnProcessor.__call__)
        q, k, v = _get_qkv_projections(attn, hidden_states, None)
        q = attn.norm_q(q).unflatten(2, (attn.heads, -1))
        k = attn.norm_k(k).unflatten(2, (attn.heads, -1))
        v = v.unflatten(2, (attn.heads, -1))
        if ctx.captured is not None:
            ctx.captured.append((k, v))
        q, k = apply_rope(q, *ctx.rope), apply_rope(k, *ctx.rope)
        if ctx.prefix_keys is None:
            out = attend(q, k, v, self.kernel)
        else:
            out = attend_after_prefix(q, ctx.prefix_keys, ctx.prefix_values, k, v, self.kernel)
        return _project(attn, out, hidden_states)


class _CachedCrossAttention(WanAttnProcessor):
    """Cross-attention reading the prompt's precomputed K/V instead of projecting text every call.
    Without our per-layer text it is diffusers' own processor."""

    kernel = AttentionKernel.sdpa

    def __call__(
        self,
        attn: WanAttention,
        hidden_states: Tensor,
        encoder_hidden_states=None,
        attention_mask=None,
        rotary_emb=None,
    ) -> Tensor:
        if not isinstance(encoder_hidden_states, _LayerText):
            return super().__call__(attn, hidden_states, encoder_hidden_states, attention_mask, rotary_emb)
        q = attn.norm_q(attn.to_q(hidden_states)).unflatten(2, (attn.heads, -1))
        text = encoder_hidden_states
        return _project(attn, attend(q, text.keys, text.values, self.kernel), hidden_states)


class CausalWanTransformer(nn.Module):
    """Chunk-by-chunk forward of a Wan transformer with an external, immutable KV cache."""

    def __init__(self, wan: WanTransformer3DModel) -> None:
        super().__init__()
        self.wan = wan
        for block in wan.blocks:
            block.attn1.set_processor(_CausalSelfAttention())
            block.attn2.set_processor(_CachedCrossAttention())

    @property
    def attention(self) -> AttentionKernel:
        return self.wan.blocks[0].attn1.processor.kernel

    def use_attention(self, kernel: AttentionKernel) -> None:
        """Run every chunk forward's attention on `kernel`. Choose it before the first chunk: a
        compiled block traced with another kernel recompiles."""
        for block in self.wan.blocks:
            block.attn1.processor.kernel = block.attn2.processor.kernel = kernel

    @property
    def patch_size(self) -> tuple[int, int, int]:
        return tuple(self.wan.config.patch_size)

    @property
    def table_frames(self) -> int:
        """Latent frames the rotary table holds (Wan: 1024)."""
        return self.wan.rope.max_seq_len

    def rope(self, position: int, num_frames: int, grid_h: int, grid_w: int) -> RopeTables:
        """Rotary tables for `num_frames` frames at table positions [position, position + num_frames)
        of a grid_h x grid_w grid."""
        rope = self.wan.rope
        if position < 0 or position + num_frames > rope.max_seq_len:
            raise ValueError(
                f"positions {position}..{position + num_frames - 1} are outside the rotary table "
                f"({rope.max_seq_len} frames)"
            )
        tables = []
        # adapted from diffusers v0.42.1 (models/transformers/transformer_wan.py, WanRotaryPosEmbed.forward),
        # with the time rows starting at `position`
        for freqs in (rope.freqs_cos, rope.freqs_sin):
            f_t, f_h, f_w = freqs.split([rope.t_dim, rope.h_dim, rope.w_dim], dim=1)
            shape = (num_frames, grid_h, grid_w, -1)
            table = torch.cat(
                (
                    f_t[position : position + num_frames].view(num_frames, 1, 1, -1).expand(shape),
                    f_h[:grid_h].view(1, grid_h, 1, -1).expand(shape),
                    f_w[:grid_w].view(1, 1, grid_w, -1).expand(shape),
                ),
                dim=-1,
            )
            tables.append(table.reshape(1, num_frames * grid_h * grid_w, 1, -1))
        return tables[0], tables[1]

    def grid(self, height: int, width: int) -> tuple[int, int]:
        _, p_h, p_w = self.patch_size
        return height // p_h, width // p_w

    @torch.no_grad()
    def text_context(self, text_embeds: Tensor) -> TextContext:
        """Project a prompt's encoder states once and precompute every layer's cross-attention K/V."""
        context = self.wan.condition_embedder.text_embedder(text_embeds)
        keys, values = [], []
        for block in self.wan.blocks:
            attn = block.attn2
            if getattr(attn, "fused_projections", False):
                k, v = attn.to_kv(context).chunk(2, dim=-1)
            else:
                k, v = attn.to_k(context), attn.to_v(context)
            keys.append(attn.norm_k(k).unflatten(2, (attn.heads, -1)))
            values.append(v.unflatten(2, (attn.heads, -1)))
        return TextContext(tuple(keys), tuple(values))

    @torch.no_grad()
    def build_prefix(
        self, cache: KVCache, grid_h: int, grid_w: int, positions: Sequence[int] | None = None
    ) -> AttentionPrefix | None:
        """Rotate every cached segment at its rotary position (default: its own start frame) and
        concatenate them in attention order."""
        segments = cache.segments
        if not segments:
            return None
        positions = [s.start_frame for s in segments] if positions is None else positions
        ropes = [self.rope(p, s.num_frames, grid_h, grid_w) for s, p in zip(segments, positions, strict=True)]
        keys, values = [], []
        for layer in range(segments[0].num_layers):
            keys.append(torch.cat([apply_rope(s.keys[layer], *r) for s, r in zip(segments, ropes)], dim=1))
            values.append(torch.cat([s.values[layer] for s in segments], dim=1))
        return AttentionPrefix(tuple(keys), tuple(values))

    def _time_embedding(self, timestep: Tensor, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
        cond = self.wan.condition_embedder
        embedder_dtype = next(iter(cond.time_embedder.parameters())).dtype
        t_freq = timestep_sinusoid(timestep, cond.timesteps_proj.num_channels).to(embedder_dtype)
        temb = cond.time_embedder(t_freq).to(dtype)
        return temb, cond.time_proj(cond.act_fn(temb)).unflatten(1, (6, -1))

    @torch.no_grad()
    def forward_chunk(
        self,
        latents: Tensor,
        timestep: Tensor,
        start_frame: int,
        text: TextContext,
        prefix: AttentionPrefix | None,
        capture_kv: bool = False,
        position: int | None = None,
    ) -> tuple[Tensor, CacheSegment | None]:
        """Flow prediction for one chunk [B, C, F, H, W] at `timestep` [B], frames starting at
        `start_frame` (rotated at table `position`, default the same), attending to `prefix` +
        itself. With `capture_kv`, also returns the chunk's un-rotated K/V as a cache segment (the
        clean t=0 cache-write pass)."""
        _, _, frames, height, width = latents.shape
        p_t, p_h, p_w = self.patch_size
        grid_h, grid_w = height // p_h, width // p_w
        wan = self.wan
        rope = self.rope(start_frame if position is None else position, frames, grid_h, grid_w)
        captured: list[tuple[Tensor, Tensor]] = []

        # Embedding and output head adapted from diffusers v0.42.1 (models/transformers/transformer_wan.py,
        # WanTransformer3DModel.forward); the blocks are diffusers' own.
        hidden = wan.patch_embedding(latents.to(wan.patch_embedding.weight.dtype))
        hidden = hidden.flatten(2).transpose(1, 2).contiguous()
        temb, timestep_proj = self._time_embedding(timestep, hidden.dtype)
        for layer, block in enumerate(wan.blocks):
            # A fresh (empty) slot per layer: a list growing across layers would be a different
            # guard for every layer and make torch.compile build 30 graphs instead of one.
            slot: list[tuple[Tensor, Tensor]] | None = [] if capture_kv else None
            ctx = _LayerContext(
                rope,
                None if prefix is None else prefix.keys[layer],
                None if prefix is None else prefix.values[layer],
                slot,
            )
            hidden = block(hidden, _LayerText(text.keys[layer], text.values[layer]), timestep_proj, ctx)
            if slot is not None:
                captured.extend(slot)

        shift, scale = (wan.scale_shift_table.to(temb.device) + temb.unsqueeze(1)).chunk(2, dim=1)
        hidden = (wan.norm_out(hidden.float()) * (1 + scale) + shift).type_as(hidden)
        flow = rearrange(
            wan.proj_out(hidden),
            "b (f h w) (pt ph pw c) -> b c (f pt) (h ph) (w pw)",
            f=frames // p_t,
            h=grid_h,
            w=grid_w,
            pt=p_t,
            ph=p_h,
            pw=p_w,
        )

        segment = None
        if capture_kv:
            keys, values = zip(*captured)
            segment = CacheSegment(start_frame, frames, tuple(keys), tuple(values))
        return flow, segment
