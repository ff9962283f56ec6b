"""What a run does to its loaded networks before the first chunk on a CUDA GPU, in the one order
that works: FP8 first (opt-in: compiled code must see the quantized layers), then the speed
settings of the generator and the compiles of its blocks and of the reward models' layers."""

from __future__ import annotations

from collections.abc import Iterable

from engine.config import CudaOptions
from engine.models.factory import Models, tune_for_cuda
from engine.rewards.qwen_vl import qwen_backbones


def prepare_for_cuda(models: Models, scorers: Iterable[object], options: CudaOptions) -> None:
    """Tune `models` and the real reward models among `scorers` in place, as `options` says."""
    scorers = tuple(scorers)
    if options.fp8:
        from engine.fp8 import use_fp8  # torchao is an optional dependency

        use_fp8(models, scorers)
    tune_for_cuda(models, compile_blocks=options.compile_blocks)
    if options.compile_blocks:
        compile_reward_layers(scorers)


def compile_reward_layers(scorers: Iterable[object]) -> None:
    """torch.compile the layers of every Qwen2-VL reward model among `scorers` (1.24x on HPSv3,
    1.45x on VideoReward on an H200: docs/performance.md)."""
    for backbone in qwen_backbones(scorers):
        backbone.compile_layers()
