"""`--fp8`: which layers it quantizes, the row-scaled quantization against hand-computed values, the
FP8 layer against the float layer it replaces, and that a quantized block still compiles as one
graph. The CPU runs the same `torch._scaled_mm` the GPU does (slowly), so all of it is checked here;
only the speed needs an FP8 GPU."""

from __future__ import annotations

import pytest
import torch
from diffusers import WanTransformer3DModel
from torch import nn

from engine.errors import StreamT1Error
from engine.fp8 import E4M3, Fp8Linear, check_fp8, quantize_fp8, rowwise_fp8, takes_fp8
from engine.models.presets import TINY
from tests.test_vision_attention import tiny_tower

# A tiny Wan whose every block Linear has sizes the FP8 matmul takes (multiples of 16).
FP8_WAN = {**TINY.transformer, "attention_head_dim": 16, "ffn_dim": 64}
LINEARS_PER_WAN_BLOCK = 10  # q, k, v, out of self- and cross-attention, and the two feed-forward layers


def test_only_the_linear_layers_of_repeated_blocks_of_fp8_sizes_are_chosen():
    net = nn.Module()
    net.blocks = nn.ModuleList([nn.Sequential(nn.Linear(32, 64), nn.LayerNorm(64), nn.Linear(64, 24))])
    net.language_model = nn.Module()
    net.language_model.layers = nn.ModuleList([nn.Linear(16, 16)])
    net.head = nn.Linear(32, 32)  # outside the blocks: stays in the compute dtype
    net.blocksy = nn.Linear(32, 32)  # a name that merely starts like "blocks"
    chosen = [name for name, module in net.named_modules() if takes_fp8(module, name)]
    assert chosen == ["blocks.0.0", "language_model.layers.0"]  # blocks.0.2 is 64 -> 24: not a multiple of 16


def test_fp8_is_refused_on_the_cpu_in_one_line():
    with pytest.raises(StreamT1Error, match="--fp8 needs a CUDA GPU with FP8 tensor cores") as err:
        check_fp8(torch.device("cpu"))
    assert "\n" not in str(err.value)


def test_rowwise_quantization_against_hand_computed_values():
    rows = torch.tensor([[1.0, -2.0, 0.5, 4.0], [0.0, 0.0, 0.0, 0.0], [448.0, 100.0, -3.0, 0.0]])
    values, scale = rowwise_fp8(rows)
    assert values.dtype == E4M3 and scale.dtype == torch.float32 and scale.shape == (3, 1)
    # row 0: amax 4 -> scale 4/448; every entry times 112 is exact in e4m3
    assert scale[0, 0].item() == pytest.approx(4 / 448)
    assert values[0].float().tolist() == [112.0, -224.0, 56.0, 448.0]
    # row 1: all zeros keeps a finite scale and stays zero
    assert torch.isfinite(scale[1]).all() and values[1].float().tolist() == [0.0] * 4
    # row 2: scale 1; 100 lies between e4m3's neighbours 96 and 104 at the tie, and rounds to even (96)
    assert scale[2, 0].item() == 1.0
    assert values[2].float().tolist() == [448.0, 96.0, -3.0, 0.0]


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_fp8_linear_is_the_dequantized_matmul_and_close_to_the_float_layer(bias, dtype):
    torch.manual_seed(0)
    linear = nn.Linear(64, 32, bias=bias).to(dtype)
    x = torch.randn(2, 5, 64, dtype=dtype)
    layer = Fp8Linear(linear)
    with torch.no_grad():
        got = layer(x)
        exact = linear(x)
    assert got.shape == (2, 5, 32) and got.dtype == dtype
    # the same numbers as dequantizing both operands and multiplying in fp32 (up to the bf16 result)
    x_values, x_scale = rowwise_fp8(x.reshape(-1, 64))
    dequantized = (x_values.float() * x_scale) @ (layer.weight_fp8.float() * layer.weight_scale.t()).t()
    if bias:
        dequantized = dequantized + layer.bias.float()
    torch.testing.assert_close(got.float().reshape(-1, 32), dequantized, rtol=1e-2, atol=1e-2)
    # and within e4m3's precision (3 mantissa bits) of the float layer
    assert (got.float() - exact.float()).norm() / exact.float().norm() < 0.1


