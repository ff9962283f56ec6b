"""Qwen2-VL plumbing shared by the HPSv3 and VideoReward scorers: files -> backbone, frames -> hidden.

Both reward models are a Qwen2-VL read at special tokens of a chat prompt that holds one image or
video. Facts of how they were trained and published, which this module reproduces:

- Positions: their reward subclasses (transformers 4.45) called the text model directly, without
  position ids, so every token, the vision ones included, got plain 1D positions 0..L-1 (the same
  in M-RoPE's three sections), not Qwen2-VL's 3D vision grid. We pass those positions explicitly.
- Vocabulary: the special tokens were added to the tokenizer and the embeddings resized to
  `len(tokenizer)` before training, so the checkpoints hold that many rows.
- Key layout: transformers of that time named the language model `model.*` and the vision tower
  `visual.*`; today's `Qwen2VLModel` nests them as `language_model.*` / `visual.*`.

Frames are preprocessed here, on their device, instead of by `Qwen2VLProcessor` (which takes every
frame to the CPU as numpy, and whose video half needs torchvision). The steps are the processor's:
resize to multiples of patch * merge within a pixel budget (`smart_resize`), rescale to [0, 1],
normalize with the checkpoint's mean / std, cut into temporal x spatial patches in merge-window
order; the chat template is rendered with one placeholder token, repeated once per merged patch.
The LM head is never used by a reward, so it is neither built nor loaded.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor
from transformers import PreTrainedTokenizerBase, Qwen2VLConfig
from transformers.models.qwen2_vl.modeling_qwen2_vl import Qwen2VLModel

from engine.errors import WeightsError
from engine.frames import to_levels
from engine.model_files import QWEN_CHAT_TEMPLATE_FILE
from engine.rewards.vision_attention import batch_vision_attention
from engine.weights import download_fix, foreign_error, load_strict, read_json, read_tokenizer

# The LM head of the reward models' Qwen2VLForConditionalGeneration: stored in their files, unused.
# Qwen2-VL's own special tokens and its chat template reduced to what a reward prompt uses: for
# building offline tokenizers (tests, benchmarks) where the real tokenizer cannot be downloaded.
QWEN2_VL_SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
)
REWARD_CHAT_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}<|im_start|>system\n"
    "You are a helpful assistant.<|im_end|>\n{% endif %}<|im_start|>{{ message['role'] }}\n"
    "{% for c in message['content'] %}{% if c['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif c['type'] == 'video' %}<|vision_start|><|video_pad|><|vision_end|>{% elif 'text' in c %}"
    "{{ c['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
LM_HEAD_KEY = "lm_head.weight"
EMBEDDING_KEY = "language_model.embed_tokens.weight"  # the token table, as `split_state` names it
HEAD_PREFIX = "rm_head."  # both reward models call their head `rm_head`
KEPT_PROMPTS = 8  # rendered prompts a backbone keeps


# ---------------------------------------------------------------------------------------------
# Files


def load_tokenizer(
    folder: Path, special_tokens: Sequence[str], template_dirs: Sequence[Path] = ()
) -> PreTrainedTokenizerBase:
    """The Qwen2-VL tokenizer in `folder` with the reward model's special tokens added (a no-op
    where the folder already holds them) and a chat template: the tokenizer's own, else the
    first `chat_template.json` in `folder` or `template_dirs` (where Qwen2-VL repos keep it)."""
    tokenizer = read_tokenizer(folder)
    tokenizer.add_special_tokens({"additional_special_tokens": list(special_tokens)})
    if tokenizer.chat_template is None:
        found = [
            d / QWEN_CHAT_TEMPLATE_FILE for d in (folder, *template_dirs) if (d / QWEN_CHAT_TEMPLATE_FILE).exists()
        ]
        if not found:
            raise foreign_error(folder, "a Qwen2-VL chat template", "none in its tokenizer files or chat_template.json")
        tokenizer.chat_template = read_json(found[0]).get("chat_template")
    return tokenizer


def load_config(path: Path, vocab_size: int) -> Qwen2VLConfig:
    """A Qwen2-VL `config.json` (the hub's flat form or nested), with the resized vocabulary."""
    raw = read_json(path)
    if raw.get("model_type") != "qwen2_vl":
        raise foreign_error(path, "a Qwen2-VL config", f"model_type is {raw.get('model_type')!r}")
    try:
        config = Qwen2VLConfig.from_dict(raw)
    except (TypeError, ValueError) as exc:
        raise foreign_error(path, "a Qwen2-VL config", " ".join(str(exc).split())[:160]) from exc
    config.text_config.vocab_size = vocab_size
    return config


def read_pixel_stats(path: Path) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) per RGB channel from a Qwen2-VL `preprocessor_config.json`."""
    raw = read_json(path)
    if "image_mean" not in raw or "image_std" not in raw:
        raise foreign_error(path, "a Qwen2-VL image processor config", "no image_mean / image_std")
    return tuple(raw["image_mean"]), tuple(raw["image_std"])


def split_state(state: dict[str, Tensor]) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """(backbone weights under `Qwen2VLModel`'s names, head weights without `rm_head.`).

    Takes the old flat layout (`model.*` = language model, `visual.*`) and the nested one
    (`model.language_model.*`, `model.visual.*`). The LM head is dropped; any other key lands in
    the head's dict unchanged, so strict loading of the head reports it.
    """
    backbone: dict[str, Tensor] = {}
    head: dict[str, Tensor] = {}
    for key, tensor in state.items():
        if key.startswith(("model.language_model.", "model.visual.")):
            backbone[key.removeprefix("model.")] = tensor
        elif key.startswith("model."):
            backbone["language_model." + key.removeprefix("model.")] = tensor
        elif key.startswith("visual."):
            backbone[key] = tensor
        elif key != LM_HEAD_KEY:
            head[key.removeprefix(HEAD_PREFIX)] = tensor
    return backbone, head


def check_vocabulary(state: dict[str, Tensor], vocab_size: int, tokenizer_dir: Path, path: Path) -> None:
    """The checkpoint's token table (`state` as `split_state` returns it) has one row per token of
    the tokenizer in `tokenizer_dir` (`vocab_size`, special tokens included); else the tokenizer
    files are not the ones the reward model was trained with, and this says so instead of
    blaming the checkpoint `path`. A missing table is left to strict loading to report."""
    table = state.get(EMBEDDING_KEY)
    if table is None or table.shape[0] == vocab_size:
        return
    raise WeightsError(
        f"the tokenizer in {tokenizer_dir} has {vocab_size} tokens but {path} holds {table.shape[0]} token "
        f"embeddings: those tokenizer files do not belong to this checkpoint; delete {tokenizer_dir} and "
        f"{download_fix(tokenizer_dir)} to fetch the matching processor files"
    )


def load_backbone(
    state: dict[str, Tensor], config: Qwen2VLConfig, dtype: torch.dtype, path: Path, tokenizer_dir: Path
) -> Qwen2VLModel:
    """The Qwen2-VL backbone from `state` (read from `path`), whose vocabulary `config` took from
    the tokenizer in `tokenizer_dir`."""
    check_vocabulary(state, config.text_config.vocab_size, tokenizer_dir, path)
    return load_strict(lambda: Qwen2VLModel(config), state, dtype, path, "Qwen2-VL")


# ---------------------------------------------------------------------------------------------
# Pixels


def smart_resize(height: int, width: int, factor: int, min_pixels: int, max_pixels: int) -> tuple[int, int]:
    """Qwen2-VL's frame size rule: multiples of `factor`, aspect kept, pixel count capped at
    `max_pixels`, else raised to at least `min_pixels` (the cap wins when both apply)."""
    h, w = max(factor, round(height / factor) * factor), max(factor, round(width / factor) * factor)
    if h * w > max_pixels:
        beta = math.sqrt(height * width / max_pixels)
        h, w = math.floor(height / beta / factor) * factor, math.floor(width / beta / factor) * factor
    elif h * w < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h, w = math.ceil(height * beta / factor) * factor, math.ceil(width * beta / factor) * factor
    return h, w


def to_8bit(frames: Tensor, size: tuple[int, int], *, like_pil: bool) -> Tensor:
    """[..., 3, H, W] in [-1, 1] -> float values 0..255 on the integer grid (truncated, as the
    reference converts its frames to 8 bits: `engine.frames.to_levels`), resized to `size` with
    antialiased bicubic: what the reference feeds the processor after writing 8-bit frames to disk
    and resizing them. `like_pil`: width then height, rounded to 8 bits in between, as PIL does
    (HPSv3 opens image files with PIL; this matches PIL to within 1-2 levels on <0.2% of pixels);
    else in one pass, as torchvision resizes a uint8 video tensor (VideoReward)."""
    x = to_levels(frames)
    if tuple(x.shape[-2:]) == size:
        return x
    flat = x.flatten(0, -4)
    steps = [(flat.shape[-2], size[1]), size] if like_pil else [size]
    for step in steps:
        flat = F.interpolate(flat, size=step, mode="bicubic", antialias=True, align_corners=False).round().clamp(0, 255)
    return flat.view(*x.shape[:-2], *size)


def patchify(pixels: Tensor, patch: int, temporal: int, merge: int) -> tuple[Tensor, tuple[int, int, int]]:
    """[B, T, C, H, W] -> (pixel values [B * t * h * w, C * temporal * patch^2], grid (t, h, w)).

    Time is padded to a multiple of `temporal` with copies of the last frame (a single image
    becomes `temporal` identical frames); patches are ordered by merge window, as Qwen2-VL's
    patch merger expects, each flattened channel-major (C, time, row, column).
    """
    b, t, c, h, w = pixels.shape
    if t % temporal:
        pixels = torch.cat([pixels, pixels[:, -1:].expand(b, temporal - t % temporal, c, h, w)], dim=1)
    gt, gh, gw = pixels.shape[1] // temporal, h // patch, w // patch
    x = pixels.reshape(b, gt, temporal, c, gh // merge, merge, patch, gw // merge, merge, patch)
    x = x.permute(0, 1, 4, 7, 5, 8, 3, 2, 6, 9)
    return x.reshape(b * gt * gh * gw, c * temporal * patch * patch), (gt, gh, gw)


# ---------------------------------------------------------------------------------------------
# Backbone


@dataclass
class QwenVL:
    """A Qwen2-VL backbone with its tokenizer and pixel statistics."""

    model: Qwen2VLModel
    tokenizer: PreTrainedTokenizerBase
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def __post_init__(self) -> None:
        batch_vision_attention(self.model.visual)
        self._prompts: dict[tuple[str, str, int], Tensor] = {}

    def compile_layers(self, backend: str = "inductor") -> None:
        """torch.compile each vision block and decoder layer: their norms, rotary embeddings and
        activations become fused kernels instead of ~30 elementwise passes a layer over tens of
        thousands of tokens. A new input shape (a longer clip) recompiles once, then runs dynamic."""
        for layer in (*self.model.visual.blocks, *self.model.language_model.layers):
            layer.compile(backend=backend)

    def prompt_ids(self, text: str, vision: Literal["image", "video"], n_vision_tokens: int) -> Tensor:
        """Token ids of the user turn [vision, text] in the chat template, ready for the answer,
        the vision placeholder repeated `n_vision_tokens` times (as the processor expands it).
        Kept per prompt: a session scores one prompt for many chunks, and rendering plus
        tokenizing the long instructions every call kept the GPU waiting."""
        key = (text, vision, n_vision_tokens)
        if key not in self._prompts:
            if len(self._prompts) >= KEPT_PROMPTS:  # a batch of many prompts keeps only the recent ones
                del self._prompts[next(iter(self._prompts))]
            self._prompts[key] = self._render_ids(text, vision, n_vision_tokens)
        return self._prompts[key]

    def _render_ids(self, text: str, vision: Literal["image", "video"], n_vision_tokens: int) -> Tensor:
        messages = [{"role": "user", "content": [{"type": vision}, {"type": "text", "text": text}]}]
        rendered = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        ids = torch.tensor(self.tokenizer(rendered)["input_ids"])
        pad = self.model.config.image_token_id if vision == "image" else self.model.config.video_token_id
        (where,) = (ids == pad).nonzero(as_tuple=True)
        if len(where) != 1:
            raise ValueError(f"the chat template holds {len(where)} {vision} placeholders, expected 1")
        i = int(where[0])
        return torch.cat([ids[:i], ids.new_full((n_vision_tokens,), pad), ids[i + 1 :]])

    def hidden_at(
        self,
        frames: Tensor,
        text: str,
        token_ids: Sequence[int],
        *,
        vision: Literal["image", "video"],
        min_pixels: int,
        max_pixels: int,
        like_pil: bool,
    ) -> Tensor:
        """[B, T, 3, H, W] in [-1, 1] (T = 1 for an image) -> [B, K, hidden]: the last hidden state
        at each of the K `token_ids`, which the text must hold once each. Frames are resized as
        `to_8bit` says, within [`min_pixels`, `max_pixels`].

        One prompt and one frame size for the whole batch make every sequence the same tokens,
        so the batch needs neither padding nor an attention mask.
        """
        vision_cfg = self.model.config.vision_config
        patch, merge = vision_cfg.patch_size, vision_cfg.spatial_merge_size
        device = self.model.language_model.embed_tokens.weight.device
        b, _, _, height, width = frames.shape
        size = smart_resize(height, width, patch * merge, min_pixels, max_pixels)
        # small tensors are made on the CPU and copied without a device sync (pageable: safe)
        pixels = to_8bit(frames.to(device, non_blocking=True), size, like_pil=like_pil)
        mean = torch.tensor(self.mean).view(3, 1, 1).to(device, non_blocking=True)
        std = torch.tensor(self.std).view(3, 1, 1).to(device, non_blocking=True)
        values, (gt, gh, gw) = patchify((pixels / 255 - mean) / std, patch, vision_cfg.temporal_patch_size, merge)
        ids = self.prompt_ids(text, vision, gt * gh * gw // merge**2)
        positions = [(ids == token).nonzero().flatten() for token in token_ids]
        if any(len(p) != 1 for p in positions):
            tokens = self.tokenizer.convert_ids_to_tokens([int(tok) for tok in token_ids])
            raise ValueError(f"the prompt must hold each of {tokens} exactly once")
        ids = ids.to(device, non_blocking=True)
        grid = torch.tensor([[gt, gh, gw]]).expand(b, 3).to(device, non_blocking=True)
        pixel_kwargs = (
            {"pixel_values": values, "image_grid_thw": grid}
            if vision == "image"
            else {"pixel_values_videos": values, "video_grid_thw": grid}
        )
        out = self.model(
            input_ids=ids.expand(b, -1),
            position_ids=torch.arange(len(ids), device=device).expand(b, -1),
            use_cache=False,
            **pixel_kwargs,
        )
        return out.last_hidden_state[:, torch.cat(positions).to(device, non_blocking=True)]


def qwen_backbones(scorers: Iterable[object]) -> list[QwenVL]:
    """The Qwen2-VL backbones of the real reward models among `scorers` (the proxies have none)."""
    return [s.backbone for s in scorers if isinstance(getattr(s, "backbone", None), QwenVL)]
