"""HPSv3 and VideoReward loaders and scorers on tiny random Qwen2-VL models, saved as the releases are.

HPSv3.safetensors holds the old flat keys (`model.*`, `visual.*`, `lm_head`, `rm_head.{0,3,5}`);
VideoReward's folder holds model_config.json and a PEFT-wrapped `checkpoint-N/model.pth` made by
peft itself (LoRA unmerged). The old key names come from a table defined HERE, and every expected
score from an independent path: transformers' own (PIL) Qwen2-VL image processor for images, a
loop that cuts video patches one by one, the chat template expanded by string replacement (as
Qwen2VLProcessor does), the live PEFT model (LoRA not merged), heads applied by hand at the
special tokens, with plain 1D positions as the reward models were trained.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from peft import LoraConfig, get_peft_model, get_peft_model_state_dict
from PIL import Image
from safetensors.torch import save_file
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
from torch import Tensor, nn
from transformers import PreTrainedTokenizerFast, Qwen2VLConfig, Qwen2VLForConditionalGeneration
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil
from transformers.models.qwen2_vl.modeling_qwen2_vl import Qwen2VLModel

from engine.errors import WeightsError
from engine.frames import from_uint8
from engine.rewards.base import ClipScorer, FrameScorer
from engine.rewards.hpsv3 import INSTRUCTION, PIXELS, REWARD_TOKEN, HPSv3Scorer, ranknet_head
from engine.rewards.qwen_vl import QWEN2_VL_SPECIAL_TOKENS, REWARD_CHAT_TEMPLATE, smart_resize, to_8bit
from engine.rewards.videoreward import PROMPT, SPECIAL_TOKENS, ClipSampling, VideoRewardScorer

F32 = torch.float32
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
NORM = {"VQ_mean": 3.6757, "VQ_std": 2.2476, "MQ_mean": 1.1646, "MQ_std": 1.3811, "TA_mean": 2.8105, "TA_std": 2.5121}
PROMPT_TEXT = "a red fox runs through fresh snow at dawn"
IMAGE_HW = (448, 448)  # exactly HPSv3's 256 * 28 * 28 pixels: neither path resizes
VIDEO_HW = (308, 336)  # within VideoReward's [128, 256] * 28 * 28 pixels: not resized either


# ------------------------------------------------------------------------------------------------
# Old (transformers 4.45) key names, from the nested names of today's modules


def old_key(key: str) -> str:
    prefix = "base_model.model." if key.startswith("base_model.model.") else ""
    key = key.removeprefix(prefix)
    for new, old in (("model.language_model.", "model."), ("model.visual.", "visual.")):
        if key.startswith(new):
            return prefix + old + key.removeprefix(new)
    return prefix + key


def old_layout(state: dict[str, Tensor]) -> dict[str, Tensor]:
    return {old_key(k): v.detach().clone().contiguous() for k, v in state.items()}


# ------------------------------------------------------------------------------------------------
# Tiny tokenizer and configs


def save_tokenizer(folder: Path, extra: list[str], template_in_tokenizer: bool) -> None:
    """A byte-level BPE with Qwen2-VL's special tokens, saved as a Qwen2Tokenizer folder."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=700, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    tok.train_from_iterator([INSTRUCTION, PROMPT, PROMPT_TEXT], trainer)
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in [*QWEN2_VL_SPECIAL_TOKENS, *extra]])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    if template_in_tokenizer:
        fast.chat_template = REWARD_CHAT_TEMPLATE
    fast.save_pretrained(folder)
    cfg_path = folder / "tokenizer_config.json"
    cfg_path.write_text(json.dumps({**json.loads(cfg_path.read_text()), "tokenizer_class": "Qwen2Tokenizer"}))
    if not template_in_tokenizer:  # Qwen2-VL repos also ship the template as chat_template.json
        (folder / "chat_template.json").write_text(json.dumps({"chat_template": REWARD_CHAT_TEMPLATE}))


