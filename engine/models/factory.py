"""Build the three networks of a preset: random-init (tiny, benchmarks) or from real checkpoints."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers import AutoencoderKLWan, ModelMixin, WanTransformer3DModel
from torch import nn
from transformers import UMT5Config, UMT5EncoderModel

from engine.config import MODEL_DIR_ENV
from engine.errors import WeightsError
from engine.models.causal_wan import CausalWanTransformer
from engine.models.presets import Preset
from engine.models.text_encoder import PromptEncoder, build_byte_tokenizer
from engine.models.vae_speed import speed_up_decoder
from engine.models.vae_stream import StreamingVaeDecoder


@dataclass
class Models:
    """Everything the stream needs, on one device."""

    preset: Preset
    transformer: CausalWanTransformer
    decoder: StreamingVaeDecoder
    prompts: PromptEncoder | None  # None only in benchmarks that feed random text states
    device: torch.device
    dtype: torch.dtype


def cast_for_inference(model: nn.Module, dtype: torch.dtype) -> nn.Module:
    """Cast floating tensors to `dtype` except those diffusers keeps in fp32 (norms, time embedder,
    rotary tables), as `from_pretrained(torch_dtype=...)` does, so random-init and loaded models run
    alike. Kept tensors are never round-tripped through `dtype` (no precision lost)."""
    # The keep rule is adapted from diffusers v0.42.1 (models/model_loading_utils.py, load_model_dict_into_meta).
    keep = model._keep_in_fp32_modules or [] if isinstance(model, ModelMixin) else []
    for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
        if tensor.is_floating_point() and not any(k in name.split(".") for k in keep):
            tensor.data = tensor.data.to(dtype)
    return model.eval().requires_grad_(False)


def allow_compiled_variants() -> None:
    """Compiled code is specialised per input shape and layout. The fused VAE norm meets more than
    dynamo's default 8 variants (its inputs come in several layouts) and the transformer block one
    per (batch, attended frames, cache write or not); past the limit dynamo silently runs eager."""
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 64)


def tune_for_cuda(models: Models, compile_blocks: bool, vae_convs_as_2d: bool = True) -> None:
    """Speed settings measured on an H100 (docs/performance.md): one VAE decoder call per chunk,
    fused norm+SiLU, in-conv padding and (by default) 2D per-tap convs in the VAE, channels-last VAE
    convs, and optionally torch.compile of the transformer blocks (slow first chunks). Compiling
    the VAE's residual blocks was measured slower (docs/performance.md), so it is not done."""
    allow_compiled_variants()
    models.decoder.whole_chunks = True
    speed_up_decoder(models.decoder.vae, convs_as_2d=vae_convs_as_2d)
    for module in models.decoder.vae.modules():
        if isinstance(module, nn.Conv3d):
            module.to(memory_format=torch.channels_last_3d)
    if compile_blocks:
        for block in models.transformer.wan.blocks:
            block.compile(dynamic=False)  # static graphs per window size: no symbolic-shape kernels


def random_models(preset: Preset, device: torch.device, dtype: torch.dtype, with_text_encoder: bool = True) -> Models:
    """Random-init networks of the preset's sizes, seeded: the tiny preset, and speed benchmarks
    (speed does not depend on the weights)."""
    torch.manual_seed(preset.seed)
    with torch.device(device):
        wan = WanTransformer3DModel(**preset.transformer)
        vae = AutoencoderKLWan(**preset.vae)
        prompts = None
        if with_text_encoder:
            encoder = UMT5EncoderModel(UMT5Config(**preset.text_encoder))
            prompts = PromptEncoder(cast_for_inference(encoder, dtype), build_byte_tokenizer(), preset.text_len)
    return Models(
        preset=preset,
        transformer=CausalWanTransformer(cast_for_inference(wan, dtype)),
        decoder=StreamingVaeDecoder(cast_for_inference(vae, dtype)),
        prompts=prompts,
        device=device,
        dtype=dtype,
    )


def resolve_model_dir(model_dir: Path | None) -> Path:
    """The weights folder from --model-dir or $STREAMT1_MODEL_DIR, or a one-line error saying how."""
    if model_dir is None and os.environ.get(MODEL_DIR_ENV):
        model_dir = Path(os.environ[MODEL_DIR_ENV])
    if model_dir is None:
        raise WeightsError(
            f"the longlive preset needs downloaded weights: pass --model-dir DIR or set {MODEL_DIR_ENV} "
            "(fetch them with `streamt1 download --model-dir DIR`), or use --preset tiny"
        )
    if model_dir.exists() and not model_dir.is_dir():
        raise WeightsError(f"model dir {model_dir} is a file: give the folder `streamt1 download --model-dir` wrote")
    if not model_dir.is_dir():
        raise WeightsError(f"model dir {model_dir} does not exist: run `streamt1 download --model-dir {model_dir}`")
    return model_dir


def load_models(preset: Preset, model_dir: Path | None, device: torch.device, dtype: torch.dtype) -> Models:
    """The preset's networks: random-init when it is untrained, else read from the weights folder
    straight onto `device`."""
    if not preset.trained:
        return random_models(preset, device, dtype)
    from engine.models.checkpoints import load_longlive_models

    loaded = load_longlive_models(resolve_model_dir(model_dir), dtype, device=device)
    return Models(
        preset=preset,
        transformer=CausalWanTransformer(cast_for_inference(loaded.transformer, dtype).to(device)),
        decoder=StreamingVaeDecoder(cast_for_inference(loaded.vae, dtype).to(device)),
        prompts=PromptEncoder(
            cast_for_inference(loaded.text_encoder, dtype).to(device), loaded.tokenizer, preset.text_len
        ),
        device=device,
        dtype=dtype,
    )
