"""Wan2.1's original file layout, written from diffusers / transformers modules: the key names come
from tables defined HERE (inverting diffusers' naming), independently of the loaders, so a loader bug
cannot hide behind a shared mapping. Used by the loader tests on tiny models and by
bench/write_model_dir.py at real size."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import torch
from diffusers import AutoencoderKLWan, WanTransformer3DModel
from safetensors.torch import save_file
from tokenizers import Tokenizer, models, pre_tokenizers
from torch import nn
from transformers import PreTrainedTokenizerFast, UMT5EncoderModel

from engine.model_files import WAN_DIR, WAN_T5_FILE, WAN_TOKENIZER_DIR, WAN_VAE_FILE, WEIGHTS_NAME
from engine.models.presets import TINY, Preset

# The tiny preset with Wan's decoder stages (3 resnets + 1 upsampler a stage, num_res_blocks=2):
# the tiny preset's 1 would not round-trip through the Wan layout.
TINY_WAN = dataclasses.replace(TINY, vae={**TINY.vae, "num_res_blocks": 2})

_WAN_TRANSFORMER = [
    (r"condition_embedder\.time_embedder\.linear_([12])\.", lambda m: f"time_embedding.{2 * int(m[1]) - 2}."),
    (r"condition_embedder\.text_embedder\.linear_([12])\.", lambda m: f"text_embedding.{2 * int(m[1]) - 2}."),
    (r"condition_embedder\.time_proj\.", lambda m: "time_projection.1."),
    (r"blocks\.(\d+)\.attn([12])\.to_out\.0\.", lambda m: f"blocks.{m[1]}.{_ATTN[m[2]]}.o."),
    (r"blocks\.(\d+)\.attn([12])\.to_([qkv])\.", lambda m: f"blocks.{m[1]}.{_ATTN[m[2]]}.{m[3]}."),
    (r"blocks\.(\d+)\.attn([12])\.norm_([qk])\.", lambda m: f"blocks.{m[1]}.{_ATTN[m[2]]}.norm_{m[3]}."),
    (r"blocks\.(\d+)\.norm2\.", lambda m: f"blocks.{m[1]}.norm3."),  # the cross-attention norm
    (r"blocks\.(\d+)\.ffn\.net\.0\.proj\.", lambda m: f"blocks.{m[1]}.ffn.0."),
    (r"blocks\.(\d+)\.ffn\.net\.2\.", lambda m: f"blocks.{m[1]}.ffn.2."),
    (r"blocks\.(\d+)\.scale_shift_table", lambda m: f"blocks.{m[1]}.modulation"),
    (r"scale_shift_table", lambda m: "head.modulation"),
    (r"proj_out\.", lambda m: "head.head."),
    (r"patch_embedding\.", lambda m: "patch_embedding."),
]
_ATTN = {"1": "self_attn", "2": "cross_attn"}

_WAN_T5 = [
    (r"shared\.weight", lambda m: "token_embedding.weight"),
    (r"encoder\.final_layer_norm\.", lambda m: "norm."),
    (r"encoder\.block\.(\d+)\.layer\.0\.layer_norm\.", lambda m: f"blocks.{m[1]}.norm1."),
    (r"encoder\.block\.(\d+)\.layer\.0\.SelfAttention\.([qkvo])\.", lambda m: f"blocks.{m[1]}.attn.{m[2]}."),
    (
        r"encoder\.block\.(\d+)\.layer\.0\.SelfAttention\.relative_attention_bias\.",
        lambda m: f"blocks.{m[1]}.pos_embedding.embedding.",
    ),
    (r"encoder\.block\.(\d+)\.layer\.1\.layer_norm\.", lambda m: f"blocks.{m[1]}.norm2."),
    (r"encoder\.block\.(\d+)\.layer\.1\.DenseReluDense\.wi_0\.", lambda m: f"blocks.{m[1]}.ffn.gate.0."),
    (r"encoder\.block\.(\d+)\.layer\.1\.DenseReluDense\.wi_1\.", lambda m: f"blocks.{m[1]}.ffn.fc1."),
    (r"encoder\.block\.(\d+)\.layer\.1\.DenseReluDense\.wo\.", lambda m: f"blocks.{m[1]}.ffn.fc2."),
]

_STAGE = 4  # Wan decoder stage: num_res_blocks + 1 = 3 resnets, then one upsampler
_WAN_VAE_PREFIX = [  # (pattern, Wan prefix, is a residual block)
    (r"(encoder|decoder)\.conv_in\.", lambda m: f"{m[1]}.conv1.", False),
    (r"quant_conv\.", lambda m: "conv1.", False),
    (r"post_quant_conv\.", lambda m: "conv2.", False),
    (r"(encoder|decoder)\.mid_block\.resnets\.([01])\.", lambda m: f"{m[1]}.middle.{2 * int(m[2])}.", True),
    (r"(encoder|decoder)\.mid_block\.attentions\.0\.", lambda m: f"{m[1]}.middle.1.", False),
    (r"(encoder|decoder)\.norm_out\.", lambda m: f"{m[1]}.head.0.", False),
    (r"(encoder|decoder)\.conv_out\.", lambda m: f"{m[1]}.head.2.", False),
    (r"encoder\.down_blocks\.(\d+)\.", lambda m: f"encoder.downsamples.{m[1]}.", True),
    (
        r"decoder\.up_blocks\.(\d+)\.resnets\.(\d+)\.",
        lambda m: f"decoder.upsamples.{_STAGE * int(m[1]) + int(m[2])}.",
        True,
    ),
    (r"decoder\.up_blocks\.(\d+)\.upsamplers\.0\.", lambda m: f"decoder.upsamples.{_STAGE * int(m[1]) + 3}.", False),
]
_WAN_RESIDUAL = {
    "norm1.": "residual.0.",
    "conv1.": "residual.2.",
    "norm2.": "residual.3.",
    "conv2.": "residual.6.",
    "conv_shortcut.": "shortcut.",
}


def _rename(key: str, rules) -> str:
    for pattern, repl in rules:
        m = re.match(pattern, key)
        if m:
            return repl(m) + key[m.end() :]
    raise AssertionError(f"no Wan name for {key}")


def _wan_vae_key(key: str) -> str:
    for pattern, repl, residual in _WAN_VAE_PREFIX:
        m = re.match(pattern, key)
        if m:
            rest = key[m.end() :]
            if residual:
                rest = next(
                    (new + rest[len(old) :] for old, new in _WAN_RESIDUAL.items() if rest.startswith(old)), rest
                )
            return repl(m) + rest
    raise AssertionError(f"no Wan name for {key}")


def wan_transformer_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {_rename(k, _WAN_TRANSFORMER): v.clone() for k, v in model.state_dict().items()}


def wan_t5_state(model: nn.Module) -> dict[str, torch.Tensor]:
    sd = model.state_dict()
    return {_rename(k, _WAN_T5): v.clone() for k, v in sd.items() if k != "encoder.embed_tokens.weight"}


def wan_vae_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {_wan_vae_key(k): v.clone() for k, v in model.state_dict().items()}


def word_tokenizer() -> PreTrainedTokenizerFast:
    """A tiny word-level stand-in for umt5-xxl's tokenizer (no hub access in tests or on the GPU machine)."""
    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2} | {w: i + 3 for i, w in enumerate("a cat walks on the moon".split())}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")


