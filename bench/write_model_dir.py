"""A weights folder in the published file layouts, random values, at real size: what
bench/load_bench.py measures start-up on where the real weights cannot be downloaded.

    MODEL_DIR/Wan2.1-T2V-1.3B/         original layout: transformer (fp32 safetensors), umt5 (bf16 .pth),
                                       VAE (fp32 .pth), a word-level stand-in for umt5's tokenizer
    MODEL_DIR/LongLive/models/         longlive_base.pt ("generator", fp32), lora.pt (r 256, fp32)
    MODEL_DIR/HPSv3/HPSv3.safetensors  Qwen2-VL-7B, old flat keys, bf16, with lm_head and the fp32 rm_head
    MODEL_DIR/Qwen2-VL-7B-Instruct/    config, preprocessor, tokenizer, chat template
    MODEL_DIR/VideoReward/             model_config.json, checkpoint-1/model.pth (PEFT-wrapped Qwen2-VL-2B,
                                       bf16, LoRA r 64 unmerged, fp32), checkpoint-1/tokenizer/
    MODEL_DIR/Qwen2-VL-2B-Instruct/    config, preprocessor

Random values are drawn on the GPU (a CPU takes many minutes at this size). The tokenizers are
byte-level BPEs padded to Qwen2-VL's vocabulary, so every token table has its real shape (~45 GB in
all). `--tiny`: the same files for tiny networks on the CPU, to check the layouts in seconds.

    python bench/write_model_dir.py DIR [--tiny]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from diffusers import AutoencoderKLWan, WanTransformer3DModel
from safetensors.torch import save_file
from torch import nn
from transformers import UMT5Config, UMT5EncoderModel

from bench.reward_models import CLIP_MEAN, CLIP_STD, SIZES, QwenSize, offline_tokenizer, qwen2_vl, qwen2_vl_config
from engine.model_files import (
    HPSV3_CHECKPOINT,
    HPSV3_PROCESSOR_DIR,
    LONGLIVE_BASE_FILE,
    LONGLIVE_DIR,
    LONGLIVE_LORA_FILE,
    QWEN_CHAT_TEMPLATE_FILE,
    QWEN_CONFIG_FILE,
    QWEN_PREPROCESSOR_FILE,
    VIDEOREWARD_BASE_DIR,
    VIDEOREWARD_CONFIG_FILE,
    VIDEOREWARD_DIR,
    VIDEOREWARD_FULL_FILE,
    VIDEOREWARD_TOKENIZER_DIR,
)
from engine.models.presets import LONGLIVE, Preset
from engine.rewards.hpsv3 import ranknet_head
from engine.rewards.qwen_vl import REWARD_CHAT_TEMPLATE
from engine.rewards.videoreward import SPECIAL_TOKENS
from tests.wan_layout import TINY_WAN, wan_transformer_state, word_tokenizer, write_original

QWEN_BASE_VOCAB = 151649  # + Qwen2-VL's 8 special tokens = the real tokenizer's 151657
LONGLIVE_LORA_RANK = 256  # shared/reference/longlive-model.md
VIDEOREWARD_LORA = {"r": 64, "lora_alpha": 128}  # shared/reference/rewards.md
QWEN_LORA_TARGETS = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj")
QWEN_LORA_TARGETS += ("mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")


def size_tokenizer(size: QwenSize, extra: list[str]):
    """The offline tokenizer for a Qwen2-VL of `size`: padded to the real vocabulary at real size."""
    return offline_tokenizer(extra, QWEN_BASE_VOCAB if size.vocab > QWEN_BASE_VOCAB else None)


def cpu_state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}


def lora_pair(out_features: int, in_features: int, rank: int, device: torch.device) -> tuple[torch.Tensor, ...]:
    """(A [rank, in], B [out, rank]), both nonzero, as a trained LoRA is."""
    return tuple(
        torch.randn(shape, device=device).mul_(0.01).cpu() for shape in ((rank, in_features), (out_features, rank))
    )


def write_wan_and_longlive(root: Path, preset: Preset, device: torch.device) -> None:
    with torch.device(device):
        transformer = WanTransformer3DModel(**preset.transformer)
        t5 = UMT5EncoderModel(UMT5Config(**preset.text_encoder)).to(torch.bfloat16)
        vae = AutoencoderKLWan(**preset.vae)
    transformer, t5, vae = (m.cpu() for m in (transformer, t5, vae))  # files hold CPU tensors
    write_original(root, preset, transformer, t5, vae, word_tokenizer())
    del t5, vae
    generator = {f"model.{k}": v for k, v in wan_transformer_state(transformer).items()}
    folder = root / LONGLIVE_DIR
    (folder / LONGLIVE_BASE_FILE).parent.mkdir(parents=True)
    torch.save({"generator": generator}, folder / LONGLIVE_BASE_FILE)
    lora = {}
    for key, weight in generator.items():
        name = key.removeprefix("model.").removesuffix(".weight")
        if name.startswith("blocks.") and key.endswith(".weight") and weight.ndim == 2:
            a, b = lora_pair(*weight.shape, min(LONGLIVE_LORA_RANK, *weight.shape), device)
            lora[f"base_model.model.{name}.lora_A.weight"], lora[f"base_model.model.{name}.lora_B.weight"] = a, b
    torch.save({"generator_lora": lora}, folder / LONGLIVE_LORA_FILE)


def write_processor(folder: Path, size: QwenSize, with_tokenizer: bool) -> tuple[dict, int]:
    """A Qwen2-VL-*-Instruct folder: config, preprocessor and chat template, and its tokenizer
    where the reward model reads it from there (HPSv3); returns (the config, the tokenizer's length)."""
    folder.mkdir(parents=True)
    tokenizer = size_tokenizer(size, [])
    if with_tokenizer:
        tokenizer.save_pretrained(folder)
    config = qwen2_vl_config(size, tokenizer)
    (folder / QWEN_CONFIG_FILE).write_text(json.dumps(config))
    preprocessor = {
        "image_processor_type": "Qwen2VLImageProcessor", "image_mean": CLIP_MEAN, "image_std": CLIP_STD,
        "min_pixels": 56 * 56, "max_pixels": 28 * 28 * 1280, "patch_size": 14, "temporal_patch_size": 2,
        "merge_size": 2,
    }  # fmt: skip
    (folder / QWEN_PREPROCESSOR_FILE).write_text(json.dumps(preprocessor))
    (folder / QWEN_CHAT_TEMPLATE_FILE).write_text(json.dumps({"chat_template": REWARD_CHAT_TEMPLATE}))
    return config, len(tokenizer)


def old_names(state: dict[str, torch.Tensor], prefix: str = "") -> dict[str, torch.Tensor]:
    """Qwen2VLModel's nested names -> the flat ones of transformers 4.45 (`model.*`, `visual.*`)."""
    return {prefix + ("model." + k.removeprefix("language_model.") if k.startswith("language_model.") else k): v
            for k, v in state.items()}  # fmt: skip


def write_hpsv3(root: Path, size: QwenSize, device: torch.device) -> None:
    config, vocab = write_processor(root / HPSV3_PROCESSOR_DIR, size, with_tokenizer=True)
    rows = vocab + 1  # with <|Reward|>, as HPSv3 resized its table
    backbone = qwen2_vl(config | {"vocab_size": rows}, device, torch.bfloat16)
    state = old_names(cpu_state(backbone))
    del backbone
    state["lm_head.weight"] = torch.randn(rows, size.hidden, device=device, dtype=torch.bfloat16).cpu()
    head = ranknet_head(size.hidden).to(device)
    state |= {f"rm_head.{k}": v for k, v in cpu_state(head).items()}
    (root / HPSV3_CHECKPOINT).parent.mkdir(parents=True)
    save_file(state, root / HPSV3_CHECKPOINT)


def write_videoreward(root: Path, size: QwenSize, device: torch.device) -> None:
    config, _ = write_processor(root / VIDEOREWARD_BASE_DIR, size, with_tokenizer=False)
    step = root / VIDEOREWARD_DIR / "checkpoint-1"
    tokenizer = size_tokenizer(size, list(SPECIAL_TOKENS))
    tokenizer.chat_template = REWARD_CHAT_TEMPLATE
    tokenizer.save_pretrained(step / VIDEOREWARD_TOKENIZER_DIR)
    backbone = qwen2_vl(config | {"vocab_size": len(tokenizer)}, device, torch.bfloat16)
    state: dict[str, torch.Tensor] = {}
    for key, value in old_names(cpu_state(backbone), "base_model.model.").items():
        module = key.removesuffix(".weight").removesuffix(".bias")
        if ".layers." in key and module.endswith(QWEN_LORA_TARGETS):  # PEFT-wrapped: base_layer + lora_A/B
            state[f"{module}.base_layer.{key.rsplit('.', 1)[1]}"] = value
            if key.endswith(".weight"):
                a, b = lora_pair(*value.shape, min(VIDEOREWARD_LORA["r"], *value.shape), device)
                state[f"{module}.lora_A.default.weight"], state[f"{module}.lora_B.default.weight"] = a, b
        else:
            state[key] = value
    del backbone
    state["base_model.model.lm_head.weight"] = state["base_model.model.model.embed_tokens.weight"]  # tied
    state["base_model.model.rm_head.weight"] = torch.randn(3, size.hidden, dtype=torch.bfloat16)
    torch.save(state, step / VIDEOREWARD_FULL_FILE)
    norm = {f"{p}_{s}": v for p in ("VQ", "MQ", "TA") for s, v in (("mean", 0.0), ("std", 1.0))}
    model_config = {
        "data_config": {
            "fps": 2.0, "num_frames": None, "max_frame_pixels": 448 * 448, "eval_dim": ["VQ", "MQ", "TA"],
            "prompt_template_type": "detailed_special", "sample_type": "uniform", "add_noise": False,
        },
        "model_config": {
            "model_name_or_path": "Qwen/Qwen2-VL-2B-Instruct", "output_dim": 3, "use_special_tokens": True,
            "reward_token": "special", "torch_dtype": "bfloat16",
        },
        "peft_lora_config": {
            "lora_enable": True, "lora_r": VIDEOREWARD_LORA["r"], "lora_alpha": VIDEOREWARD_LORA["lora_alpha"],
            "lora_dropout": 0.05, "lora_namespan_exclude": ["lm_head", "rm_head", "embed_tokens"],
        },
        "inference_config": norm,
    }  # fmt: skip
    (root / VIDEOREWARD_DIR / VIDEOREWARD_CONFIG_FILE).write_text(json.dumps(model_config))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("root", type=Path)
    parser.add_argument("--tiny", action="store_true", help="tiny networks on the CPU (checks the layouts)")
    args = parser.parse_args()
    device = torch.device("cpu" if args.tiny or not torch.cuda.is_available() else "cuda")
    torch.manual_seed(0)
    parts = (
        ("Wan2.1 + LongLive", lambda: write_wan_and_longlive(args.root, TINY_WAN if args.tiny else LONGLIVE, device)),
        ("HPSv3", lambda: write_hpsv3(args.root, SIZES["tiny" if args.tiny else "7B"], device)),
        ("VideoReward", lambda: write_videoreward(args.root, SIZES["tiny" if args.tiny else "2B"], device)),
    )
    for name, write in parts:
        start = time.perf_counter()
        with torch.no_grad():
            write()
        print(f"wrote {name} in {time.perf_counter() - start:.1f} s", flush=True)
    total = sum(f.stat().st_size for f in args.root.rglob("*") if f.is_file())
    print(f"{args.root}: {total / 1e9:.1f} GB")


if __name__ == "__main__":
    main()
