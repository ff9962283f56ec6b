"""LoRA merge at state-dict level: W' = W + (alpha / r) * B @ A.

LongLive ships its generator as a base checkpoint plus a peft LoRA (r = alpha = 256 on every
Linear of every block). Merging once at load time leaves a plain transformer, so the streaming
forward pays nothing for the adapter and needs no peft at run time.
"""

from __future__ import annotations

import re

import torch

# Module-name segments added by wrappers around the network when the LoRA was saved.
_WRAPPER_SEGMENTS = ("_fsdp_wrapped_module.", "_checkpoint_wrapped_module.", "_orig_mod.")
# peft's PeftModel ("base_model.model.") and LongLive's WanDiffusionWrapper ("model.").
_PREFIXES = ("base_model.model.", "model.")
# `<module>.lora_A.weight`, or `<module>.lora_A.<adapter>.weight` in a raw PeftModel.state_dict().
_LORA_KEY = re.compile(r"(?P<module>.+)\.lora_(?P<half>[AB])(?:\.[^.]+)?\.weight")


def lora_pairs(lora: dict[str, torch.Tensor]) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Group a peft LoRA state dict by target module: {module name: (A [r, in], B [out, r])}.

    Accepts the key variants peft and its wrappers produce (with or without `base_model.model.`,
    an adapter name, FSDP segments); module names come back as in the base network.
    """
    halves: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in lora.items():
        name = key
        for segment in _WRAPPER_SEGMENTS:
            name = name.replace(segment, "")
        match = _LORA_KEY.fullmatch(name)
        if match is None:
            raise ValueError(f"not a LoRA key: {key}")
        module = match["module"]
        while module.startswith(_PREFIXES):
            module = module.removeprefix("base_model.model.").removeprefix("model.")
        halves.setdefault(module, {})[match["half"]] = tensor
    if not halves:
        raise ValueError("no LoRA weights in it")
    unpaired = sorted(m for m, h in halves.items() if len(h) != 2)
    if unpaired:
        raise ValueError(f"LoRA A/B halves missing for {', '.join(unpaired[:3])}")
    return {m: (h["A"], h["B"]) for m, h in halves.items()}


def merge_lora(
    weights: dict[str, torch.Tensor], lora: dict[str, torch.Tensor], alpha: float
) -> dict[str, torch.Tensor]:
    """Return a copy of `weights` with every LoRA target merged: W + (alpha / r) * B @ A.

    Merged tensors are computed and returned in float32 (bf16 rounding of B @ A before the add
    would lose the update's small entries); the caller casts once to its working dtype.
    """
    merged = dict(weights)
    for module, (a, b) in lora_pairs(lora).items():
        key = f"{module}.weight"
        if key not in weights:
            raise ValueError(f"LoRA targets {module}, which the base weights lack")
        w = weights[key]
        rank = a.shape[0]
        if a.ndim != 2 or b.ndim != 2 or b.shape[1] != rank or (b.shape[0], a.shape[1]) != tuple(w.shape):
            raise ValueError(f"LoRA shapes A {list(a.shape)}, B {list(b.shape)} do not fit {key} {list(w.shape)}")
        merged[key] = w.float() + (alpha / rank) * (b.float() @ a.float())
    return merged