def hub_config(folder: Path, tie: bool) -> dict:
    """A tiny config.json in the hub's flat Qwen2-VL form (text keys at the top level)."""
    vocab = json.loads((folder / "tokenizer.json").read_text())["added_tokens"]
    ids = {t["content"]: t["id"] for t in vocab}
    return {
        "architectures": ["Qwen2VLForConditionalGeneration"],
        "model_type": "qwen2_vl",
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "num_key_value_heads": 1,
        "hidden_act": "silu",
        "max_position_embeddings": 4096,
        "rms_norm_eps": 1e-6,
        "rope_theta": 1000000.0,
        "rope_scaling": {"type": "mrope", "mrope_section": [2, 3, 3]},
        "vocab_size": 1024,  # the hub's padded size; the reward models resize to len(tokenizer)
        "bos_token_id": ids["<|endoftext|>"],
        "eos_token_id": ids["<|im_end|>"],
        "vision_start_token_id": ids["<|vision_start|>"],
        "vision_end_token_id": ids["<|vision_end|>"],
        "image_token_id": ids["<|image_pad|>"],
        "video_token_id": ids["<|video_pad|>"],
        "tie_word_embeddings": tie,
        "torch_dtype": "float32",
        "vision_config": {
            "depth": 1, "embed_dim": 16, "hidden_size": 32, "num_heads": 2, "mlp_ratio": 2, "in_chans": 3,
            "patch_size": 14, "spatial_merge_size": 2, "spatial_patch_size": 14, "temporal_patch_size": 2,
        },
    }  # fmt: skip


def write_base_folder(folder: Path, extra_tokens: list[str], tie: bool, template_in_tokenizer: bool) -> dict:
    folder.mkdir(parents=True)
    save_tokenizer(folder, extra_tokens, template_in_tokenizer)
    config = hub_config(folder, tie)
    (folder / "config.json").write_text(json.dumps(config))
    Qwen2VLImageProcessorPil(min_pixels=56 * 56, max_pixels=28 * 28 * 16384).save_pretrained(folder)
    return config


def model_config(config: dict, vocab: int) -> Qwen2VLConfig:
    return Qwen2VLConfig.from_dict({**config, "vocab_size": vocab})


