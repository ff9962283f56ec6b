"""Which layers `--fp8` quantizes (the quantization itself needs an FP8 GPU and torchao)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from engine.errors import StreamT1Error
from engine.fp8 import check_fp8, takes_fp8


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


@pytest.mark.parametrize("fp8,compile_blocks", [(True, True), (False, True), (True, False), (False, False)])
@pytest.mark.parametrize("device", ["cuda", "cpu"])
def test_cuda_setup_quantizes_before_it_compiles(monkeypatch, fp8, compile_blocks, device):
    """FP8 must come first (compiled code has to see the quantized layers), `--no-compile`
    compiles neither the blocks nor the reward models' layers, and off CUDA nothing is done."""
    from types import SimpleNamespace

    import engine.cuda_setup as cuda_setup
    import engine.fp8 as fp8_module
    from engine.config import CudaOptions

    calls = []
    monkeypatch.setattr(fp8_module, "use_fp8", lambda models, scorers: calls.append("fp8"))
    monkeypatch.setattr(
        cuda_setup, "tune_for_cuda", lambda models, compile_blocks: calls.append(f"tune {compile_blocks}")
    )
    monkeypatch.setattr(cuda_setup, "compile_reward_layers", lambda scorers: calls.append("rewards"))
    models = SimpleNamespace(device=torch.device(device))
    cuda_setup.prepare_for_cuda(models, (), CudaOptions(compile_blocks=compile_blocks, fp8=fp8))
    expected = ["fp8"] * fp8 + [f"tune {compile_blocks}"] + ["rewards"] * compile_blocks
    assert calls == (expected if device == "cuda" else [])
