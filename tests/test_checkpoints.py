"""Real-weight loaders on tiny models written in every published layout, with the real file and key
names. The Wan-layout key names come from tables in tests/wan_layout.py (inverting diffusers'
naming), so a loader bug cannot hide behind a shared mapping."""

from __future__ import annotations

import fnmatch
import json
import math
import shutil
from pathlib import Path

import pytest
import torch
from diffusers import AutoencoderKLWan, WanTransformer3DModel
from torch import nn
from transformers import UMT5Config, UMT5EncoderModel

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
from tests.wan_layout import TINY_WAN, wan_transformer_state, word_tokenizer, write_original

PRESET = TINY_WAN
F32 = torch.float32

# ------------------------------------------------------------------------------------------------
# Tiny models and model dirs


def randomized(model: nn.Module, seed: int) -> nn.Module:
    """Random values everywhere (zero-initialised tables included) so a swapped key shows."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    return model.eval()


@pytest.fixture(scope="module")
def tiny():
    return {
        "transformer": randomized(WanTransformer3DModel(**PRESET.transformer), 1),
        "vae": randomized(AutoencoderKLWan(**PRESET.vae), 2),
        "t5": randomized(UMT5EncoderModel(UMT5Config(**PRESET.text_encoder)), 3),
        "tokenizer": word_tokenizer(),
    }


def write_tiny_original(root: Path, tiny: dict) -> Path:
    return write_original(root, PRESET, tiny["transformer"], tiny["t5"], tiny["vae"], tiny["tokenizer"])


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
    write_tiny_original(root, tiny)
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
