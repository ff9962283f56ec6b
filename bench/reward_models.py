"""Real-size, random-init reward models for benchmarks (speed does not depend on the weights):
HPSv3 on a Qwen2-VL-7B backbone and VideoReward on a Qwen2-VL-2B one, with an offline byte-level
tokenizer carrying Qwen2-VL's special tokens (no hub access on the GPU machine)."""

from __future__ import annotations

import json
from dataclasses import dataclass

import torch
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
from torch import nn
from transformers import PreTrainedTokenizerFast, Qwen2VLConfig
from transformers.models.qwen2_vl.modeling_qwen2_vl import Qwen2VLModel

from engine.rewards.hpsv3 import INSTRUCTION, REWARD_TOKEN, HPSv3Scorer, ranknet_head
from engine.rewards.qwen_vl import QWEN2_VL_SPECIAL_TOKENS, REWARD_CHAT_TEMPLATE, QwenVL
from engine.rewards.videoreward import PROMPT, SPECIAL_TOKENS, ClipSampling, VideoRewardScorer

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass(frozen=True)
class QwenSize:
    """Sizes of a Qwen2-VL: the language model, then the vision tower."""

    hidden: int
    intermediate: int
    heads: int
    kv_heads: int
    vocab: int
    layers: int = 28
    vision_depth: int = 32
    vision_dim: int = 1280
    vision_heads: int = 16
    mrope_section: tuple[int, int, int] = (16, 24, 24)


SIZES = {
    "7B": QwenSize(3584, 18944, 28, 4, 152064),
    "2B": QwenSize(1536, 8960, 12, 2, 151936),
    "tiny": QwenSize(
        32, 64, 2, 1, 1024, layers=2, vision_depth=1, vision_dim=16, vision_heads=2, mrope_section=(2, 3, 3)
    ),
}


def offline_tokenizer(extra: list[str], base_vocab: int | None = None) -> PreTrainedTokenizerFast:
    """A byte-level BPE trained on the reward prompts, with Qwen2-VL's special tokens and `extra`;
    `base_vocab`: padded with unused entries to that many tokens before the special ones, so token
    tables written for it have Qwen2-VL's real shapes."""
    tok = Tokenizer(models.BPE())
    trainer = trainers.BpeTrainer(
        vocab_size=4000, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.train_from_iterator([INSTRUCTION, PROMPT, "a red fox runs through fresh snow"], trainer)
    if base_vocab is not None:
        trained = json.loads(tok.to_str())["model"]
        vocab = trained["vocab"] | {f"<unused_{i}>": i for i in range(len(trained["vocab"]), base_vocab)}
        merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in trained["merges"]]
        tok = Tokenizer(models.BPE(vocab, merges))
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in [*QWEN2_VL_SPECIAL_TOKENS, *extra]])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    fast.chat_template = REWARD_CHAT_TEMPLATE
    return fast


def qwen2_vl_config(size: QwenSize, tokenizer: PreTrainedTokenizerFast) -> dict:
    """config.json of a Qwen2-VL of `size` in the hub's flat form, special token ids from `tokenizer`."""
    ids = {name: tokenizer.convert_tokens_to_ids(f"<|{name}|>") for name in ("image_pad", "video_pad", "vision_start")}
    return {
        "architectures": ["Qwen2VLForConditionalGeneration"],
        "model_type": "qwen2_vl",
        "hidden_size": size.hidden,
        "intermediate_size": size.intermediate,
        "num_hidden_layers": size.layers,
        "num_attention_heads": size.heads,
        "num_key_value_heads": size.kv_heads,
        "vocab_size": size.vocab,
        "rope_theta": 1e6,
        "rms_norm_eps": 1e-6,
        "max_position_embeddings": 32768,
        "rope_scaling": {"type": "mrope", "mrope_section": list(size.mrope_section)},
        "vision_config": {
            "depth": size.vision_depth,
            "embed_dim": size.vision_dim,
            "mlp_ratio": 4,
            "num_heads": size.vision_heads,
            "in_chans": 3,
            "hidden_size": size.hidden,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
        },
        "image_token_id": ids["image_pad"],
        "video_token_id": ids["video_pad"],
        "vision_start_token_id": ids["vision_start"],
    }


def qwen2_vl(config: dict, device: torch.device, dtype: torch.dtype) -> Qwen2VLModel:
    """A random-init Qwen2-VL backbone from a `qwen2_vl_config`, made on `device` in `dtype`."""
    default = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = Qwen2VLModel(Qwen2VLConfig.from_dict(config))
    finally:
        torch.set_default_dtype(default)
    return model.eval().requires_grad_(False)


def random_hpsv3(device: torch.device, dtype: torch.dtype) -> HPSv3Scorer:
    tokenizer = offline_tokenizer([REWARD_TOKEN])
    backbone = QwenVL(qwen2_vl(qwen2_vl_config(SIZES["7B"], tokenizer), device, dtype), tokenizer, CLIP_MEAN, CLIP_STD)
    return HPSv3Scorer(backbone, ranknet_head(SIZES["7B"].hidden).to(device).float().eval())


def random_videoreward(device: torch.device, dtype: torch.dtype) -> VideoRewardScorer:
    tokenizer = offline_tokenizer(list(SPECIAL_TOKENS))
    backbone = QwenVL(qwen2_vl(qwen2_vl_config(SIZES["2B"], tokenizer), device, dtype), tokenizer, CLIP_MEAN, CLIP_STD)
    head = nn.Linear(SIZES["2B"].hidden, 3, bias=False).to(device, dtype)
    return VideoRewardScorer(backbone, head, ClipSampling(fps=2.0, max_pixels=448 * 448))