def randomize(module: nn.Module, seed: int) -> None:
    """Weights of order 1 (the default init is 0.02-small), so every part moves the scores."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.3 + (1.0 if p.ndim == 1 else 0.0))


# ------------------------------------------------------------------------------------------------
# Independent reference path


def decoded_frames(n: int, hw: tuple[int, int], seed: int, t: int | None = None) -> Tensor:
    """Frames in [-1, 1] off the 8-bit grid, as a VAE decodes them: [n, 3, H, W] or [n, 3, t, H, W]."""
    gen = torch.Generator().manual_seed(seed)
    shape = (n, 3, *hw) if t is None else (n, 3, t, *hw)
    return torch.rand(shape, generator=gen) * 2 - 1


def to_uint8(x: Tensor) -> np.ndarray:
    """8 bits as the reference pipeline makes them: truncation (`astype(uint8)`)."""
    return (255.0 * (x * 0.5 + 0.5).clamp(0, 1)).numpy().astype(np.uint8)


def rounded(x: Tensor) -> Tensor:
    """Frames that truncate to the levels `x` rounds to: a scorer that rounded would score them as `x`."""
    return from_uint8(((x + 1) * 127.5).round().to(torch.uint8), torch.device("cpu"))


def prompt_ids(tok, vision: str, text: str, n_tokens: int) -> Tensor:
    messages = [{"role": "user", "content": [{"type": vision}, {"type": "text", "text": text}]}]
    rendered = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    pad = f"<|{vision}_pad|>"
    return torch.tensor(tok(rendered.replace(pad, pad * n_tokens))["input_ids"])


def hidden_states(backbone: Qwen2VLModel, ids: Tensor, batch: int, **pixels) -> Tensor:
    pos = torch.arange(len(ids)).expand(batch, -1)
    return backbone(input_ids=ids.expand(batch, -1), position_ids=pos, **pixels).last_hidden_state


def video_patches(clip: np.ndarray, patch: int = 14, merge: int = 2) -> tuple[Tensor, list[int]]:
    """[T, 3, H, W] uint8 -> normalized patches in merge-window order, one by one."""
    x = (torch.from_numpy(clip).float() / 255 - torch.tensor(CLIP_MEAN).view(3, 1, 1)) / torch.tensor(CLIP_STD).view(
        3, 1, 1
    )
    gt, gh, gw = x.shape[0] // 2, x.shape[2] // patch, x.shape[3] // patch
    rows = []
    for t in range(gt):
        for bh in range(gh // merge):
            for bw in range(gw // merge):
                for mh in range(merge):
                    for mw in range(merge):
                        r, c = (bh * merge + mh) * patch, (bw * merge + mw) * patch
                        block = x[2 * t : 2 * t + 2, :, r : r + patch, c : c + patch]  # [time, C, p, p]
                        rows.append(block.transpose(0, 1).reshape(-1))  # channel-major
    return torch.stack(rows), [gt, gh, gw]


# ------------------------------------------------------------------------------------------------
# HPSv3


@pytest.fixture(scope="module")
def hpsv3(tmp_path_factory):
    root = tmp_path_factory.mktemp("hpsv3")
    processor_dir = root / "Qwen2-VL-7B-Instruct"
    config = write_base_folder(processor_dir, [], tie=False, template_in_tokenizer=False)
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(processor_dir)
    tok.add_special_tokens({"additional_special_tokens": [REWARD_TOKEN]})
    tok.chat_template = REWARD_CHAT_TEMPLATE
    torch.manual_seed(0)
    net = Qwen2VLForConditionalGeneration(model_config(config, len(tok))).eval()
    head = ranknet_head(32).eval()
    randomize(net, 1)
    randomize(head, 2)
    checkpoint = root / "HPSv3" / "HPSv3.safetensors"
    checkpoint.parent.mkdir()
    state = {**old_layout(net.state_dict()), **{f"rm_head.{k}": v for k, v in head.state_dict().items()}}
    assert "model.embed_tokens.weight" in state and "visual.merger.ln_q.weight" in state  # the old layout
    save_file(state, checkpoint)
    scorer = HPSv3Scorer.from_files(checkpoint, processor_dir, "cpu", F32)
    return {
        "scorer": scorer,
        "net": net,
        "head": head,
        "tok": tok,
        "checkpoint": checkpoint,
        "processor": processor_dir,
    }


def hpsv3_reference(h, frames: Tensor, prompt: str) -> tuple[Tensor, Tensor]:
    """(mu at <|Reward|>, mu at the last token) via transformers' PIL image processor."""
    images = [Image.fromarray(to_uint8(f).transpose(1, 2, 0)) for f in frames]
    processed = Qwen2VLImageProcessorPil(min_pixels=PIXELS, max_pixels=PIXELS)(images, return_tensors="pt")
    grid = processed["image_grid_thw"]
    ids = prompt_ids(h["tok"], "image", INSTRUCTION.format(text_prompt=prompt), int(grid[0].prod()) // 4)
    with torch.no_grad():
        hidden = hidden_states(
            h["net"].model, ids, len(frames), pixel_values=processed["pixel_values"], image_grid_thw=grid
        )
        mu = h["head"](hidden)[..., 0]
    reward_at = int((ids == h["tok"].convert_tokens_to_ids(REWARD_TOKEN)).nonzero())
    return mu[:, reward_at], mu[:, -1]


def test_hpsv3_scores_as_the_reference_path(hpsv3):
    scorer = hpsv3["scorer"]
    assert isinstance(scorer, FrameScorer) and scorer.name == "HPSv3"
    frames = decoded_frames(2, IMAGE_HW, seed=3)
    scores = scorer.score_frames(frames, PROMPT_TEXT)
    expected, at_last_token = hpsv3_reference(hpsv3, frames, PROMPT_TEXT)
    assert scores.shape == (2,) and scores.dtype == F32
    torch.testing.assert_close(scores, expected, atol=1e-4, rtol=1e-4)
    assert not torch.allclose(scorer.score_frames(rounded(frames), PROMPT_TEXT), scores, atol=1e-4)  # truncated
    assert not torch.allclose(scores, at_last_token, atol=1e-3)  # read at <|Reward|>, not at the end
    assert not torch.allclose(scorer.score_frames(frames, "a blue car"), scores, atol=1e-4)  # the prompt counts


def test_hpsv3_batched_equals_one_by_one_and_is_deterministic(hpsv3):
    scorer = hpsv3["scorer"]
    frames = decoded_frames(3, (120, 200), seed=4)  # resized to HPSv3's 256 * 28 * 28 pixels
    batched = scorer.score_frames(frames, PROMPT_TEXT)
    single = torch.cat([scorer.score_frames(f[None], PROMPT_TEXT) for f in frames])
    torch.testing.assert_close(batched, single, atol=1e-5, rtol=1e-5)
    assert torch.equal(batched, scorer.score_frames(frames, PROMPT_TEXT))


def test_compiled_layers_score_as_eager(hpsv3):
    """`compile_layers` wraps every vision block and decoder layer, and the traced layers compute
    what the eager ones do, at a second batch size too (a recompile). The eager backend keeps the
    kernels the same, so this checks the tracing, not inductor's fused numerics (GPU benchmark)."""
    scorer = HPSv3Scorer.from_files(hpsv3["checkpoint"], hpsv3["processor"], "cpu", F32)
    frames = decoded_frames(3, IMAGE_HW, seed=5)
    eager = [scorer.score_frames(frames[:n], PROMPT_TEXT) for n in (3, 2)]
    scorer.backbone.compile_layers(backend="eager")
    model = scorer.backbone.model
    layers = [*model.visual.blocks, *model.language_model.layers]
    assert layers and all(layer._compiled_call_impl is not None for layer in layers)
    for n, expected in zip((3, 2), eager):
        torch.testing.assert_close(scorer.score_frames(frames[:n], PROMPT_TEXT), expected, atol=1e-5, rtol=1e-5)


def test_hpsv3_head_is_float32_and_drives_mu(hpsv3):
    scorer = hpsv3["scorer"]
    assert all(p.dtype == F32 for p in scorer.head.parameters())
    frames = decoded_frames(2, IMAGE_HW, seed=5)
    before = scorer.score_frames(frames, PROMPT_TEXT)
    with torch.no_grad():
        scorer.head[5].bias[0] += 1.5  # mu's bias
        scorer.head[5].bias[1] += 100.0  # sigma's: not the score
    try:
        torch.testing.assert_close(scorer.score_frames(frames, PROMPT_TEXT), before + 1.5, atol=1e-4, rtol=0)
    finally:
        with torch.no_grad():
            scorer.head[5].bias -= torch.tensor([1.5, 100.0])


def test_resize_matches_pil_bicubic():
    """HPSv3 reads saved frames with PIL; the tensor resize reproduces it to the 8-bit level."""
    frames = decoded_frames(1, (120, 200), seed=6)
    size = smart_resize(120, 200, 28, PIXELS, PIXELS)
    ours = to_8bit(frames, size, like_pil=True)[0]
    pil = np.array(Image.fromarray(to_uint8(frames[0]).transpose(1, 2, 0)).resize(size[::-1], Image.BICUBIC))
    diff = (ours - torch.from_numpy(pil).permute(2, 0, 1).float()).abs()
    assert diff.max() <= 2 and (diff > 0).float().mean() < 0.01


# ------------------------------------------------------------------------------------------------
# VideoReward


class RewardNet(nn.Module):
    """VideoAlign's reward model as the PEFT wrapper saw it: Qwen2-VL, tied LM head, rm_head."""

    def __init__(self, config: Qwen2VLConfig, output_dim: int) -> None:
        super().__init__()
        self.model = Qwen2VLModel(config)
        self.lm_head = nn.Linear(32, config.text_config.vocab_size, bias=False)
        self.lm_head.weight = self.model.language_model.embed_tokens.weight
        self.rm_head = nn.Linear(32, output_dim, bias=False)


def videoreward_folder(root: Path, output_dim: int) -> dict:
    base_dir = root / "Qwen2-VL-2B-Instruct"
    config = write_base_folder(base_dir, [], tie=True, template_in_tokenizer=False)
    folder = root / "VideoReward"
    tokenizer_dir = folder / "checkpoint-12" / "tokenizer"
    save_tokenizer(tokenizer_dir, list(SPECIAL_TOKENS), template_in_tokenizer=True)
    (folder / "checkpoint-3").mkdir()  # an older step: the loader takes the latest
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    torch.manual_seed(0)
    net = RewardNet(model_config(config, len(tok)), output_dim).eval()
    randomize(net, 7)
    targets = [n for n, m in net.named_modules() if isinstance(m, nn.Linear) and ".layers." in n]
    peft_model = get_peft_model(net, LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=targets)).eval()
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:  # peft starts B at zero; a trained LoRA is not
                p.normal_(0, 0.3)
    state = old_layout(peft_model.state_dict())
    assert "base_model.model.model.layers.0.self_attn.q_proj.lora_A.default.weight" in state
    torch.save(state, folder / "checkpoint-12" / "model.pth")
    cfg = {
        "data_config": {
            "fps": 2.0, "num_frames": None, "max_frame_pixels": 256 * 28 * 28, "eval_dim": ["VQ", "MQ", "TA"],
            "prompt_template_type": "detailed_special", "sample_type": "uniform", "add_noise": False,
        },
        "training_args": {"output_dir": "rm_output", "bf16": True},
        "model_config": {
            "model_name_or_path": "Qwen/Qwen2-VL-2B-Instruct", "output_dim": output_dim, "use_special_tokens": True,
            "reward_token": "special", "torch_dtype": "bfloat16",
        },
        "peft_lora_config": {
            "lora_enable": True, "vision_lora": False, "lora_r": 4, "lora_alpha": 8, "lora_dropout": 0.0,
            "lora_namespan_exclude": ["lm_head", "rm_head", "embed_tokens", "visual"], "use_rslora": False,
        },
        "inference_config": NORM,
    }  # fmt: skip
    (folder / "model_config.json").write_text(json.dumps(cfg))
    return {"folder": folder, "base_dir": base_dir, "tok": tok, "peft": peft_model}


