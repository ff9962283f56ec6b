"""Real checkpoints -> diffusers / transformers modules, in either published layout.

Users download Wan2.1-T2V-1.3B in its original layout (Wan key names, `.pth` text encoder and
VAE) or in diffusers layout, plus LongLive's generator (`longlive_base.pt` + `lora.pt`). Every
loader converts to one target (diffusers `WanTransformer3DModel` / `AutoencoderKLWan`, transformers
`UMT5EncoderModel`), loads strictly, and turns every failure into a one-line `WeightsError` that
names the file and the fix, because a 10 GB download that half-arrived must not surface as a
traceback deep inside torch.

Every parameter ends in the requested dtype (LongLive runs its whole generator in bf16); the
transformer's non-persistent RoPE tables stay float32. Modules come back in eval mode without grads.
"""

from __future__ import annotations

import json
import re
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch
from diffusers import AutoencoderKLWan, WanTransformer3DModel
from diffusers.loaders.single_file_utils import (
    convert_wan_transformer_to_diffusers,
    convert_wan_vae_to_diffusers,
)
from safetensors.torch import load_file
from transformers import AutoTokenizer, PreTrainedTokenizerBase, UMT5Config, UMT5EncoderModel

from engine.errors import WeightsError
from engine.models.download import (
    LONGLIVE_BASE_FILE,
    LONGLIVE_DIR,
    LONGLIVE_LORA_FILE,
    WAN_DIFFUSERS_DIR,
    WAN_DIR,
    WAN_T5_FILE,
    WAN_TOKENIZER_DIR,
    WAN_VAE_FILE,
)
from engine.models.lora import merge_lora
from engine.models.presets import LONGLIVE, Preset

WEIGHTS_NAME = "diffusion_pytorch_model.safetensors"  # transformer and VAE, both layouts
# LongLive's shipped adapter config: rank 256, alpha 256 (scale 1).
LONGLIVE_LORA_ALPHA = 256.0
# Where LongLive's torch.save'd generator lives, in the order its own code looks for it:
# inference.py loads "generator" (its configs set use_ema: false) and training loads the LoRA's
# base from "generator" or "model"; "generator_ema" is a last resort for EMA-only files.
_GENERATOR_KEYS = ("generator", "model", "generator_ema")

M = TypeVar("M", bound=torch.nn.Module)


# ---------------------------------------------------------------------------------------------
# One-line errors


def _model_dir_of(path: Path) -> Path | None:
    """The MODEL_DIR a path sits in when it follows the `streamt1 download` layout."""
    for parent in (path, *path.parents):
        if parent.name in (WAN_DIR, WAN_DIFFUSERS_DIR, LONGLIVE_DIR):
            return parent.parent
    return None


def _download_fix(path: Path) -> str:
    model_dir = _model_dir_of(path)
    return f"run `streamt1 download --model-dir {model_dir if model_dir else 'DIR'}`"


def _missing(path: Path) -> WeightsError:
    return WeightsError(
        f"missing {path}: {_download_fix(path)} or point --model-dir at a folder holding {WAN_DIR}"
    )


def _corrupt(path: Path, exc: BaseException) -> WeightsError:
    reason = " ".join(f"{type(exc).__name__}: {exc}".split()).split(". ")[0][:160]
    return WeightsError(
        f"cannot read {path} ({reason}): the file is truncated or corrupt; delete it and {_download_fix(path)}"
    )


def _foreign(path: Path, what: str, detail: str) -> WeightsError:
    return WeightsError(f"{path} does not hold {what} ({detail}): point at the right file or {_download_fix(path)}")


def _first(names: list[str], n: int = 3) -> str:
    more = f" (+{len(names) - n} more)" if len(names) > n else ""
    return ", ".join(names[:n]) + more


# ---------------------------------------------------------------------------------------------
# Reading files


def _require(path: Path) -> Path:
    if not path.exists():
        raise _missing(path)
    return path


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(_require(path).read_text())
    except (OSError, ValueError) as exc:
        raise _corrupt(path, exc) from exc


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(_require(path))
    except Exception as exc:  # safetensors raises its own error type for bad headers
        raise _corrupt(path, exc) from exc


def _read_weights(folder: Path, name: str) -> tuple[dict[str, torch.Tensor], Path]:
    """A single `name` file or its sharded `name.index.json` form; returns the file to blame."""
    single, index = folder / name, folder / f"{name}.index.json"
    if single.exists() or not index.exists():
        return _read_safetensors(single), single
    weight_map = _read_json(index).get("weight_map")
    if not isinstance(weight_map, dict):
        raise _corrupt(index, ValueError("no weight_map"))
    state: dict[str, torch.Tensor] = {}
    for shard in sorted(set(weight_map.values())):
        state.update(_read_safetensors(folder / shard))
    return state, index


