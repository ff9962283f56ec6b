"""Real-weight loaders on tiny models written in every published layout, with the real file and key
names. The Wan-layout key names come from tables defined HERE (inverting diffusers' naming), so a
loader bug cannot hide behind a shared mapping."""

from __future__ import annotations

import dataclasses
import fnmatch
import json
import math
import re
import shutil
from pathlib import Path

import pytest
import torch
from diffusers import AutoencoderKLWan, WanTransformer3DModel
from safetensors.torch import save_file
from tokenizers import Tokenizer, models, pre_tokenizers
from torch import nn
from transformers import PreTrainedTokenizerFast, UMT5Config, UMT5EncoderModel

from engine.errors import StreamT1Error, WeightsError
from engine.model_files import download_plan
from engine.models.checkpoints import (
    load_longlive_models,
    load_longlive_transformer,
    load_umt5,
    load_wan_transformer,
    load_wan_vae,
)
from engine.models.lora import lora_pairs, merge_lora
from engine.models.presets import TINY

# diffusers' Wan converter (and Wan2.1 itself) lays the decoder out with 3 resnets + 1 upsampler per
# stage, i.e. num_res_blocks=2; the tiny preset's 1 would not round-trip through the Wan layout.
PRESET = dataclasses.replace(TINY, vae={**TINY.vae, "num_res_blocks": 2})
F32 = torch.float32

# ------------------------------------------------------------------------------------------------
# diffusers / transformers names -> original Wan names (defined independently of the loader)

_WAN_TRANSFORMER = [
    (r"condition_embedder\.time_embedder\.linear_([12])\.", lambda m: f"time_embedding.{2 * int(m[1]) - 2}."),
    (r"condition_embedder\.text_embedder\.linear_([12])\.", lambda m: f"text_embedding.{2 * int(m[1]) - 2}."),
    (r"condition_embedder\.time_proj\.", lambda m: "time_projection.1."),
    (r"blocks\.(\d+)\.attn([12])\.to_out\.0\.", lambda m: f"blocks.{m[1]}.{_ATTN[m[2]]}.o."),
    (r"blocks\.(\d+)\.attn([12])\.to_([qkv])\.", lambda m: f"blocks.{m[1]}.{_ATTN[m[2]]}.{m[3]}."),
    (r"blocks\.(\d+)\.attn([12])\.norm_([qk])\.", lambda m: f"blocks.{m[1]}.{_ATTN[m[2]]}.norm_{m[3]}."),
    (r"blocks\.(\d+)\.norm2\.", lambda m: f"blocks.{m[1]}.norm3."),  # the cross-attention norm
    (r"blocks\.(\d+)\.ffn\.net\.0\.proj\.", lambda m: f"blocks.{m[1]}.ffn.0."),
    (r"blocks\.(\d+)\.ffn\.net\.2\.", lambda m: f"blocks.{m[1]}.ffn.2."),
    (r"blocks\.(\d+)\.scale_shift_table", lambda m: f"blocks.{m[1]}.modulation"),
    (r"scale_shift_table", lambda m: "head.modulation"),
    (r"proj_out\.", lambda m: "head.head."),
    (r"patch_embedding\.", lambda m: "patch_embedding."),
]
_ATTN = {"1": "self_attn", "2": "cross_attn"}

_WAN_T5 = [
    (r"shared\.weight", lambda m: "token_embedding.weight"),
    (r"encoder\.final_layer_norm\.", lambda m: "norm."),
    (r"encoder\.block\.(\d+)\.layer\.0\.layer_norm\.", lambda m: f"blocks.{m[1]}.norm1."),
    (r"encoder\.block\.(\d+)\.layer\.0\.SelfAttention\.([qkvo])\.", lambda m: f"blocks.{m[1]}.attn.{m[2]}."),
    (
        r"encoder\.block\.(\d+)\.layer\.0\.SelfAttention\.relative_attention_bias\.",
        lambda m: f"blocks.{m[1]}.pos_embedding.embedding.",
    ),
    (r"encoder\.block\.(\d+)\.layer\.1\.layer_norm\.", lambda m: f"blocks.{m[1]}.norm2."),
    (r"encoder\.block\.(\d+)\.layer\.1\.DenseReluDense\.wi_0\.", lambda m: f"blocks.{m[1]}.ffn.gate.0."),
    (r"encoder\.block\.(\d+)\.layer\.1\.DenseReluDense\.wi_1\.", lambda m: f"blocks.{m[1]}.ffn.fc1."),
    (r"encoder\.block\.(\d+)\.layer\.1\.DenseReluDense\.wo\.", lambda m: f"blocks.{m[1]}.ffn.fc2."),
]