def wan_config(preset: Preset) -> dict:
    """The transformer's config.json as the original Wan folder holds it."""
    t = preset.transformer
    return {
        "_class_name": "WanModel",
        "_diffusers_version": "0.30.0",
        "model_type": "t2v",
        "dim": t["num_attention_heads"] * t["attention_head_dim"],
        "ffn_dim": t["ffn_dim"],
        "freq_dim": t["freq_dim"],
        "in_dim": t["in_channels"],
        "out_dim": t["out_channels"],
        "num_heads": t["num_attention_heads"],
        "num_layers": t["num_layers"],
        "text_len": preset.text_len,
        "eps": t["eps"],
        "text_dim": t["text_dim"],  # real Wan configs omit it (WanModel's default is 4096)
    }


def write_original(
    root: Path,
    preset: Preset,
    transformer: WanTransformer3DModel,
    t5: UMT5EncoderModel,
    vae: AutoencoderKLWan,
    tokenizer: PreTrainedTokenizerFast,
) -> Path:
    """root/Wan2.1-T2V-1.3B in the original layout; returns that folder."""
    wan = root / WAN_DIR
    (wan / WAN_TOKENIZER_DIR).parent.mkdir(parents=True)
    (wan / "config.json").write_text(json.dumps(wan_config(preset)))
    save_file(wan_transformer_state(transformer), wan / WEIGHTS_NAME)
    torch.save(wan_t5_state(t5), wan / WAN_T5_FILE)
    tokenizer.save_pretrained(wan / WAN_TOKENIZER_DIR)
    torch.save(wan_vae_state(vae), wan / WAN_VAE_FILE)
    return wan