def _torch_load(path: Path) -> Any:
    """torch.load without code execution, memory-mapped when the file is a zip (lazy reads)."""
    _require(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
    except Exception as exc:  # truncated zip, legacy pickle, non-tensor payload
        raise _corrupt(path, exc) from exc


# ---------------------------------------------------------------------------------------------
# Strict loading into an empty module


@contextmanager
def _parameters_on_meta() -> Iterator[None]:
    """Modules built inside get their parameters on the meta device (no memory, no random init:
    the 5.7 B-parameter umt5-xxl would otherwise cost 22 GB and a minute) while buffers stay real,
    since non-persistent ones such as the RoPE tables are computed in __init__ and never stored."""
    register = torch.nn.Module.register_parameter

    def register_on_meta(module: torch.nn.Module, name: str, param: torch.nn.Parameter | None) -> None:
        register(module, name, param)
        if param is not None:
            module._parameters[name] = torch.nn.Parameter(param.to("meta"), requires_grad=param.requires_grad)

    torch.nn.Module.register_parameter = register_on_meta  # type: ignore[method-assign]
    try:
        yield
    finally:
        torch.nn.Module.register_parameter = register  # type: ignore[method-assign]


def _load_strict(
    build: Callable[[], M], state: dict[str, torch.Tensor], dtype: torch.dtype, path: Path, what: str
) -> M:
    """Build with parameters on the meta device (no init cost), check keys and shapes, assign."""
    with _parameters_on_meta():
        model = build()
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        parts = [f"missing keys: {_first(missing)}"] if missing else []
        parts += [f"unexpected keys: {_first(unexpected)}"] if unexpected else []
        raise _foreign(path, f"{what} weights", "; ".join(parts))
    wrong = [f"{k} {list(state[k].shape)} vs {list(s)}" for k, s in expected.items() if tuple(state[k].shape) != s]
    if wrong:
        raise WeightsError(
            f"{path} holds {what} weights of other sizes (file vs model: {_first(wrong, 2)}): "
            f"it belongs to a different model; {_download_fix(path)}"
        )
    # Fresh, owned tensors: file-backed (mmap) tensors are only 8-byte aligned, which sends CPU
    # kernels down other paths (different rounding) and keeps the file's pages pinned to the model.
    state = {k: torch.empty(v.shape, dtype=dtype if v.is_floating_point() else v.dtype).copy_(v)
             for k, v in state.items()}
    model.load_state_dict(state, strict=True, assign=True)
    return model.eval().requires_grad_(False)


# ---------------------------------------------------------------------------------------------
# Transformer


def _diffusers_config_from_wan(cfg: dict[str, Any], path: Path) -> dict[str, Any]:
    """Wan's own config.json (WanModel) -> WanTransformer3DModel kwargs.

    Wan leaves patch_size, text_dim, qk_norm and cross_attn_norm out of config.json (they are
    constructor defaults there), so the defaults below are Wan's.
    """
    if cfg.get("model_type", "t2v") != "t2v":
        raise _foreign(path, "a text-to-video Wan model", f"model_type is {cfg['model_type']!r}")
    absent = [k for k in ("dim", "ffn_dim", "num_heads", "num_layers") if k not in cfg]
    if absent:
        raise _foreign(path, "a Wan transformer config", f"no {', '.join(absent)}")
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


def read_transformer_config(folder: Path) -> tuple[dict[str, Any], str]:
    """WanTransformer3DModel config of a transformer folder, and its layout ("diffusers"/"original")."""
    path = _require(folder) / "config.json"
    cfg = _read_json(path)
    if cfg.get("_class_name") == "WanTransformer3DModel":
        return cfg, "diffusers"
    if cfg.get("_class_name") == "WanModel" or "dim" in cfg:
        return _diffusers_config_from_wan(cfg, path), "original"
    raise _foreign(path, "a Wan transformer config", f"_class_name is {cfg.get('_class_name')!r}")


def _wan_transformer(
    wan_state: dict[str, torch.Tensor], config: dict[str, Any], dtype: torch.dtype, path: Path
) -> WanTransformer3DModel:
    state = convert_wan_transformer_to_diffusers(dict(wan_state))
    return _load_strict(lambda: WanTransformer3DModel.from_config(config), state, dtype, path, "Wan transformer")


def load_wan_transformer(path: Path, dtype: torch.dtype) -> WanTransformer3DModel:
    """Wan2.1 transformer from a diffusers `transformer/` folder or an original Wan model folder."""
    path = Path(path)
    config, layout = read_transformer_config(path)
    state, source = _read_weights(path, WEIGHTS_NAME)
    if layout == "original":
        return _wan_transformer(state, config, dtype, source)
    return _load_strict(lambda: WanTransformer3DModel.from_config(config), state, dtype, source, "Wan transformer")


def _generator_state(checkpoint: Any, path: Path) -> dict[str, torch.Tensor]:
    """LongLive's generator weights with wrapper prefixes removed: Wan key names."""
    if not isinstance(checkpoint, dict):
        raise _foreign(path, "a LongLive checkpoint", f"it holds a {type(checkpoint).__name__}")
    key = next((k for k in _GENERATOR_KEYS if k in checkpoint), None)
    if key is None and not all(isinstance(v, torch.Tensor) for v in checkpoint.values()):
        entries = f"no {' / '.join(_GENERATOR_KEYS)} entry among {_first(sorted(checkpoint))}"
        raise _foreign(path, "a LongLive checkpoint", entries)
    state = checkpoint if key is None else checkpoint[key]
    if not isinstance(state, dict):
        raise _foreign(path, "a LongLive checkpoint", f"its {key!r} entry is a {type(state).__name__}")
    # LongLive's WanDiffusionWrapper keeps the network under `.model`; FSDP may add segments.
    state = {k.replace("_fsdp_wrapped_module.", ""): v for k, v in state.items()}
    if state and all(k.startswith("model.") for k in state):
        state = {k.removeprefix("model."): v for k, v in state.items()}
    return state


def _lora_state(checkpoint: Any, path: Path) -> dict[str, torch.Tensor]:
    if not isinstance(checkpoint, dict):
        raise _foreign(path, "a LoRA state dict", f"it holds a {type(checkpoint).__name__}")
    return checkpoint.get("generator_lora", checkpoint)


def load_longlive_transformer(
    base_pt: Path,
    lora_pt: Path | None,
    config: dict[str, Any],
    dtype: torch.dtype,
    lora_alpha: float = LONGLIVE_LORA_ALPHA,
) -> WanTransformer3DModel:
    """LongLive's generator (`longlive_base.pt`, optionally + `lora.pt` merged) as a diffusers model.

    `config` is the WanTransformer3DModel config of the Wan model LongLive was tuned from
    (e.g. from `read_transformer_config`). The LoRA is merged in Wan key space, before conversion,
    because that is where its module names come from.
    """
    base_pt = Path(base_pt)
    state = _generator_state(_torch_load(base_pt), base_pt)
    if lora_pt is not None:
        lora_pt = Path(lora_pt)
        try:
            state = merge_lora(state, _lora_state(_torch_load(lora_pt), lora_pt), lora_alpha)
        except ValueError as exc:
            raise _foreign(lora_pt, f"a LoRA for {base_pt.name}", str(exc)) from exc
    return _wan_transformer(state, config, dtype, base_pt)


# ---------------------------------------------------------------------------------------------
# Text encoder

# Wan's T5 encoder names -> transformers UMT5EncoderModel names (regex, replacement).
_T5_RENAMES = (
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


def _t5_from_wan(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename Wan T5 keys; unknown keys keep their name so strict loading reports them."""
    renamed = {}
    for key, tensor in state.items():
        for pattern, repl in _T5_RENAMES:
            new, n = re.subn(f"^{pattern}", repl, key)
            if n:
                key = new
                break
        renamed[key] = tensor
    return renamed


def _embedding_table(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """UMT5 declares encoder.embed_tokens a tie of `shared`; files store one or both copies."""
    table = state.get("shared.weight", state.get("encoder.embed_tokens.weight"))
    return state if table is None else {**state, "shared.weight": table, "encoder.embed_tokens.weight": table}


def load_umt5(
    path: Path, dtype: torch.dtype, config: dict[str, Any] | None = None
) -> tuple[PreTrainedTokenizerBase, UMT5EncoderModel]:
    """Tokenizer and umt5-xxl encoder from a diffusers `text_encoder/` folder (tokenizer in the
    sibling `tokenizer/`) or Wan's `models_t5_umt5-xxl-enc-bf16.pth` (tokenizer in the sibling
    `google/umt5-xxl/`, `config` = UMT5Config kwargs, default the LongLive preset's)."""
    path = Path(path)
    _require(path)
    if path.is_dir():
        cfg = UMT5Config.from_dict(_read_json(path / "config.json"))
        state, source = _read_weights(path, "model.safetensors")
        tokenizer_dir = path.parent / "tokenizer"
    else:
        cfg = UMT5Config(**(config or LONGLIVE.text_encoder))
        state, source = _t5_from_wan(_torch_load(path)), path
        tokenizer_dir = path.parent / WAN_TOKENIZER_DIR
    model = _load_strict(lambda: UMT5EncoderModel(cfg), _embedding_table(state), dtype, source, "umt5 encoder")
    model.encoder.embed_tokens = model.shared  # one 1 B-parameter table, also after .to(device)
    return _load_tokenizer(tokenizer_dir), model


def _load_tokenizer(folder: Path) -> PreTrainedTokenizerBase:
    _require(folder)
    try:
        return AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    except Exception as exc:  # transformers raises OSError/ValueError/... for broken folders
        raise _corrupt(folder, exc) from exc


# ---------------------------------------------------------------------------------------------
# VAE


def load_wan_vae(path: Path, dtype: torch.dtype, config: dict[str, Any] | None = None) -> AutoencoderKLWan:
    """Wan2.1 VAE from a diffusers `vae/` folder or Wan's `Wan2.1_VAE.pth` (`config` =
    AutoencoderKLWan kwargs for the .pth, default the LongLive preset's; diffusers' converter
    assumes Wan2.1's block layout, i.e. num_res_blocks=2)."""
    path = Path(path)
    _require(path)
    if path.is_dir():
        cfg = _read_json(path / "config.json")
        state, source = _read_weights(path, WEIGHTS_NAME)
    else:
        cfg = dict(config or LONGLIVE.vae)
        raw = _torch_load(path)
        if not isinstance(raw, dict):
            raise _foreign(path, "Wan VAE weights", f"it holds a {type(raw).__name__}")
        state, source = convert_wan_vae_to_diffusers(raw), path
    return _load_strict(lambda: AutoencoderKLWan.from_config(cfg), state, dtype, source, "Wan VAE")


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


def _wan_paths(model_dir: Path) -> tuple[str, dict[str, Path]]:
    """Pick the Wan folder: the original layout first (what LongLive itself reads and what
    `streamt1 download` fetches by default), else the diffusers one. The first folder that exists
    wins even when incomplete, so a half-finished download is reported instead of silently
    replaced by another copy."""
    original, diffusers = model_dir / WAN_DIR, model_dir / WAN_DIFFUSERS_DIR
    if original.is_dir():
        return "original", {
            "transformer": original,
            "text_encoder": original / WAN_T5_FILE,
            "tokenizer": original / WAN_TOKENIZER_DIR,
            "vae": original / WAN_VAE_FILE,
        }
    if diffusers.is_dir():
        return "diffusers", {
            "transformer": diffusers / "transformer",
            "text_encoder": diffusers / "text_encoder",
            "tokenizer": diffusers / "tokenizer",
            "vae": diffusers / "vae",
        }
    raise WeightsError(
        f"missing {original} (or {diffusers}): run `streamt1 download --model-dir {model_dir}` "
        f"or point --model-dir at a folder holding {WAN_DIR}"
    )


def load_longlive_models(model_dir: Path, dtype: torch.dtype, preset: Preset = LONGLIVE) -> LoadedModels:
    """Load a `streamt1 download` model dir. With MODEL_DIR/LongLive/models/longlive_base.pt present
    the LongLive generator (plus lora.pt if present) replaces the plain Wan transformer, taking its
    architecture from the Wan folder's config. `preset` sizes the files that carry no config
    (Wan's .pth text encoder and VAE)."""
    model_dir = Path(model_dir)
    layout, files = _wan_paths(model_dir)
    base, lora = model_dir / LONGLIVE_DIR / LONGLIVE_BASE_FILE, model_dir / LONGLIVE_DIR / LONGLIVE_LORA_FILE
    if lora.exists() and not base.exists():
        raise WeightsError(f"{lora} needs {base} (the LoRA was trained on it): {_download_fix(lora)}")
    for path in files.values():  # fail before spending minutes on the first large file
        _require(path)
    config, _ = read_transformer_config(files["transformer"])
    if base.exists():
        lora_pt = lora if lora.exists() else None
        transformer = load_longlive_transformer(base, lora_pt, config, dtype)
        files["transformer"] = base
        if lora_pt is not None:
            files["lora"] = lora_pt
    else:
        transformer = load_wan_transformer(files["transformer"], dtype)
    tokenizer, text_encoder = load_umt5(files["text_encoder"], dtype, preset.text_encoder)
    vae = load_wan_vae(files["vae"], dtype, preset.vae)
    return LoadedModels(transformer, vae, text_encoder, tokenizer, layout, files)
