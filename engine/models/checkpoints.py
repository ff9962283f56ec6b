"""Real checkpoints -> diffusers / transformers modules, in either published layout.

Users download Wan2.1-T2V-1.3B in its original layout (Wan key names, `.pth` text encoder and
VAE) or in diffusers layout, plus LongLive's generator (`longlive_base.pt` + `lora.pt`). Every
loader converts to one target (diffusers `WanTransformer3DModel` / `AutoencoderKLWan`, transformers
`UMT5EncoderModel`), loads strictly and turns every failure into a one-line `WeightsError` that
names the file and the fix. Where the files live: `engine.model_files`; reading and strict loading:
`engine.weights`; key and config conversion: `engine.models.converters`.

Every parameter ends in the requested dtype (LongLive runs its whole generator in bf16); the
transformer's non-persistent RoPE tables stay float32. Modules come back in eval mode without grads.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from diffusers import AutoencoderKLWan, WanTransformer3DModel
from transformers import PreTrainedTokenizerBase, UMT5Config, UMT5EncoderModel

from engine.errors import WeightsError
from engine.model_files import (
    TEXT_ENCODER_WEIGHTS_NAME,
    WEIGHTS_NAME,
    longlive_files,
    umt5_tokenizer_dir,
    wan_files,
)
from engine.models.converters import (
    diffusers_config_from_wan,
    generator_state,
    lora_state,
    t5_from_wan,
    wan_transformer_to_diffusers,
    wan_vae_to_diffusers,
    with_embedding_table,
)
from engine.models.lora import merge_lora
from engine.models.presets import LONGLIVE, Preset
from engine.weights import (
    download_fix,
    foreign_error,
    load_strict,
    read_json,
    read_tokenizer,
    read_weights,
    require,
    to_device,
    torch_load,
)

Device = torch.device | str

# LongLive's shipped adapter config: rank 256, alpha 256 (scale 1).
LONGLIVE_LORA_ALPHA = 256.0


# ---------------------------------------------------------------------------------------------
# Transformer


def read_transformer_config(folder: Path) -> tuple[dict[str, Any], str]:
    """WanTransformer3DModel config of a transformer folder, and its layout ("diffusers"/"original")."""
    path = require(folder) / "config.json"
    cfg = read_json(path)
    if cfg.get("_class_name") == "WanTransformer3DModel":
        return cfg, "diffusers"
    if cfg.get("_class_name") == "WanModel" or "dim" in cfg:
        return diffusers_config_from_wan(cfg, path), "original"
    raise foreign_error(path, "a Wan transformer config", f"_class_name is {cfg.get('_class_name')!r}")


def _wan_transformer(
    wan_state: dict[str, torch.Tensor], config: dict[str, Any], dtype: torch.dtype, path: Path
) -> WanTransformer3DModel:
    state = wan_transformer_to_diffusers(wan_state)
    return load_strict(lambda: WanTransformer3DModel.from_config(config), state, dtype, path, "Wan transformer")


def load_wan_transformer(path: Path, dtype: torch.dtype, *, device: Device = "cpu") -> WanTransformer3DModel:
    """Wan2.1 transformer from a diffusers `transformer/` folder or an original Wan model folder."""
    path = Path(path)
    config, layout = read_transformer_config(path)
    state, source = read_weights(path, WEIGHTS_NAME, device)
    if layout == "original":
        return _wan_transformer(state, config, dtype, source)
    return load_strict(lambda: WanTransformer3DModel.from_config(config), state, dtype, source, "Wan transformer")


def load_longlive_transformer(
    base_pt: Path,
    lora_pt: Path | None,
    config: dict[str, Any],
    dtype: torch.dtype,
    lora_alpha: float = LONGLIVE_LORA_ALPHA,
    *,
    device: Device = "cpu",
) -> WanTransformer3DModel:
    """LongLive's generator (`longlive_base.pt`, optionally + `lora.pt` merged) as a diffusers model.

    `config` is the WanTransformer3DModel config of the Wan model LongLive was tuned from
    (e.g. from `read_transformer_config`). The LoRA is merged in Wan key space, before conversion,
    because that is where its module names come from. On a GPU `device`, the weights go there
    first and the merge runs there (float32), not on the host.
    """
    base_pt = Path(base_pt)
    state = to_device(generator_state(torch_load(base_pt), base_pt), device)
    if lora_pt is not None:
        lora_pt = Path(lora_pt)
        try:
            state = merge_lora(state, to_device(lora_state(torch_load(lora_pt), lora_pt), device), lora_alpha)
        except ValueError as exc:
            raise foreign_error(lora_pt, f"a LoRA for {base_pt.name}", str(exc)) from exc
    return _wan_transformer(state, config, dtype, base_pt)


# ---------------------------------------------------------------------------------------------
# Text encoder


def load_umt5(
    path: Path, dtype: torch.dtype, config: dict[str, Any] | None = None, *, device: Device = "cpu"
) -> tuple[PreTrainedTokenizerBase, UMT5EncoderModel]:
    """Tokenizer and umt5-xxl encoder from a diffusers `text_encoder/` folder (tokenizer in the
    sibling `tokenizer/`) or Wan's `models_t5_umt5-xxl-enc-bf16.pth` (tokenizer in the sibling
    `google/umt5-xxl/`, `config` = UMT5Config kwargs, default the LongLive preset's)."""
    path = Path(path)
    require(path)
    if path.is_dir():
        cfg = UMT5Config.from_dict(read_json(path / "config.json"))
        state, source = read_weights(path, TEXT_ENCODER_WEIGHTS_NAME, device)
    else:
        cfg = UMT5Config(**(config or LONGLIVE.text_encoder))
        state, source = to_device(t5_from_wan(torch_load(path)), device), path
    model = load_strict(lambda: UMT5EncoderModel(cfg), with_embedding_table(state), dtype, source, "umt5 encoder")
    model.encoder.embed_tokens = model.shared  # one 1 B-parameter table, also after .to(device)
    return read_tokenizer(umt5_tokenizer_dir(path)), model


