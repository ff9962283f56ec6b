"""UMT5 prompt embeddings as Wan consumes them, cached per prompt; plus an offline byte tokenizer.

Wan (and diffusers' WanPipeline) pads every prompt to `text_len` tokens and sets the padding
positions' embeddings to zero, so cross-attention sees exactly-zero keys there. A stream re-uses a
handful of prompts for thousands of chunks, hence the per-prompt cache.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from diffusers.pipelines.wan.pipeline_wan import prompt_clean
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
from torch import Tensor
from transformers import PreTrainedTokenizerBase, PreTrainedTokenizerFast, UMT5EncoderModel

PAD, EOS, UNK = "<pad>", "</s>", "<unk>"  # ids 0, 1, 2 as in umt5; byte b is id b + 3


class PromptEncoder:
    """`encode(prompt) -> [1, text_len, d_model]`, padding rows zero, memoized (LRU, `cache_size`)."""

    def __init__(
        self,
        model: UMT5EncoderModel,
        tokenizer: PreTrainedTokenizerBase,
        text_len: int,
        cache_size: int = 16,
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.text_len = text_len
        self.cache_size = cache_size
        self._cache: OrderedDict[str, Tensor] = OrderedDict()

    @torch.no_grad()
    def encode(self, prompt: str) -> Tensor:
        """Embeddings of `prompt`; a cache hit returns the same tensor object (do not edit it in place)."""
        if prompt in self._cache:
            self._cache.move_to_end(prompt)
            return self._cache[prompt]
        tokens = self.tokenizer(
            prompt_clean(prompt),  # the same cleaning WanPipeline applies (html unescape, whitespace)
            padding="max_length",
            max_length=self.text_len,
            truncation=True,
            add_special_tokens=True,
            return_attention_mask=True,
            return_tensors="pt",
        )
        device = self.model.device
        mask = tokens.attention_mask.to(device)
        hidden = self.model(input_ids=tokens.input_ids.to(device), attention_mask=mask).last_hidden_state
        emb = hidden * mask.unsqueeze(-1).to(hidden.dtype)
        self._cache[prompt] = emb
        if len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return emb


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character map, which `tokenizers`' ByteLevel uses."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table, extra = {}, 0
    for b in range(256):
        if b in printable:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return table


def build_byte_tokenizer() -> PreTrainedTokenizerFast:
    """A 259-token byte tokenizer (pad 0, eos 1, unk 2, bytes 3..258; eos appended) for the tiny preset.

    Needs no download and round-trips any UTF-8 text; its vocabulary matches TINY.text_encoder.
    """
    vocab = {PAD: 0, EOS: 1, UNK: 2} | {ch: b + 3 for b, ch in _bytes_to_unicode().items()}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.TemplateProcessing(single=f"$A {EOS}", special_tokens=[(EOS, 1)])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token=PAD, eos_token=EOS, unk_token=UNK, split_special_tokens=True
    )