def test_a_quantized_tiny_wan_swaps_every_block_linear_and_stays_close():
    torch.manual_seed(0)
    wan = WanTransformer3DModel(**FP8_WAN).eval().to(torch.bfloat16)
    reference = WanTransformer3DModel(**FP8_WAN).eval().to(torch.bfloat16)
    reference.load_state_dict(wan.state_dict())
    assert quantize_fp8(wan) == LINEARS_PER_WAN_BLOCK * FP8_WAN["num_layers"]
    assert not any(isinstance(m, nn.Linear) for m in wan.blocks.modules())
    assert isinstance(wan.proj_out, nn.Linear)  # outside the blocks: untouched
    latents = torch.randn(1, 16, 3, 8, 8, dtype=torch.bfloat16)
    text = torch.randn(1, 8, FP8_WAN["text_dim"], dtype=torch.bfloat16)
    t = torch.tensor([700])
    with torch.no_grad():
        got = wan(latents, t, text).sample.float()
        expected = reference(latents, t, text).sample.float()
    assert (got - expected).norm() / expected.norm() < 0.1


def test_a_quantized_qwen2vl_tower_keeps_its_dtype_and_output():
    tower = tiny_tower().to(torch.bfloat16)
    reference = tiny_tower().to(torch.bfloat16)
    swapped = quantize_fp8(tower)
    assert swapped == 4 * 2  # qkv, proj, fc1, fc2 in each of the 2 vision blocks; the merger stays
    assert tower.dtype == torch.bfloat16  # transformers casts the pixels to the first floating parameter's dtype
    grid = torch.tensor([[1, 4, 6]])
    pixels = torch.randn(24, 3 * 2 * 14 * 14, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        got = tower(pixels, grid_thw=grid).pooler_output.float()
        expected = reference(pixels, grid_thw=grid).pooler_output.float()
    assert (got - expected).norm() / expected.norm() < 0.1


def test_a_quantized_block_compiles_as_one_graph():
    """The reason for our own layer: compiled code must see one graph a block, not a break at each FP8 layer."""
    torch.manual_seed(0)
    wan = WanTransformer3DModel(**FP8_WAN).eval().to(torch.bfloat16)
    quantize_fp8(wan)
    captured = {}
    wan.blocks[0].register_forward_pre_hook(lambda module, args: captured.setdefault("args", args))
    with torch.no_grad():
        wan(torch.randn(1, 16, 3, 8, 8, dtype=torch.bfloat16), torch.tensor([700]), torch.randn(1, 8, 32).bfloat16())
        explained = torch._dynamo.explain(wan.blocks[0])(*captured["args"])
    assert (explained.graph_count, explained.graph_break_count) == (1, 0)


@pytest.mark.parametrize("fp8,compile_blocks", [(True, True), (False, True), (True, False), (False, False)])
@pytest.mark.parametrize("device", ["cuda", "cpu"])
def test_cuda_setup_quantizes_before_it_compiles(monkeypatch, fp8, compile_blocks, device):
    """FP8 and the attention kernels must come first (compiled code has to see the quantized layers
    and the chosen kernels), `--no-compile` compiles neither the blocks nor the reward models'
    layers, and off CUDA nothing is done."""
    from types import SimpleNamespace

    import engine.cuda_setup as cuda_setup
    from engine.config import AttentionKernel, CudaOptions

    calls = []
    monkeypatch.setattr(cuda_setup, "use_fp8", lambda models, scorers: calls.append("fp8"))
    monkeypatch.setattr(
        cuda_setup, "tune_for_cuda", lambda models, compile_blocks: calls.append(f"tune {compile_blocks}")
    )
    monkeypatch.setattr(cuda_setup, "compile_reward_layers", lambda scorers: calls.append("rewards"))
    transformer = SimpleNamespace(use_attention=lambda kernel: calls.append(f"attention {kernel.value}"))
    models = SimpleNamespace(device=torch.device(device), transformer=transformer)
    options = CudaOptions(compile_blocks=compile_blocks, fp8=fp8, attention=AttentionKernel.flash4)
    cuda_setup.prepare_for_cuda(models, (), options)
    expected = ["fp8"] * fp8 + ["attention flash4", f"tune {compile_blocks}"] + ["rewards"] * compile_blocks
    assert calls == (expected if device == "cuda" else [])
