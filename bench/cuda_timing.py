"""CUDA-event timing for the kernel benchmarks. Light on purpose (torch only): attention_bench runs
on a device call that carries no other wheels."""

from __future__ import annotations

import torch


def mean_cuda_ms(call, inputs: tuple, repeat: int, warmup: int = 3) -> float:
    """Mean milliseconds of `call(*inputs)` over `repeat` back-to-back calls, after `warmup` calls."""
    for _ in range(warmup):
        call(*inputs)
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(repeat):
        call(*inputs)
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / repeat