_STAGE = 4  # Wan decoder stage: num_res_blocks + 1 = 3 resnets, then one upsampler
_WAN_VAE_PREFIX = [  # (pattern, Wan prefix, is a residual block)
    (r"(encoder|decoder)\.conv_in\.", lambda m: f"{m[1]}.conv1.", False),
    (r"quant_conv\.", lambda m: "conv1.", False),
    (r"post_quant_conv\.", lambda m: "conv2.", False),
    (r"(encoder|decoder)\.mid_block\.resnets\.([01])\.", lambda m: f"{m[1]}.middle.{2 * int(m[2])}.", True),
    (r"(encoder|decoder)\.mid_block\.attentions\.0\.", lambda m: f"{m[1]}.middle.1.", False),
    (r"(encoder|decoder)\.norm_out\.", lambda m: f"{m[1]}.head.0.", False),
    (r"(encoder|decoder)\.conv_out\.", lambda m: f"{m[1]}.head.2.", False),
    (r"encoder\.down_blocks\.(\d+)\.", lambda m: f"encoder.downsamples.{m[1]}.", True),
    (
        r"decoder\.up_blocks\.(\d+)\.resnets\.(\d+)\.",
        lambda m: f"decoder.upsamples.{_STAGE * int(m[1]) + int(m[2])}.",
        True,
    ),
    (r"decoder\.up_blocks\.(\d+)\.upsamplers\.0\.", lambda m: f"decoder.upsamples.{_STAGE * int(m[1]) + 3}.", False),
]
_WAN_RESIDUAL = {
    "norm1.": "residual.0.",
    "conv1.": "residual.2.",
    "norm2.": "residual.3.",
    "conv2.": "residual.6.",
    "conv_shortcut.": "shortcut.",
}


def _rename(key: str, rules) -> str:
    for pattern, repl in rules:
        m = re.match(pattern, key)
        if m:
            return repl(m) + key[m.end() :]
    raise AssertionError(f"no Wan name for {key}")


def _wan_vae_key(key: str) -> str:
    for pattern, repl, residual in _WAN_VAE_PREFIX:
        m = re.match(pattern, key)
        if m:
            rest = key[m.end() :]
            if residual:
                rest = next(
                    (new + rest[len(old) :] for old, new in _WAN_RESIDUAL.items() if rest.startswith(old)), rest
                )
            return repl(m) + rest
    raise AssertionError(f"no Wan name for {key}")


def wan_transformer_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {_rename(k, _WAN_TRANSFORMER): v.clone() for k, v in model.state_dict().items()}


def wan_t5_state(model: nn.Module) -> dict[str, torch.Tensor]:
    sd = model.state_dict()
    return {_rename(k, _WAN_T5): v.clone() for k, v in sd.items() if k != "encoder.embed_tokens.weight"}


def wan_vae_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {_wan_vae_key(k): v.clone() for k, v in model.state_dict().items()}


# ------------------------------------------------------------------------------------------------
# Tiny models and model dirs


