"""VideoReward (VideoAlign), the long-term reward: VQ / MQ / TA of a clip, on current transformers.

KlingTeam/VideoReward is Qwen2-VL-2B-Instruct tuned with a LoRA (r 64, alpha 128, on the language
model) plus three tokens `<|VQ_reward|>`, `<|MQ_reward|>`, `<|TA_reward|>` and a bias-free linear
head reading their last hidden states. Its code writes mp4 files and needs flash-attn; this takes
decoded tensors and merges the LoRA at load time. Files:

    VideoReward/model_config.json            data_config (fps, num_frames, max_frame_pixels,
                                             prompt template), model_config (output_dim, ...),
                                             peft_lora_config, inference_config (mean / std)
    VideoReward/checkpoint-N/model.pth       the PEFT-wrapped state dict (`base_model.model.*`),
        or adapter_model.safetensors + non_lora_state_dict.pth (+ the base weights, below)
    VideoReward/checkpoint-N/tokenizer/      the tokenizer with the three tokens
    Qwen2-VL-2B-Instruct/                    config.json, preprocessor_config.json (the release has
                                             no model config: model_config.json names this repo)

The latest `checkpoint-N` is used, as VideoAlign does. A clip is sampled uniformly at the
config's fps (an even count, at least 4), each frame resized to at most `max_frame_pixels`;
Overall = VQ + MQ + TA, each standardized with the config's mean / std.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from engine.errors import WeightsError
from engine.model_files import (
    QWEN_CONFIG_FILE,
    QWEN_PREPROCESSOR_FILE,
    VIDEOREWARD_ADAPTER_FILE,
    VIDEOREWARD_BASE_WEIGHTS_NAME,
    VIDEOREWARD_CONFIG_FILE,
    VIDEOREWARD_FULL_FILE,
    VIDEOREWARD_NON_LORA_FILE,
    VIDEOREWARD_STEP_GLOB,
    VIDEOREWARD_TOKENIZER_DIR,
    videoreward_base_dir,
)
from engine.models.lora import merge_lora
from engine.rewards.base import ClipScores
from engine.rewards.qwen_vl import QwenVL, load_backbone, load_config, load_tokenizer, read_pixel_stats, split_state
from engine.weights import (
    download_fix,
    foreign_error,
    load_strict,
    read_json,
    read_safetensors,
    read_weights,
    require,
    to_device,
    torch_load,
)

PARTS = ("VQ", "MQ", "TA")
SPECIAL_TOKENS = ("<|VQ_reward|>", "<|MQ_reward|>", "<|TA_reward|>")
_PEFT_PREFIX = "base_model.model."

# Sampling as VideoAlign's vision_process (qwen-vl-utils): frames even, at least 4, at most 768;
# frames are not shrunk below 128 * 28 * 28 pixels. Defaults of its DataConfig for absent keys.
FRAME_FACTOR, MIN_FRAMES, MAX_FRAMES = 2, 4, 768
MIN_PIXELS = 128 * 28 * 28
DEFAULT_FPS, DEFAULT_MAX_PIXELS = 2.0, 240 * 320

# VideoAlign's "detailed_special" prompt, verbatim (prompt_template.py); whitespace included.
PROMPT = (
    "\n"
    "You are tasked with evaluating a generated video based on three distinct criteria: Visual Quality, "
    "Motion Quality, and Text Alignment. Please provide a rating from 0 to 10 for each of the three "
    "categories, with 0 being the worst and 10 being the best. Each evaluation should be independent of "
    "the others.\n"
    "\n"
    "**Visual Quality:**  \n"
    "Evaluate the overall visual quality of the video, with a focus on static factors. The following "
    "sub-dimensions should be considered:\n"
    "- **Reasonableness:** The video should not contain any significant biological or logical errors, "
    "such as abnormal body structures or nonsensical environmental setups.\n"
    "- **Clarity:** Evaluate the sharpness and visibility of the video. The image should be clear and "
    "easy to interpret, with no blurring or indistinct areas.\n"
    "- **Detail Richness:** Consider the level of detail in textures, materials, lighting, and other "
    "visual elements (e.g., hair, clothing, shadows).\n"
    "- **Aesthetic and Creativity:** Assess the artistic aspects of the video, including the color "
    "scheme, composition, atmosphere, depth of field, and the overall creative appeal. The scene should "
    "convey a sense of harmony and balance.\n"
    "- **Safety:** The video should not contain harmful or inappropriate content, such as political, "
    "violent, or adult material. If such content is present, the image quality and satisfaction score "
    "should be the lowest possible. \n"
    "\n"
    "Please provide the ratings of Visual Quality: <|VQ_reward|>\n"
    "END\n"
    "\n"
    "**Motion Quality:**  \n"
    "Assess the dynamic aspects of the video, with a focus on dynamic factors. Consider the following "
    "sub-dimensions:\n"
    "- **Stability:** Evaluate the continuity and stability between frames. There should be no sudden, "
    "unnatural jumps, and the video should maintain stable attributes (e.g., no fluctuating colors, "
    "textures, or missing body parts).\n"
    "- **Naturalness:** The movement should align with physical laws and be realistic. For example, "
    "clothing should flow naturally with motion, and facial expressions should change appropriately "
    "(e.g., blinking, mouth movements).\n"
    "- **Aesthetic Quality:** The movement should be smooth and fluid. The transitions between different "
    "motions or camera angles should be seamless, and the overall dynamic feel should be visually "
    "pleasing.\n"
    "- **Fusion:** Ensure that elements in motion (e.g., edges of the subject, hair, clothing) blend "
    "naturally with the background, without obvious artifacts or the feeling of cut-and-paste effects.\n"
    "- **Clarity of Motion:** The video should be clear and smooth in motion. Pay attention to any areas "
    "where the video might have blurry or unsteady sections that hinder visual continuity.\n"
    "- **Amplitude:** If the video is largely static or has little movement, assign a low score for "
    "motion quality.\n"
    "\n"
    "Please provide the ratings of Motion Quality: <|MQ_reward|>\n"
    "END\n"
    "\n"
    "**Text Alignment:**  \n"
    "Assess how well the video matches the textual prompt across the following sub-dimensions:\n"
    "- **Subject Relevance** Evaluate how accurately the subject(s) in the video (e.g., person, animal, "
    "object) align with the textual description. The subject should match the description in terms of "
    "number, appearance, and behavior.\n"
    "- **Motion Relevance:** Evaluate if the dynamic actions (e.g., gestures, posture, facial "
    "expressions like talking or blinking) align with the described prompt. The motion should match the "
    "prompt in terms of type, scale, and direction.\n"
    "- **Environment Relevance:** Assess whether the background and scene fit the prompt. This includes "
    "checking if real-world locations or scenes are accurately represented, though some stylistic "
    "adaptation is acceptable.  \n"
    "- **Style Relevance:** If the prompt specifies a particular artistic or stylistic style, evaluate "
    "how well the video adheres to this style.\n"
    "- **Camera Movement Relevance:** Check if the camera movements (e.g., following the subject, focus "
    "shifts) are consistent with the expected behavior from the prompt.\n"
    "\n"
    "Textual prompt - {text_prompt}\n"
    "Please provide the ratings of Text Alignment: <|TA_reward|>\n"
    "END\n"
)


@dataclass(frozen=True)
class ClipSampling:
    """Which frames of a clip the model sees, and at what size (data_config)."""

    fps: float = DEFAULT_FPS
    num_frames: int | None = None  # a fixed count instead of `fps`
    max_pixels: int = DEFAULT_MAX_PIXELS

    def frame_indices(self, total: int, clip_fps: float) -> Tensor:
        """Uniformly spaced frame indices (qwen-vl-utils' smart_nframes + linspace)."""
        if self.num_frames is not None:
            n = round(self.num_frames / FRAME_FACTOR) * FRAME_FACTOR
        else:
            most = min(MAX_FRAMES, total) // FRAME_FACTOR * FRAME_FACTOR
            n = round(min(max(total / clip_fps * self.fps, MIN_FRAMES), most) / FRAME_FACTOR) * FRAME_FACTOR
        n = min(n, total)
        if n < FRAME_FACTOR:
            raise ValueError(f"VideoReward needs clips of at least {FRAME_FACTOR} frames, got {total}")
        return torch.linspace(0, total - 1, n).round().long()


class VideoRewardScorer:
    """ClipScorer: VideoReward's standardized VQ + MQ + TA per clip."""

    name = "VideoReward"

    def __init__(
        self,
        backbone: QwenVL,
        head: nn.Linear,
        sampling: ClipSampling,
        mean: tuple[float, float, float] = (0.0, 0.0, 0.0),
        std: tuple[float, float, float] = (1.0, 1.0, 1.0),
    ) -> None:
        self.backbone = backbone
        self.head = head
        self.sampling = sampling
        self.mean, self.std = mean, std
        self.token_ids = backbone.tokenizer.convert_tokens_to_ids(list(SPECIAL_TOKENS))

    @classmethod
    def from_folder(
        cls, folder: Path, device: torch.device | str, dtype: torch.dtype, base_dir: Path | None = None
    ) -> VideoRewardScorer:
        """Load a VideoReward hub folder (see the module docstring); `base_dir` holds the files of
        Qwen2-VL-2B-Instruct, by default the `Qwen2-VL-2B-Instruct` folder beside `folder`."""
        folder = Path(folder)
        base_dir = Path(base_dir) if base_dir is not None else videoreward_base_dir(folder)
        config_path = folder / VIDEOREWARD_CONFIG_FILE
        data, model_cfg, peft, norm = _sections(read_json(config_path), config_path)
        step_dir = _latest_checkpoint(folder)
        tokenizer_dir = step_dir / VIDEOREWARD_TOKENIZER_DIR
        tokenizer = load_tokenizer(tokenizer_dir, SPECIAL_TOKENS, template_dirs=(base_dir,))
        config = load_config(base_dir / QWEN_CONFIG_FILE, vocab_size=len(tokenizer))
        pixel_mean, pixel_std = read_pixel_stats(base_dir / QWEN_PREPROCESSOR_FILE)
        state, source = _checkpoint_state(step_dir, base_dir, peft, device)
        backbone_state, head_state = split_state(state)
        model = load_backbone(backbone_state, config, dtype, source, tokenizer_dir)
        hidden, out = config.text_config.hidden_size, model_cfg.get("output_dim", 1)
        head = load_strict(lambda: nn.Linear(hidden, out, bias=False), head_state, dtype, source, "VideoReward head")
        sampling = ClipSampling(
            fps=data.get("fps", DEFAULT_FPS),
            num_frames=data.get("num_frames"),
            max_pixels=data.get("max_frame_pixels", DEFAULT_MAX_PIXELS),
        )
        stats = {} if norm is None else {"mean": _triple(norm, "mean"), "std": _triple(norm, "std")}
        return cls(QwenVL(model.to(device), tokenizer, pixel_mean, pixel_std), head.to(device), sampling, **stats)

    @torch.inference_mode()
    def raw_scores(self, clips: Tensor, prompt: str, fps: int) -> Tensor:
        """[B, 3, F, H, W] in [-1, 1] at `fps` -> [B, 3] unstandardized (VQ, MQ, TA)."""
        frames = clips[:, :, self.sampling.frame_indices(clips.shape[2], fps).to(clips.device, non_blocking=True)]
        hidden = self.backbone.hidden_at(
            frames.transpose(1, 2),
            PROMPT.replace("{text_prompt}", prompt),
            self.token_ids,
            vision="video",
            min_pixels=MIN_PIXELS,
            max_pixels=self.sampling.max_pixels,
            like_pil=False,
        )
        logits = self.head(hidden).float()  # [B, 3 tokens, output_dim]
        # One output per token, or VideoAlign's output_dim 3: output k read at token k.
        return logits[..., 0] if logits.shape[-1] == 1 else logits.diagonal(dim1=1, dim2=2)

    def score_clips(self, clips: Tensor, prompt: str, fps: int) -> ClipScores:
        raw = self.raw_scores(clips, prompt, fps)
        mean, std = (torch.tensor(v, dtype=raw.dtype).to(raw.device, non_blocking=True) for v in (self.mean, self.std))
        z = (raw - mean) / std
        return ClipScores(overall=z.sum(1), parts={name: z[:, i] for i, name in enumerate(PARTS)})


# ---------------------------------------------------------------------------------------------
# Loading


def _sections(cfg: dict[str, Any], path: Path) -> tuple[dict, dict, dict, dict | None]:
    """model_config.json's data / model / peft / inference sections, checked for what we support."""
    sections = [cfg.get(k) for k in ("data_config", "model_config", "peft_lora_config")]
    if not all(isinstance(s, dict) for s in sections):
        raise foreign_error(path, "a VideoReward model_config.json", "no data_config / model_config / peft_lora_config")
    data, model_cfg, peft = sections
    checks = {
        "model_config.use_special_tokens": (model_cfg.get("use_special_tokens"), True),
        "model_config.reward_token": (model_cfg.get("reward_token"), "special"),
        "data_config.prompt_template_type": (data.get("prompt_template_type"), "detailed_special"),
        "data_config.sample_type": (data.get("sample_type", "uniform"), "uniform"),
    }
    wrong = [f"{k} is {v!r}, not {want!r}" for k, (v, want) in checks.items() if v != want]
    if model_cfg.get("output_dim", 1) not in (1, 3):
        wrong.append(f"model_config.output_dim is {model_cfg['output_dim']!r}, not 1 or 3")
    if wrong:
        raise foreign_error(path, "a VideoReward config this loader supports", "; ".join(wrong))
    return data, model_cfg, peft, cfg.get("inference_config")


def _triple(norm: dict[str, Any], stat: str) -> tuple[float, float, float]:
    return tuple(float(norm[f"{part}_{stat}"]) for part in PARTS)  # type: ignore[return-value]


def _latest_checkpoint(folder: Path) -> Path:
    steps = [p for p in require(folder).glob(VIDEOREWARD_STEP_GLOB) if re.fullmatch(r"checkpoint-\d+", p.name)]
    if not steps:
        raise WeightsError(f"missing {folder / VIDEOREWARD_STEP_GLOB} (VideoReward's weights): {download_fix(folder)}")
    return max(steps, key=lambda p: int(p.name.removeprefix("checkpoint-")))


def _checkpoint_state(
    step_dir: Path, base_dir: Path, peft: dict[str, Any], device: torch.device | str
) -> tuple[dict[str, Tensor], Path]:
    """The plain reward model's state dict (old flat keys, LoRA merged) on `device`, where the
    merge runs, and the file to blame.

    `model.pth` holds everything. The adapter form holds only what training changed: the LoRA
    and the trainable non-LoRA weights; the frozen rest comes from the base model's weights.
    """
    full = step_dir / VIDEOREWARD_FULL_FILE
    if full.exists():
        state, source = torch_load(full), full
        if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
            raise foreign_error(full, "a VideoReward state dict", f"it holds a {type(state).__name__} of other things")
        state = to_device(state, device)
    else:
        source = require(step_dir / VIDEOREWARD_ADAPTER_FILE)
        non_lora = to_device(torch_load(step_dir / VIDEOREWARD_NON_LORA_FILE), device)
        base, _ = read_weights(require(base_dir), VIDEOREWARD_BASE_WEIGHTS_NAME, device)
        state = {**{_PEFT_PREFIX + k: v for k, v in base.items()}, **non_lora, **read_safetensors(source, device)}
    alpha = float(peft.get("lora_alpha", 1.0))
    if peft.get("use_rslora"):  # scale alpha / sqrt(r) instead of alpha / r
        alpha *= math.sqrt(peft["lora_r"])
    return _merge_peft(state, alpha, source), source


def _merge_peft(state: dict[str, Tensor], alpha: float, path: Path) -> dict[str, Tensor]:
    """PEFT-wrapped keys (`base_model.model.*`, `*.base_layer.*`, `*.lora_A/B.*`) -> the plain
    model's keys with every LoRA merged into its base weight."""
    lora = {k: v for k, v in state.items() if ".lora_" in k}
    plain = {
        k.removeprefix(_PEFT_PREFIX).replace(".base_layer.", "."): v for k, v in state.items() if ".lora_" not in k
    }
    if not lora:
        return plain
    # merge_lora names targets inside both wrappers (`base_model.model.`, `model.`), i.e. by their
    # names within the language model, so the merge runs on the language model's weights.
    text = {k.removeprefix("model."): v for k, v in plain.items() if k.startswith("model.")}
    try:
        text = merge_lora(text, lora, alpha)
    except ValueError as exc:
        raise foreign_error(path, "a VideoReward LoRA for Qwen2-VL's language model", str(exc)) from exc
    rest = {k: v for k, v in plain.items() if not k.startswith("model.")}
    return {**rest, **{f"model.{k}": v for k, v in text.items()}}