# ---------------------------------------------------------------------------------------------
# VAE


def load_wan_vae(
    path: Path, dtype: torch.dtype, config: dict[str, Any] | None = None, *, device: Device = "cpu"
) -> AutoencoderKLWan:
    """Wan2.1 VAE from a diffusers `vae/` folder or Wan's `Wan2.1_VAE.pth` (`config` =
    AutoencoderKLWan kwargs for the .pth, default the LongLive preset's; diffusers' converter
    assumes Wan2.1's block layout, i.e. num_res_blocks=2)."""
    path = Path(path)
    require(path)
    if path.is_dir():
        cfg = read_json(path / "config.json")
        state, source = read_weights(path, WEIGHTS_NAME, device)
    else:
        cfg = dict(config or LONGLIVE.vae)
        raw = torch_load(path)
        if not isinstance(raw, dict):
            raise foreign_error(path, "Wan VAE weights", f"it holds a {type(raw).__name__}")
        state, source = to_device(wan_vae_to_diffusers(raw), device), path
    return load_strict(lambda: AutoencoderKLWan.from_config(cfg), state, dtype, source, "Wan VAE")


# ---------------------------------------------------------------------------------------------
# A whole model dir


@dataclass
class LoadedModels:
    """Everything the longlive preset runs on, plus where it came from (for the CLI to show)."""

    transformer: WanTransformer3DModel
    vae: AutoencoderKLWan
    text_encoder: UMT5EncoderModel
    tokenizer: PreTrainedTokenizerBase
    layout: str  # "original" or "diffusers": which Wan folder was used
    files: dict[str, Path]  # component -> the file or folder it was read from


def load_longlive_models(
    model_dir: Path, dtype: torch.dtype, preset: Preset = LONGLIVE, *, device: Device = "cpu"
) -> LoadedModels:
    """Load a `streamt1 download` model dir. With MODEL_DIR/LongLive/models/longlive_base.pt present
    the LongLive generator (plus lora.pt if present) replaces the plain Wan transformer, taking its
    architecture from the Wan folder's config. `preset` sizes the files that carry no config
    (Wan's .pth text encoder and VAE). Weights are read onto `device` tensor by tensor, so host
    memory stays near one tensor's size on top of the files' cached pages."""
    model_dir = Path(model_dir)
    layout, files = wan_files(model_dir)
    base, lora = longlive_files(model_dir)
    if lora.exists() and not base.exists():
        raise WeightsError(f"{lora} needs {base} (the LoRA was trained on it): {download_fix(lora)}")
    for path in files.values():  # fail before spending minutes on the first large file
        require(path)
    config, _ = read_transformer_config(files["transformer"])
    if base.exists():
        lora_pt = lora if lora.exists() else None
        transformer = load_longlive_transformer(base, lora_pt, config, dtype, device=device)
        files["transformer"] = base
        if lora_pt is not None:
            files["lora"] = lora_pt
    else:
        transformer = load_wan_transformer(files["transformer"], dtype, device=device)
    tokenizer, text_encoder = load_umt5(files["text_encoder"], dtype, preset.text_encoder, device=device)
    vae = load_wan_vae(files["vae"], dtype, preset.vae, device=device)
    return LoadedModels(transformer, vae, text_encoder, tokenizer, layout, files)
