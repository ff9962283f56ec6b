"""bench/write_model_dir.py writes what the loaders read: its tiny folder (the same code as at real
size, other sizes) loads through the LongLive loader (LoRA merged) and both reward loaders, whose
scores come out finite. A layout the writer gets wrong fails here, not on the GPU machine."""

from __future__ import annotations

import torch

from bench.reward_models import SIZES, offline_tokenizer
from bench.write_model_dir import TINY_WAN, write_hpsv3, write_videoreward, write_wan_and_longlive
from engine.models.checkpoints import load_longlive_models
from engine.rewards.registry import build_scorers

CPU = torch.device("cpu")


def test_written_folder_loads(tmp_path):
    torch.manual_seed(0)
    with torch.no_grad():
        write_wan_and_longlive(tmp_path, TINY_WAN, CPU)
        write_hpsv3(tmp_path, SIZES["tiny"], CPU)
        write_videoreward(tmp_path, SIZES["tiny"], CPU)
    loaded = load_longlive_models(tmp_path, torch.float32, TINY_WAN)
    assert set(loaded.files) >= {"transformer", "lora", "text_encoder", "vae"}
    hpsv3, videoreward = build_scorers("hpsv3", "videoreward", model_dir=tmp_path, device=CPU, dtype=torch.float32)
    frames = torch.rand(2, 3, 64, 96) * 2 - 1
    assert torch.isfinite(hpsv3.score_frames(frames, "a fox")).all()
    assert torch.isfinite(videoreward.score_clips(torch.rand(1, 3, 16, 64, 96) * 2 - 1, "a fox", 16).overall).all()


def test_padded_tokenizer_has_the_real_layout():
    """At real size the writer pads the tokenizer to Qwen2-VL's vocabulary (a path the tiny folder
    does not take): the special tokens come right after the padded base vocabulary."""
    from engine.rewards.qwen_vl import QWEN2_VL_SPECIAL_TOKENS

    tok = offline_tokenizer(["<|Reward|>"], base_vocab=5000)
    assert len(tok) == 5000 + len(QWEN2_VL_SPECIAL_TOKENS) + 1
    ids = tok.convert_tokens_to_ids([*QWEN2_VL_SPECIAL_TOKENS, "<|Reward|>"])
    assert ids == list(range(5000, len(tok)))
    assert tok.decode(tok("a red fox runs")["input_ids"]) == "a red fox runs"
