"""Prompt embeddings are padded to text_len with exact zeros, cached per prompt; the byte tokenizer is stable."""

from __future__ import annotations

import pytest
import torch
from transformers import UMT5Config, UMT5EncoderModel

from engine.models.presets import TINY
from engine.models.text_encoder import PromptEncoder, build_byte_tokenizer

PROMPT = "A cat surfs a  wave at sunset, &amp; waves."  # cleaned to single spaces and "&"


@pytest.fixture(scope="module")
def model() -> UMT5EncoderModel:
    torch.manual_seed(TINY.seed)
    return UMT5EncoderModel(UMT5Config(**TINY.text_encoder)).eval()


def test_padding_is_zero_and_real_tokens_match_unpadded_run(model: UMT5EncoderModel) -> None:
    enc = PromptEncoder(model, build_byte_tokenizer(), TINY.text_len)
    emb = enc.encode(PROMPT)
    assert emb.shape == (1, TINY.text_len, TINY.text_encoder["d_model"])
    n = len(b"A cat surfs a wave at sunset, & waves.") + 1  # + eos
    assert torch.count_nonzero(emb[0, n:]) == 0
    assert bool((emb[0, :n].abs().sum(-1) > 0).all())
    ids = build_byte_tokenizer()("A cat surfs a wave at sunset, & waves.", return_tensors="pt").input_ids
    with torch.no_grad():
        unpadded = model(input_ids=ids).last_hidden_state
    torch.testing.assert_close(emb[:, :n], unpadded, rtol=1e-5, atol=1e-5)


def test_long_prompt_is_truncated_to_text_len(model: UMT5EncoderModel) -> None:
    emb = PromptEncoder(model, build_byte_tokenizer(), TINY.text_len).encode("x" * 500)
    assert emb.shape[1] == TINY.text_len and torch.count_nonzero(emb[0, -1]) > 0


def test_cache_hit_skips_the_model(model: UMT5EncoderModel) -> None:
    calls = []
    hook = model.register_forward_hook(lambda *_: calls.append(1))
    try:
        enc = PromptEncoder(model, build_byte_tokenizer(), TINY.text_len, cache_size=2)
        first = enc.encode("one")
        assert enc.encode("one") is first and len(calls) == 1
        enc.encode("two")
        enc.encode("one")  # refreshes "one"; "two" is now least recent
        enc.encode("three")  # evicts "two"
        assert len(calls) == 3
        assert enc.encode("one") is first and len(calls) == 3
        enc.encode("two")
        assert len(calls) == 4
    finally:
        hook.remove()


def test_byte_tokenizer_is_deterministic_and_round_trips() -> None:
    tok, again = build_byte_tokenizer(), build_byte_tokenizer()
    assert len(tok) == TINY.text_encoder["vocab_size"] == 259
    assert (tok.pad_token_id, tok.eos_token_id, tok.unk_token_id) == (0, 1, 2)
    assert tok.backend_tokenizer.to_str() == again.backend_tokenizer.to_str()
    text = "Hé llo\n  wörld 🐱 <pad> </s>"  # special-token strings in a prompt stay plain text
    ids = tok(text).input_ids
    assert ids == again(text).input_ids
    assert ids == [b + 3 for b in text.encode()] + [1]
    assert tok.decode(ids, skip_special_tokens=True) == text
    padded = tok("ab", padding="max_length", max_length=6, return_attention_mask=True)
    assert padded.input_ids == [100, 101, 1, 0, 0, 0] and padded.attention_mask == [1, 1, 1, 0, 0, 0]
