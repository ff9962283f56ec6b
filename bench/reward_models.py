"""Real-size, random-init reward models for benchmarks (speed does not depend on the weights):
HPSv3 on a Qwen2-VL-7B backbone and VideoReward on a Qwen2-VL-2B one, with an offline byte-level
tokenizer carrying Qwen2-VL's special tokens (no hub access on the GPU machine)."""

from __future__ import annotations

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
SIZES = {  # (hidden, intermediate, heads, kv heads, vocab) of the language model; 28 layers each
    "7B": (3584, 18944, 28, 4, 152064),
    "2B": (1536, 8960, 12, 2, 151936),
}


def offline_tokenizer(extra: list[str]) -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=4000, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    tok.train_from_iterator([INSTRUCTION, PROMPT, "a red fox runs through fresh snow"], trainer)
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in [*QWEN2_VL_SPECIAL_TOKENS, *extra]])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    fast.chat_template = REWARD_CHAT_TEMPLATE
    return fast


def qwen2_vl(size: str, tokenizer: PreTrainedTokenizerFast, device: torch.device, dtype: torch.dtype) -> Qwen2VLModel:
    hidden, inter, heads, kv, vocab = SIZES[size]
    config = Qwen2VLConfig.from_dict(
        {
            "model_type": "qwen2_vl",
            "hidden_size": hidden,
            "intermediate_size": inter,
            "num_hidden_layers": 28,
            "num_attention_heads": heads,
            "num_key_value_heads": kv,
            "vocab_size": vocab,
            "rope_theta": 1e6,
            "rms_norm_eps": 1e-6,
            "max_position_embeddings": 32768,
            "rope_scaling": {"type": "mrope", "mrope_section": [16, 24, 24]},
            "vision_config": {
                "depth": 32,
                "embed_dim": 1280,
                "mlp_ratio": 4,
                "num_heads": 16,
                "in_chans": 3,
                "hidden_size": hidden,
                "patch_size": 14,
                "spatial_merge_size": 2,
                "temporal_patch_size": 2,
            },
            "image_token_id": tokenizer.convert_tokens_to_ids("<|image_pad|>"),
            "video_token_id": tokenizer.convert_tokens_to_ids("<|video_pad|>"),
            "vision_start_token_id": tokenizer.convert_tokens_to_ids("<|vision_start|>"),
        }
    )
    default = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = Qwen2VLModel(config)
    finally:
        torch.set_default_dtype(default)
    return model.eval().requires_grad_(False)


def random_hpsv3(device: torch.device, dtype: torch.dtype) -> HPSv3Scorer:
    tokenizer = offline_tokenizer([REWARD_TOKEN])
    backbone = QwenVL(qwen2_vl("7B", tokenizer, device, dtype), tokenizer, CLIP_MEAN, CLIP_STD)
    return HPSv3Scorer(backbone, ranknet_head(SIZES["7B"][0]).to(device).float().eval())


def random_videoreward(device: torch.device, dtype: torch.dtype) -> VideoRewardScorer:
    tokenizer = offline_tokenizer(list(SPECIAL_TOKENS))
    backbone = QwenVL(qwen2_vl("2B", tokenizer, device, dtype), tokenizer, CLIP_MEAN, CLIP_STD)
    head = nn.Linear(SIZES["2B"][0], 3, bias=False).to(device, dtype)
    return VideoRewardScorer(backbone, head, ClipSampling(fps=2.0, max_pixels=448 * 448))
