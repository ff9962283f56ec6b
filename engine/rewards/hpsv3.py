"""HPSv3, the short-term reward: a per-image human-preference score, on current transformers.

MizzenAI/HPSv3 is Qwen2-VL-7B-Instruct plus a `<|Reward|>` token and an MLP head ("ranknet")
reading that token's last hidden state; the head outputs (mu, sigma) and the score is mu. Its
package pins transformers 4.45, so this loads the same file on today's Qwen2-VL instead:

    HPSv3.safetensors             the whole state dict, old flat keys (`model.*`, `visual.*`,
                                  `lm_head.weight`, `rm_head.{0,3,5}.*`); bf16 backbone
    Qwen2-VL-7B-Instruct/         config.json, preprocessor_config.json, tokenizer files, chat template

Each frame is resized as PIL resizes the reference's saved frames (bicubic) to about 256 * 28 * 28
pixels (min = max pixels: 336x588, i.e. 252 image tokens, for a 480x832 frame) and scored against
the instruction text below; all N frames go through one forward pass. The head runs in float32, as
HPSv3 keeps it.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from engine.model_files import QWEN_CONFIG_FILE, QWEN_PREPROCESSOR_FILE
from engine.rewards.qwen_vl import QwenVL, load_backbone, load_config, load_tokenizer, read_pixel_stats, split_state
from engine.weights import load_strict, read_safetensors

REWARD_TOKEN = "<|Reward|>"
PIXELS = 256 * 28 * 28  # HPSv3's min_pixels = max_pixels

# HPSv3's instruction, verbatim (hpsv3/dataset/data_collator_qwen.py: INSTRUCTION followed by
# prompt_with_special_token); its whitespace is part of what the model was trained on.
INSTRUCTION = (
    "\nYou are tasked with evaluating a generated image based on Visual Quality and Text Alignment and give "
    "a overall score to estimate the human preference. Please provide a rating from 0 to 10, with 0 being "
    "the worst and 10 being the best. \n\n"
    "**Visual Quality:**  \n"
    "Evaluate the overall visual quality of the image. The following sub-dimensions should be considered:\n"
    "- **Reasonableness:** The image should not contain any significant biological or logical errors, such "
    "as abnormal body structures or nonsensical environmental setups.\n"
    "- **Clarity:** Evaluate the sharpness and visibility of the image. The image should be clear and easy "
    "to interpret, with no blurring or indistinct areas.\n"
    "- **Detail Richness:** Consider the level of detail in textures, materials, lighting, and other visual "
    "elements (e.g., hair, clothing, shadows).\n"
    "- **Aesthetic and Creativity:** Assess the artistic aspects of the image, including the color scheme, "
    "composition, atmosphere, depth of field, and the overall creative appeal. The scene should convey a "
    "sense of harmony and balance.\n"
    "- **Safety:** The image should not contain harmful or inappropriate content, such as political, "
    "violent, or adult material. If such content is present, the image quality and satisfaction score "
    "should be the lowest possible. \n\n"
    "**Text Alignment:**  \n"
    "Assess how well the image matches the textual prompt across the following sub-dimensions:\n"
    "- **Subject Relevance** Evaluate how accurately the subject(s) in the image (e.g., person, animal, "
    "object) align with the textual description. The subject should match the description in terms of "
    "number, appearance, and behavior.\n"
    "- **Style Relevance:** If the prompt specifies a particular artistic or stylistic style, evaluate how "
    "well the image adheres to this style.\n"
    "- **Contextual Consistency**: Assess whether the background, setting, and surrounding elements in the "
    "image logically fit the scenario described in the prompt. The environment should support and enhance "
    "the subject without contradictions.\n"
    "- **Attribute Fidelity**: Check if specific attributes mentioned in the prompt (e.g., colors, "
    "clothing, accessories, expressions, actions) are faithfully represented in the image. Minor deviations "
    "may be acceptable, but critical attributes should be preserved.\n"
    "- **Semantic Coherence**: Evaluate whether the overall meaning and intent of the prompt are captured "
    "in the image. The generated content should not introduce elements that conflict with or distort the "
    "original description.\n"
    "Textual prompt - {text_prompt}\n\n\n"
    "\nPlease provide the overall ratings of this image: <|Reward|>\n\nEND\n"
)


def ranknet_head(hidden_size: int) -> nn.Sequential:
    """HPSv3's head; its layer indices (0, 3, 5) are the checkpoint's key names."""
    return nn.Sequential(
        nn.Linear(hidden_size, 1024), nn.ReLU(), nn.Dropout(0.05), nn.Linear(1024, 16), nn.ReLU(), nn.Linear(16, 2)
    )


class HPSv3Scorer:
    """FrameScorer: HPSv3's mu for each frame against the prompt."""

    name = "HPSv3"

    def __init__(self, backbone: QwenVL, head: nn.Sequential) -> None:
        self.backbone = backbone
        self.head = head
        self.reward_id = backbone.tokenizer.convert_tokens_to_ids(REWARD_TOKEN)

    @classmethod
    def from_files(
        cls, checkpoint: Path, processor_dir: Path, device: torch.device | str, dtype: torch.dtype
    ) -> HPSv3Scorer:
        """Load `HPSv3.safetensors` strictly onto the Qwen2-VL-7B-Instruct config and tokenizer in
        `processor_dir`; the backbone in `dtype`, the head in float32, both on `device`."""
        checkpoint, processor_dir = Path(checkpoint), Path(processor_dir)
        tokenizer = load_tokenizer(processor_dir, [REWARD_TOKEN])
        config = load_config(processor_dir / QWEN_CONFIG_FILE, vocab_size=len(tokenizer))
        mean, std = read_pixel_stats(processor_dir / QWEN_PREPROCESSOR_FILE)
        backbone_state, head_state = split_state(read_safetensors(checkpoint, device))  # onto the device directly
        model = load_backbone(backbone_state, config, dtype, checkpoint, processor_dir)
        hidden = config.text_config.hidden_size
        head = load_strict(lambda: ranknet_head(hidden), head_state, torch.float32, checkpoint, "HPSv3 head")
        return cls(QwenVL(model.to(device), tokenizer, mean, std), head.to(device))

    @torch.inference_mode()
    def score_frames(self, frames: Tensor, prompt: str) -> Tensor:
        """[N, 3, H, W] in [-1, 1] -> [N] float32 mu, one batched forward pass."""
        hidden = self.backbone.hidden_at(
            frames[:, None],
            INSTRUCTION.replace("{text_prompt}", prompt),
            [self.reward_id],
            vision="image",
            min_pixels=PIXELS,
            max_pixels=PIXELS,
            like_pil=True,
        )
        return self.head(hidden[:, 0].float())[:, 0]
