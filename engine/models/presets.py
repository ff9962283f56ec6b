"""Model presets: the real LongLive sizes and a tiny random-init twin for CPUs and tests.

A preset is plain data (diffusers-style configs); building modules from it lives in `factory.py`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Preset:
    """Sizes of every network plus the video geometry they work at."""

    name: str
    transformer: dict[str, Any]
    vae: dict[str, Any]
    text_encoder: dict[str, Any]
    height: int  # pixels
    width: int  # pixels
    text_len: int
    trained: bool  # False: random init, outputs are noise-like and labelled untrained
    seed: int = 0  # random-init seed (tiny only)

    @property
    def latent_height(self) -> int:
        return self.height // 8

    @property
    def latent_width(self) -> int:
        return self.width // 8


LONGLIVE = Preset(
    name="longlive",
    transformer=dict(
        patch_size=(1, 2, 2),
        num_attention_heads=12,
        attention_head_dim=128,
        in_channels=16,
        out_channels=16,
        text_dim=4096,
        freq_dim=256,
        ffn_dim=8960,
        num_layers=30,
        cross_attn_norm=True,
        qk_norm="rms_norm_across_heads",
        eps=1e-6,
    ),
    vae=dict(base_dim=96, z_dim=16),
    text_encoder=dict(
        vocab_size=256384,
        d_model=4096,
        d_kv=64,
        d_ff=10240,
        num_layers=24,
        num_heads=64,
        relative_attention_num_buckets=32,
        feed_forward_proj="gated-gelu",
    ),
    height=480,
    width=832,
    text_len=512,
    trained=True,
)

TINY = Preset(
    name="tiny",
    transformer=dict(
        patch_size=(1, 2, 2),
        num_attention_heads=2,
        attention_head_dim=12,
        in_channels=16,
        out_channels=16,
        text_dim=32,
        freq_dim=16,
        ffn_dim=48,
        num_layers=2,
        cross_attn_norm=True,
        qk_norm="rms_norm_across_heads",
        eps=1e-6,
        # A short rotary table (16 chunks instead of Wan's 1024 frames) so tests cross it in seconds;
        # the table's values at each position do not depend on its length.
        rope_max_seq_len=48,
    ),
    vae=dict(base_dim=8, z_dim=16, num_res_blocks=1),
    text_encoder=dict(
        vocab_size=259,  # 256 bytes + pad + eos + unk (see text_encoder.build_byte_tokenizer)
        d_model=32,
        d_kv=8,
        d_ff=64,
        num_layers=2,
        num_heads=4,
        relative_attention_num_buckets=8,
        feed_forward_proj="gated-gelu",
    ),
    height=64,
    width=64,
    text_len=64,
    trained=False,
    seed=1234,
)

PRESETS: dict[str, Preset] = {p.name: p for p in (TINY, LONGLIVE)}