def _randomize(model: nn.Module, seed: int) -> nn.Module:
    """Random values everywhere (zero-initialised tables included) so a swapped key shows."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    return model.eval()


def _tokenizer() -> PreTrainedTokenizerFast:
    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2} | {w: i + 3 for i, w in enumerate("a cat walks on the moon".split())}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")


def _wan_config() -> dict:
    t = PRESET.transformer
    return {
        "_class_name": "WanModel",
        "_diffusers_version": "0.30.0",
        "model_type": "t2v",
        "dim": t["num_attention_heads"] * t["attention_head_dim"],
        "ffn_dim": t["ffn_dim"],
        "freq_dim": t["freq_dim"],
        "in_dim": t["in_channels"],
        "out_dim": t["out_channels"],
        "num_heads": t["num_attention_heads"],
        "num_layers": t["num_layers"],
        "text_len": PRESET.text_len,
        "eps": t["eps"],
        "text_dim": t["text_dim"],  # real Wan configs omit it (WanModel's default is 4096)
    }


@pytest.fixture(scope="module")
def tiny():
    return {
        "transformer": _randomize(WanTransformer3DModel(**PRESET.transformer), 1),
        "vae": _randomize(AutoencoderKLWan(**PRESET.vae), 2),
        "t5": _randomize(UMT5EncoderModel(UMT5Config(**PRESET.text_encoder)), 3),
        "tokenizer": _tokenizer(),
    }


def write_original(root: Path, tiny: dict) -> Path:
    wan = root / "Wan2.1-T2V-1.3B"
    (wan / "google").mkdir(parents=True)
    (wan / "config.json").write_text(json.dumps(_wan_config()))
    save_file(wan_transformer_state(tiny["transformer"]), wan / "diffusion_pytorch_model.safetensors")
    torch.save(wan_t5_state(tiny["t5"]), wan / "models_t5_umt5-xxl-enc-bf16.pth")
    tiny["tokenizer"].save_pretrained(wan / "google" / "umt5-xxl")
    torch.save(wan_vae_state(tiny["vae"]), wan / "Wan2.1_VAE.pth")
    return wan


def write_diffusers(root: Path, tiny: dict, shard: bool = False) -> Path:
    wan = root / "Wan2.1-T2V-1.3B-Diffusers"
    tiny["transformer"].save_pretrained(wan / "transformer", max_shard_size="20KB" if shard else "10GB")
    tiny["vae"].save_pretrained(wan / "vae")
    tiny["t5"].save_pretrained(wan / "text_encoder")
    tiny["tokenizer"].save_pretrained(wan / "tokenizer")
    return wan


@pytest.fixture(scope="module")
def original_dir(tiny, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("original")
    write_original(root, tiny)
    return root


@pytest.fixture(scope="module")
def diffusers_dir(tiny, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("diffusers")
    write_diffusers(root, tiny)
    return root


def assert_same_weights(a: nn.Module, b: nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert sa[k].dtype == sb[k].dtype and torch.equal(sa[k], sb[k]), k


def transformer_out(model: WanTransformer3DModel) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 16, 2, 4, 4, generator=g)
    text = torch.randn(1, 6, PRESET.transformer["text_dim"], generator=g)
    with torch.no_grad():
        return model(hidden_states=x, timestep=torch.tensor([500]), encoder_hidden_states=text, return_dict=False)[0]


def vae_out(vae: AutoencoderKLWan) -> torch.Tensor:
    with torch.no_grad():
        return vae.decode(torch.randn(1, 16, 2, 4, 4, generator=torch.Generator().manual_seed(0))).sample


def t5_out(t5: UMT5EncoderModel, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return t5(input_ids=ids).last_hidden_state


# ------------------------------------------------------------------------------------------------
# Every layout loads to the same weights and outputs


def test_transformer_layouts_agree(tiny, original_dir, diffusers_dir, tmp_path):
    sharded = write_diffusers(tmp_path, tiny, shard=True) / "transformer"
    assert (sharded / "diffusion_pytorch_model.safetensors.index.json").exists()
    loaded = [
        load_wan_transformer(original_dir / "Wan2.1-T2V-1.3B", F32),
        load_wan_transformer(diffusers_dir / "Wan2.1-T2V-1.3B-Diffusers" / "transformer", F32),
        load_wan_transformer(sharded, F32),
    ]
    reference = transformer_out(tiny["transformer"])
    for model in loaded:
        assert_same_weights(model, tiny["transformer"])
        assert torch.equal(transformer_out(model), reference)


def test_transformer_dtype(diffusers_dir):
    model = load_wan_transformer(diffusers_dir / "Wan2.1-T2V-1.3B-Diffusers" / "transformer", torch.bfloat16)
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    assert model.rope.freqs_cos.dtype == torch.float32  # RoPE tables are not cast
    assert not model.training and not any(p.requires_grad for p in model.parameters())


def test_vae_layouts_agree(tiny, original_dir, diffusers_dir):
    reference = vae_out(tiny["vae"])
    for path in (
        original_dir / "Wan2.1-T2V-1.3B" / "Wan2.1_VAE.pth",
        diffusers_dir / "Wan2.1-T2V-1.3B-Diffusers" / "vae",
    ):
        vae = load_wan_vae(path, F32, PRESET.vae)
        assert_same_weights(vae, tiny["vae"])
        assert torch.equal(vae_out(vae), reference)


def test_umt5_layouts_agree(tiny, original_dir, diffusers_dir):
    ids = tiny["tokenizer"]("a cat walks on the moon", return_tensors="pt").input_ids
    reference = t5_out(tiny["t5"], ids)
    for path in (
        original_dir / "Wan2.1-T2V-1.3B" / "models_t5_umt5-xxl-enc-bf16.pth",
        diffusers_dir / "Wan2.1-T2V-1.3B-Diffusers" / "text_encoder",
    ):
        tokenizer, t5 = load_umt5(path, F32, PRESET.text_encoder)
        assert torch.equal(tokenizer("a cat walks on the moon", return_tensors="pt").input_ids, ids)
        assert_same_weights(t5, tiny["t5"])
        assert t5.encoder.embed_tokens is t5.shared
        assert torch.equal(t5_out(t5, ids), reference)


def _wan_t5_encode(sd: dict[str, torch.Tensor], ids: torch.Tensor, heads: int, buckets: int) -> torch.Tensor:
    """Wan's T5 encoder forward (wan/modules/t5.py: gated tanh-GELU FFN, per-layer bidirectional
    relative position buckets with max distance 128), written from its description."""

    def norm(x, w):
        return w * x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6)

    def gelu(x):
        return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))

    n = ids.shape[1]
    rel = torch.arange(n)[None, :] - torch.arange(n)[:, None]
    half, exact = buckets // 2, buckets // 4
    large = exact + (torch.log(rel.abs().float() / exact) / math.log(128 / exact) * (half - exact)).long()
    bucket = (rel > 0).long() * half + torch.where(rel.abs() < exact, rel.abs(), large.clamp(max=half - 1))
    x = sd["token_embedding.weight"][ids]
    layers = len({k.split(".")[1] for k in sd if k.startswith("blocks.")})
    for i in range(layers):
        w = {k.removeprefix(f"blocks.{i}."): v for k, v in sd.items() if k.startswith(f"blocks.{i}.")}
        h = norm(x, w["norm1.weight"])
        q, k, v = ((h @ w[f"attn.{c}.weight"].T).unflatten(-1, (heads, -1)) for c in "qkv")
        bias = w["pos_embedding.embedding.weight"][bucket].permute(2, 0, 1)[None]
        attn = (torch.einsum("binc,bjnc->bnij", q, k) + bias).softmax(-1)
        x = x + torch.einsum("bnij,bjnc->binc", attn, v).flatten(2) @ w["attn.o.weight"].T
        h = norm(x, w["norm2.weight"])
        x = x + ((h @ w["ffn.fc1.weight"].T) * gelu(h @ w["ffn.gate.0.weight"].T)) @ w["ffn.fc2.weight"].T
    return norm(x, sd["norm.weight"])


def test_umt5_from_wan_matches_wan_forward(tiny, original_dir):
    """The Wan -> UMT5 renaming keeps the meaning (gate vs fc1, relative position buckets)."""
    pth = original_dir / "Wan2.1-T2V-1.3B" / "models_t5_umt5-xxl-enc-bf16.pth"
    _, t5 = load_umt5(pth, F32, PRESET.text_encoder)
    ids = torch.randint(0, PRESET.text_encoder["vocab_size"], (2, 40), generator=torch.Generator().manual_seed(0))
    cfg = PRESET.text_encoder
    expected = _wan_t5_encode(torch.load(pth), ids, cfg["num_heads"], cfg["relative_attention_num_buckets"])
    torch.testing.assert_close(t5_out(t5, ids), expected, rtol=1e-5, atol=1e-5)


def test_model_dir_layouts_agree(tiny, original_dir, diffusers_dir):
    a = load_longlive_models(original_dir, F32, PRESET)
    b = load_longlive_models(diffusers_dir, F32, PRESET)
    assert (a.layout, b.layout) == ("original", "diffusers")
    for name in ("transformer", "vae", "text_encoder"):
        assert_same_weights(getattr(a, name), getattr(b, name))
        assert_same_weights(getattr(a, name), tiny[{"text_encoder": "t5"}.get(name, name)])
    assert a.files["vae"].name == "Wan2.1_VAE.pth"


# ------------------------------------------------------------------------------------------------
# LongLive generator + LoRA


def test_merge_lora_hand_built():
    w = torch.arange(6.0).view(2, 3)
    a = torch.tensor([[1.0, 0.0, 2.0]])  # r = 1
    b = torch.tensor([[1.0], [-1.0]])
    lora = {"lin.lora_A.weight": a, "lin.lora_B.weight": b}
    merged = merge_lora({"lin.weight": w, "lin.bias": torch.ones(2)}, lora, alpha=2.0)
    assert torch.equal(merged["lin.weight"], torch.tensor([[2.0, 1.0, 6.0], [1.0, 4.0, 1.0]]))
    assert torch.equal(merged["lin.bias"], torch.ones(2))


@pytest.mark.parametrize(
    "key",
    [
        "base_model.model.blocks.0.self_attn.q.lora_A.weight",  # peft get_peft_model_state_dict
        "blocks.0.self_attn.q.lora_A.weight",
        "base_model.model.blocks.0.self_attn.q.lora_A.default.weight",  # raw PeftModel.state_dict()
        "base_model.model.model.blocks.0.self_attn.q.lora_A.weight",  # LoRA around LongLive's wrapper
        "base_model.model._fsdp_wrapped_module.blocks.0.self_attn.q.lora_A.weight",
    ],
)
def test_lora_key_variants(key):
    a, b = torch.ones(2, 3), torch.ones(4, 2)
    assert lora_pairs({key: a, key.replace("lora_A", "lora_B"): b}) == {"blocks.0.self_attn.q": (a, b)}


class _WanLoraTargets(nn.Module):
    """The Linear layers LongLive's LoRA wraps, under Wan's module names."""

    def __init__(self, wan: dict[str, torch.Tensor], layers: int):
        super().__init__()
        self.blocks = nn.ModuleList()
        for i in range(layers):
            block = nn.Module()
            for attn in ("self_attn", "cross_attn"):
                mod = nn.Module()
                for c in "qkvo":
                    w = wan[f"blocks.{i}.{attn}.{c}.weight"]
                    setattr(mod, c, nn.Linear(w.shape[1], w.shape[0]))
                setattr(block, attn, mod)
            w0, w2 = wan[f"blocks.{i}.ffn.0.weight"], wan[f"blocks.{i}.ffn.2.weight"]
            block.ffn = nn.Sequential(
                nn.Linear(w0.shape[1], w0.shape[0]), nn.GELU("tanh"), nn.Linear(w2.shape[1], w2.shape[0])
            )
            self.blocks.append(block)
        self.load_state_dict({k: v for k, v in wan.items() if k in self.state_dict()})


def _longlive_files(tiny, root: Path, rank: int, alpha: float) -> tuple[Path, Path, dict[str, torch.Tensor]]:
    """longlive_base.pt and lora.pt as LongLive writes them; returns the expected merged Wan weights."""
    peft = pytest.importorskip("peft")  # writes the LoRA exactly as LongLive does
    wan = wan_transformer_state(tiny["transformer"])
    ema = {k: v + 1 for k, v in wan.items()}  # must NOT be picked: LongLive's inference loads "generator"
    (root / "LongLive" / "models").mkdir(parents=True)
    base = root / "LongLive" / "models" / "longlive_base.pt"
    generator = {f"model.{k}": v for k, v in wan.items()}
    generator_ema = {f"model.{k}": v for k, v in ema.items()}
    critic = {"x": torch.zeros(1)}
    torch.save({"generator": generator, "generator_ema": generator_ema, "critic": critic, "step": 3}, base)
    targets = _WanLoraTargets(wan, PRESET.transformer["num_layers"])
    names = [n for n, m in targets.named_modules() if isinstance(m, nn.Linear)]
    lora_model = peft.get_peft_model(targets, peft.LoraConfig(r=rank, lora_alpha=alpha, target_modules=names))
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for n, p in lora_model.named_parameters():
            if "lora_" in n:
                p.copy_(torch.randn(p.shape, generator=g))
    lora_sd = peft.get_peft_model_state_dict(lora_model)
    assert "base_model.model.blocks.0.self_attn.q.lora_A.weight" in lora_sd
    lora = root / "LongLive" / "models" / "lora.pt"
    torch.save({"generator_lora": lora_sd, "critic_lora": {}, "step": 3}, lora)
    merged = lora_model.merge_and_unload().state_dict()
    return base, lora, wan | merged


def test_longlive_generator_and_lora(tiny, tmp_path):
    base, lora, expected = _longlive_files(tiny, tmp_path, rank=4, alpha=8.0)
    plain = load_longlive_transformer(base, None, PRESET.transformer, F32)
    assert_same_weights(plain, tiny["transformer"])  # "generator", not "generator_ema"
    merged = load_longlive_transformer(base, lora, PRESET.transformer, F32, lora_alpha=8.0)
    got = wan_transformer_state(merged)
    assert got.keys() == expected.keys()
    for k in got:
        torch.testing.assert_close(got[k], expected[k], rtol=1e-6, atol=1e-6, msg=k)
    base_weight = wan_transformer_state(tiny["transformer"])["blocks.1.ffn.2.weight"]
    assert not torch.equal(got["blocks.1.ffn.2.weight"], base_weight)  # the LoRA did change it


def test_model_dir_with_longlive(tiny, tmp_path, original_dir):
    shutil.copytree(original_dir, tmp_path, dirs_exist_ok=True)
    (tmp_path / "Wan2.1-T2V-1.3B" / "diffusion_pytorch_model.safetensors").unlink()  # not needed then
    base, lora, _ = _longlive_files(tiny, tmp_path, rank=4, alpha=256.0)
    loaded = load_longlive_models(tmp_path, F32, PRESET)
    assert (loaded.files["transformer"], loaded.files["lora"]) == (base, lora)
    direct = load_longlive_transformer(base, lora, PRESET.transformer, F32)
    assert_same_weights(loaded.transformer, direct)


# ------------------------------------------------------------------------------------------------
# Failures: one line naming the file


def _one_line_error(call, *names: object) -> str:
    with pytest.raises(WeightsError) as info:
        call()
    message = str(info.value)
    assert "\n" not in message
    for name in names:
        assert str(name) in message, message
    return message


def test_missing_file(original_dir, tmp_path):
    shutil.copytree(original_dir, tmp_path, dirs_exist_ok=True)
    vae = tmp_path / "Wan2.1-T2V-1.3B" / "Wan2.1_VAE.pth"
    vae.unlink()
    fix = f"streamt1 download --model-dir {tmp_path}"
    _one_line_error(lambda: load_longlive_models(tmp_path, F32, PRESET), vae, fix)
    _one_line_error(lambda: load_longlive_models(tmp_path / "nowhere", F32, PRESET), tmp_path / "nowhere")


def test_lora_without_base(original_dir, tmp_path):
    shutil.copytree(original_dir, tmp_path, dirs_exist_ok=True)
    lora = tmp_path / "LongLive" / "models" / "lora.pt"
    lora.parent.mkdir(parents=True)
    torch.save({}, lora)
    _one_line_error(lambda: load_longlive_models(tmp_path, F32, PRESET), lora, "longlive_base.pt")


def test_truncated_files(diffusers_dir, original_dir, tmp_path):
    shutil.copytree(diffusers_dir, tmp_path / "d")
    weights = tmp_path / "d" / "Wan2.1-T2V-1.3B-Diffusers" / "transformer" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    _one_line_error(lambda: load_wan_transformer(weights.parent, F32), weights, "truncated")
    shutil.copytree(original_dir, tmp_path / "o")
    pth = tmp_path / "o" / "Wan2.1-T2V-1.3B" / "models_t5_umt5-xxl-enc-bf16.pth"
    pth.write_bytes(pth.read_bytes()[:1000])
    _one_line_error(lambda: load_umt5(pth, F32, PRESET.text_encoder), pth, "truncated")


def test_foreign_files(diffusers_dir, original_dir, tmp_path):
    shutil.copytree(diffusers_dir, tmp_path / "d")
    wan = tmp_path / "d" / "Wan2.1-T2V-1.3B-Diffusers"
    weights = wan / "transformer" / "diffusion_pytorch_model.safetensors"
    shutil.copy(wan / "vae" / "diffusion_pytorch_model.safetensors", weights)  # a VAE where a transformer belongs
    message = _one_line_error(
        lambda: load_wan_transformer(weights.parent, F32), weights, "missing keys", "unexpected keys"
    )
    assert "patch_embedding.weight" in message or "blocks.0" in message
    vae_pth = original_dir / "Wan2.1-T2V-1.3B" / "Wan2.1_VAE.pth"
    base = tmp_path / "longlive_base.pt"
    shutil.copy(vae_pth, base)  # a bare VAE state dict where LongLive's generator belongs
    _one_line_error(lambda: load_longlive_transformer(base, None, PRESET.transformer, F32), base, "Wan transformer")
    torch.save({"optimizer": {"lr": torch.tensor(1.0)}}, base)
    _one_line_error(lambda: load_longlive_transformer(base, None, PRESET.transformer, F32), base, "generator")


def test_wrong_shapes(tmp_path):
    bigger = WanTransformer3DModel(**{**PRESET.transformer, "ffn_dim": 40})
    folder = tmp_path / "transformer"
    bigger.save_pretrained(folder)
    config = json.loads((folder / "config.json").read_text()) | {"ffn_dim": PRESET.transformer["ffn_dim"]}
    (folder / "config.json").write_text(json.dumps(config))
    _one_line_error(lambda: load_wan_transformer(folder, F32), folder / "diffusion_pytorch_model.safetensors", "ffn")


# ------------------------------------------------------------------------------------------------
# Download plan (no network)


def test_download_plan_matches_loader_layout(tmp_path):
    needed = {
        "original": [
            "config.json",
            "diffusion_pytorch_model.safetensors",
            "models_t5_umt5-xxl-enc-bf16.pth",
            "google/umt5-xxl/tokenizer.json",
            "Wan2.1_VAE.pth",
        ],
        "diffusers": [
            "transformer/config.json",
            "transformer/diffusion_pytorch_model.safetensors",
            "text_encoder/model.safetensors",
            "tokenizer/tokenizer.json",
            "vae/config.json",
        ],
    }
    for layout, repo, folder in (
        ("original", "Wan-AI/Wan2.1-T2V-1.3B", "Wan2.1-T2V-1.3B"),
        ("diffusers", "Wan-AI/Wan2.1-T2V-1.3B-Diffusers", "Wan2.1-T2V-1.3B-Diffusers"),
    ):
        wan, longlive = download_plan(tmp_path, layout)[:2]
        assert (wan.repo_id, wan.local_dir, wan.exact) == (repo, tmp_path / folder, False)
        for name in needed[layout]:
            assert any(fnmatch.fnmatch(name, p) for p in wan.files), name
        assert longlive.repo_id == "Efficient-Large-Model/LongLive" and longlive.exact
        assert [longlive.local_dir / f for f in longlive.files] == [
            tmp_path / "LongLive" / "models" / "longlive_base.pt",
            tmp_path / "LongLive" / "models" / "lora.pt",
        ]
    with pytest.raises(StreamT1Error):
        download_plan(tmp_path, "gguf")
