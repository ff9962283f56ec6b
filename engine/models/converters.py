"""Published checkpoint formats -> the diffusers / transformers names and configs the loaders build.

Pure functions on configs and state dicts (no file I/O): Wan's own transformer config -> diffusers
kwargs, Wan transformer / VAE keys (diffusers' own converters), Wan's T5 keys -> transformers'
UMT5, and LongLive's torch.save'd generator and LoRA files -> plain state dicts. A key a converter
does not know keeps its name, so strict loading reports it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch
from diffusers.loaders.single_file_utils import (
    convert_wan_transformer_to_diffusers,
    convert_wan_vae_to_diffusers,
)

from engine.weights import first_few, foreign_error

# Where LongLive's torch.save'd generator lives, in the order its own code looks for it:
# inference.py loads "generator" (its configs set use_ema: false) and training loads the LoRA's
# base from "generator" or "model"; "generator_ema" is a last resort for EMA-only files.
GENERATOR_KEYS = ("generator", "model", "generator_ema")


# ---------------------------------------------------------------------------------------------
# Wan transformer and VAE


def diffusers_config_from_wan(cfg: dict[str, Any], path: Path) -> dict[str, Any]:
    """Wan's own config.json (WanModel) -> WanTransformer3DModel kwargs (`path` is blamed on errors).

    Wan leaves patch_size, text_dim, qk_norm and cross_attn_norm out of config.json (they are
    constructor defaults there), so the defaults below are Wan's.
    """
    if cfg.get("model_type", "t2v") != "t2v":
        raise foreign_error(path, "a text-to-video Wan model", f"model_type is {cfg['model_type']!r}")
    absent = [k for k in ("dim", "ffn_dim", "num_heads", "num_layers") if k not in cfg]
    if absent:
        raise foreign_error(path, "a Wan transformer config", f"no {', '.join(absent)}")
    return dict(
        patch_size=tuple(cfg.get("patch_size", (1, 2, 2))),
        num_attention_heads=cfg["num_heads"],
        attention_head_dim=cfg["dim"] // cfg["num_heads"],
        in_channels=cfg.get("in_dim", 16),
        out_channels=cfg.get("out_dim", 16),
        text_dim=cfg.get("text_dim", 4096),
        freq_dim=cfg.get("freq_dim", 256),
        ffn_dim=cfg["ffn_dim"],
        num_layers=cfg["num_layers"],
        cross_attn_norm=cfg.get("cross_attn_norm", True),
        qk_norm="rms_norm_across_heads" if cfg.get("qk_norm", True) else None,
        eps=cfg.get("eps", 1e-6),
    )


def wan_transformer_to_diffusers(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Wan transformer keys -> WanTransformer3DModel keys (diffusers' converter, on a copy)."""
    return convert_wan_transformer_to_diffusers(dict(state))


def wan_vae_to_diffusers(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Wan2.1 VAE keys -> AutoencoderKLWan keys (diffusers' converter; it assumes Wan2.1's block
    layout, i.e. num_res_blocks=2)."""
    return convert_wan_vae_to_diffusers(state)


# ---------------------------------------------------------------------------------------------
# LongLive


def generator_state(checkpoint: Any, path: Path) -> dict[str, torch.Tensor]:
    """LongLive's generator weights with wrapper prefixes removed: Wan key names."""
    if not isinstance(checkpoint, dict):
        raise foreign_error(path, "a LongLive checkpoint", f"it holds a {type(checkpoint).__name__}")
    key = next((k for k in GENERATOR_KEYS if k in checkpoint), None)
    if key is None and not all(isinstance(v, torch.Tensor) for v in checkpoint.values()):
        entries = f"no {' / '.join(GENERATOR_KEYS)} entry among {first_few(sorted(checkpoint))}"
        raise foreign_error(path, "a LongLive checkpoint", entries)
    state = checkpoint if key is None else checkpoint[key]
    if not isinstance(state, dict):
        raise foreign_error(path, "a LongLive checkpoint", f"its {key!r} entry is a {type(state).__name__}")
    # LongLive's WanDiffusionWrapper keeps the network under `.model`; FSDP may add segments.
    state = {k.replace("_fsdp_wrapped_module.", ""): v for k, v in state.items()}
    if state and all(k.startswith("model.") for k in state):
        state = {k.removeprefix("model."): v for k, v in state.items()}
    return state


def lora_state(checkpoint: Any, path: Path) -> dict[str, torch.Tensor]:
    """LongLive's `lora.pt` -> the generator's LoRA state dict (peft names)."""
    if not isinstance(checkpoint, dict):
        raise foreign_error(path, "a LoRA state dict", f"it holds a {type(checkpoint).__name__}")
    return checkpoint.get("generator_lora", checkpoint)


# ---------------------------------------------------------------------------------------------
# umt5 text encoder

# Wan's T5 encoder names -> transformers UMT5EncoderModel names (regex, replacement).
T5_RENAMES = (
    (r"token_embedding\.weight", "shared.weight"),
    (r"norm\.weight", "encoder.final_layer_norm.weight"),
    (r"blocks\.(\d+)\.norm1\.", r"encoder.block.\1.layer.0.layer_norm."),
    (r"blocks\.(\d+)\.attn\.([qkvo])\.", r"encoder.block.\1.layer.0.SelfAttention.\2."),
    (r"blocks\.(\d+)\.pos_embedding\.embedding\.", r"encoder.block.\1.layer.0.SelfAttention.relative_attention_bias."),
    (r"blocks\.(\d+)\.norm2\.", r"encoder.block.\1.layer.1.layer_norm."),
    # Wan's gated FFN is fc2(fc1(x) * gelu(gate(x))); UMT5's is wo(wi_1(x) * gelu(wi_0(x))).
    (r"blocks\.(\d+)\.ffn\.gate\.0\.", r"encoder.block.\1.layer.1.DenseReluDense.wi_0."),
    (r"blocks\.(\d+)\.ffn\.fc1\.", r"encoder.block.\1.layer.1.DenseReluDense.wi_1."),
    (r"blocks\.(\d+)\.ffn\.fc2\.", r"encoder.block.\1.layer.1.DenseReluDense.wo."),
)


def t5_from_wan(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename Wan T5 keys; unknown keys keep their name so strict loading reports them."""
    renamed = {}
    for key, tensor in state.items():
        for pattern, repl in T5_RENAMES:
            new, n = re.subn(f"^{pattern}", repl, key)
            if n:
                key = new
                break
        renamed[key] = tensor
    return renamed


def with_embedding_table(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """UMT5 declares encoder.embed_tokens a tie of `shared`; files store one or both copies."""
    table = state.get("shared.weight", state.get("encoder.embed_tokens.weight"))
    return state if table is None else {**state, "shared.weight": table, "encoder.embed_tokens.weight": table}