@pytest.fixture(scope="module", params=[1, 3], ids=["output_dim1", "output_dim3"])
def videoreward(request, tmp_path_factory):
    made = videoreward_folder(tmp_path_factory.mktemp("videoreward"), request.param)
    made["scorer"] = VideoRewardScorer.from_folder(made["folder"], "cpu", F32)
    made["output_dim"] = request.param
    return made


def videoreward_reference(v, clips: Tensor, indices: list[int], prompt: str) -> Tensor:
    """Raw (VQ, MQ, TA) [B, 3] through the live PEFT model (LoRA not merged)."""
    patches = [video_patches(to_uint8(c[:, indices]).transpose(1, 0, 2, 3)) for c in clips]
    grid = torch.tensor([g for _, g in patches])
    ids = prompt_ids(v["tok"], "video", PROMPT.format(text_prompt=prompt), int(grid[0].prod()) // 4)
    net = v["peft"].base_model.model
    with torch.no_grad():
        hidden = hidden_states(
            net.model, ids, len(clips), pixel_values_videos=torch.cat([p for p, _ in patches]), video_grid_thw=grid
        )
        at = torch.cat([(ids == i).nonzero().flatten() for i in v["tok"].convert_tokens_to_ids(list(SPECIAL_TOKENS))])
        logits = net.rm_head(hidden[:, at])  # [B, 3 tokens, output_dim]
    return logits[..., 0] if v["output_dim"] == 1 else logits.diagonal(dim1=1, dim2=2)


def test_videoreward_scores_as_the_reference_path(videoreward):
    scorer = videoreward["scorer"]
    assert isinstance(scorer, ClipScorer) and scorer.name == "VideoReward"
    clips = decoded_frames(2, VIDEO_HW, seed=8, t=16)  # 1 s at 16 fps -> 4 frames at 2 fps (the minimum)
    raw = scorer.raw_scores(clips, PROMPT_TEXT, fps=16)
    expected = videoreward_reference(videoreward, clips, [0, 5, 10, 15], PROMPT_TEXT)
    torch.testing.assert_close(raw, expected, atol=1e-4, rtol=1e-4)  # merged vs live LoRA: rounding
    assert not torch.allclose(scorer.raw_scores(rounded(clips), PROMPT_TEXT, fps=16), raw, atol=1e-4)  # truncated
    # Overall = sum of the three standardized parts, with model_config.json's mean / std.
    scores = scorer.score_clips(clips, PROMPT_TEXT, fps=16)
    for i, part in enumerate(("VQ", "MQ", "TA")):
        expected = (raw[:, i] - NORM[f"{part}_mean"]) / NORM[f"{part}_std"]
        torch.testing.assert_close(scores.parts[part], expected)
    torch.testing.assert_close(scores.overall, sum(scores.parts.values()))
    assert scores.overall.shape == (2,) and scores.overall.dtype == F32


def test_videoreward_batched_equals_one_by_one_and_is_deterministic(videoreward):
    scorer = videoreward["scorer"]
    clips = decoded_frames(2, (64, 96), seed=9, t=20)  # resized up to >= 128 * 28 * 28 pixels
    batched = scorer.score_clips(clips, PROMPT_TEXT, fps=16)
    singles = [scorer.score_clips(c[None], PROMPT_TEXT, fps=16) for c in clips]
    torch.testing.assert_close(batched.overall, torch.cat([s.overall for s in singles]), atol=1e-5, rtol=1e-5)
    assert torch.equal(batched.overall, scorer.score_clips(clips, PROMPT_TEXT, fps=16).overall)


def test_videoreward_adapter_layout_equals_model_pth(videoreward, tmp_path):
    """adapter_model.safetensors + non_lora_state_dict.pth + the base model's own weights."""
    folder = tmp_path / "VideoReward"
    shutil.copytree(videoreward["folder"], folder)
    base_dir = tmp_path / "base"
    shutil.copytree(videoreward["base_dir"], base_dir)
    step = folder / "checkpoint-12"
    (step / "model.pth").unlink()
    peft_model = videoreward["peft"]
    save_file(old_layout(get_peft_model_state_dict(peft_model)), step / "adapter_model.safetensors")
    full = old_layout(peft_model.state_dict())
    trained = ("base_model.model.model.embed_tokens.", "base_model.model.visual.", "base_model.model.rm_head.")
    torch.save({k: v for k, v in full.items() if k.startswith(trained)}, step / "non_lora_state_dict.pth")
    hub = {  # the hub's Qwen2-VL-2B weights: flat keys, no LM head (tied), no reward parts
        k.removeprefix("base_model.model.").replace(".base_layer.", "."): v
        for k, v in full.items()
        if "lora_" not in k and not k.endswith(("lm_head.weight", "rm_head.weight"))
    }
    save_file(hub, base_dir / "model.safetensors")
    scorer = VideoRewardScorer.from_folder(folder, "cpu", F32, base_dir=base_dir)
    clips = decoded_frames(1, VIDEO_HW, seed=10, t=16)
    torch.testing.assert_close(
        scorer.raw_scores(clips, PROMPT_TEXT, 16), videoreward["scorer"].raw_scores(clips, PROMPT_TEXT, 16)
    )


@pytest.mark.parametrize(
    ("total", "fps", "sampling", "expected"),
    [
        (16, 16, ClipSampling(), [0, 5, 10, 15]),  # 1 s -> 2 frames, raised to 4
        (117, 16, ClipSampling(), torch.linspace(0, 116, 14).round().long().tolist()),  # 7.3 s -> 14.6 -> 14
        (3, 16, ClipSampling(), [0, 2]),  # fewer frames than 4: the even count that fits
        (40, 16, ClipSampling(num_frames=7), torch.linspace(0, 39, 8).round().long().tolist()),  # round(3.5) * 2
    ],
)
def test_frame_sampling(total, fps, sampling, expected):
    assert sampling.frame_indices(total, fps).tolist() == expected


# ------------------------------------------------------------------------------------------------
# Errors: one line, naming the file and the fix


def raises_one_line(match: str, call) -> str:
    with pytest.raises(WeightsError, match=match) as info:
        call()
    message = str(info.value)
    assert "\n" not in message and "streamt1 download" in message, message
    return message


def test_hpsv3_errors(hpsv3, tmp_path):
    processor = hpsv3["processor"]
    missing = tmp_path / "HPSv3.safetensors"
    assert str(missing) in raises_one_line("missing", lambda: HPSv3Scorer.from_files(missing, processor, "cpu", F32))
    raises_one_line("missing", lambda: HPSv3Scorer.from_files(hpsv3["checkpoint"], tmp_path / "none", "cpu", F32))
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(hpsv3["checkpoint"].read_bytes()[:5000])
    raises_one_line("truncated or corrupt", lambda: HPSv3Scorer.from_files(truncated, processor, "cpu", F32))
    foreign = tmp_path / "foreign.safetensors"
    save_file({"blocks.0.attn.q.weight": torch.zeros(2, 2)}, foreign)
    raises_one_line("does not hold Qwen2-VL", lambda: HPSv3Scorer.from_files(foreign, processor, "cpu", F32))
    no_head = tmp_path / "no_head.safetensors"
    save_file(old_layout(hpsv3["net"].state_dict()) | {"rm_head.weight": torch.zeros(1, 32)}, no_head)
    raises_one_line("does not hold HPSv3 head", lambda: HPSv3Scorer.from_files(no_head, processor, "cpu", F32))


def test_videoreward_errors(tmp_path):
    made = videoreward_folder(tmp_path / "v", 1)
    folder, step = made["folder"], made["folder"] / "checkpoint-12"
    load = lambda: VideoRewardScorer.from_folder(folder, "cpu", F32)  # noqa: E731
    raises_one_line("missing", lambda: VideoRewardScorer.from_folder(folder, "cpu", F32, base_dir=tmp_path / "x"))
    pth = (step / "model.pth").read_bytes()
    (step / "model.pth").write_bytes(pth[: len(pth) // 2])
    raises_one_line("truncated or corrupt", load)
    torch.save({"blocks.0.weight": torch.zeros(2)}, step / "model.pth")
    raises_one_line("does not hold Qwen2-VL", load)
    (step / "model.pth").unlink()
    assert "adapter_model.safetensors" in raises_one_line("missing", load)
    for old in folder.glob("checkpoint-*"):
        shutil.rmtree(old)
    assert "checkpoint-*" in raises_one_line("missing", load)
    (folder / "model_config.json").unlink()
    assert "model_config.json" in raises_one_line("missing", load)


def test_tokenizer_of_another_vocabulary(hpsv3, tmp_path):
    """Processor / tokenizer files whose vocabulary is not the one the reward model was trained
    with: the error names both sizes and the tokenizer folder, not the (intact) checkpoint."""
    model_dir = tmp_path / "models"
    processor = model_dir / "Qwen2-VL-7B-Instruct"
    write_base_folder(processor, ["<|extra|>"], tie=False, template_in_tokenizer=False)  # one token more
    rows = len(hpsv3["tok"])
    message = raises_one_line("tokenizer", lambda: HPSv3Scorer.from_files(hpsv3["checkpoint"], processor, "cpu", F32))
    assert f"{processor} has {rows + 1} tokens" in message and f"holds {rows} token embeddings" in message, message
    assert str(hpsv3["checkpoint"]) in message and f"--model-dir {model_dir}" in message, message
    assert "does not hold" not in message and "other sizes" not in message, message  # not blamed on the file

    made = videoreward_folder(tmp_path / "v", 1)
    tokenizer_dir = made["folder"] / "checkpoint-12" / "tokenizer"
    shutil.rmtree(tokenizer_dir)
    save_tokenizer(tokenizer_dir, [*SPECIAL_TOKENS, "<|extra|>"], template_in_tokenizer=True)  # one token more
    message = raises_one_line("tokenizer", lambda: VideoRewardScorer.from_folder(made["folder"], "cpu", F32))
    rows = len(made["tok"])
    assert f"{tokenizer_dir} has {rows + 1} tokens" in message and f"holds {rows} token embeddings" in message
    assert "does not hold" not in message and "other sizes" not in message, message
