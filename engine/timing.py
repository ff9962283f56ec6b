"""Wall-clock phase timing that is honest on GPUs (synchronizes before reading the clock)."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager

import torch


class PhaseTimer:
    """Accumulates seconds per named phase; `phase()` waits for the current CUDA stream's queued
    work at both ends (side streams, such as the overlapped decode, keep running). Each phase is
    also a named range in a torch.profiler trace."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.seconds: dict[str, float] = defaultdict(float)

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.current_stream(self.device).synchronize()

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        self.sync()
        start = time.perf_counter()
        try:
            with torch.profiler.record_function(name):
                yield
        finally:
            self.sync()
            self.seconds[name] += time.perf_counter() - start

    def take(self) -> dict[str, float]:
        """Return the phases measured since the last call and start afresh."""
        out, self.seconds = dict(self.seconds), defaultdict(float)
        return out
