"""What a run does to its loaded networks before the first chunk on a CUDA GPU: FP8 and the
attention kernels first (opt-in; compiled layers trace at their first call, which must already see
the quantized weights and the chosen kernels), then the generator's speed settings and the compiles
of its blocks and of the reward models' layers."""

from __future__ import annotations

from collections.abc import Iterable

from engine.config import CudaOptions
from engine.fp8 import use_fp8
from engine.models.factory import Models, allow_compiled_variants, tune_for_cuda
from engine.rewards.qwen_vl import qwen_backbones


def prepare_for_cuda(models: Models, scorers: Iterable[object], options: CudaOptions) -> None:
    """Tune `models` and the real reward models among `scorers` in place, as `options` says; on
    any other device than CUDA there is nothing to do (and `--fp8` was refused before loading)."""
    if models.device.type != "cuda":
        return
    scorers = tuple(scorers)
    if options.fp8:
        use_fp8(models, scorers)
    models.transformer.use_attention(options.attention)
    tune_for_cuda(models, compile_blocks=options.compile_blocks)
    if options.compile_blocks:
        compile_reward_layers(scorers)


def compile_reward_layers(scorers: Iterable[object]) -> None:
    """torch.compile the layers of every Qwen2-VL reward model among `scorers` (1.24x on HPSv3,
    1.43-1.46x on VideoReward on an H200: docs/performance.md)."""
    allow_compiled_variants()  # a longer clip is a new shape: past dynamo's default limit it runs eager
    for backbone in qwen_backbones(scorers):
        backbone.compile_layers()
