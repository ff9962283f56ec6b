"""Phase timing that is honest on GPUs without stalling them.

On CUDA a phase is timed by two events on the current stream: from the moment the stream reaches
the phase's start to the moment it reaches its end. Timing thus adds no host-device sync (a sync at
every phase end left the GPU idle while the host queued the next phase). Work queued before a phase
counts in the phase that queued it; host time inside a phase counts when the stream waits on it.
On CPU, wall clock. Each phase is also a named range in a torch.profiler trace.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager

import torch

Mark = float | torch.cuda.Event  # a phase's start or end


class PhaseTimer:
    """Accumulates seconds per named phase; `take` returns them (waiting for the last phase)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self._spans: list[tuple[str, Mark, Mark]] = []

    def _mark(self) -> Mark:
        """Now: an event recorded on the current CUDA stream, or the wall clock on the CPU."""
        if self.device.type != "cuda":
            return time.perf_counter()
        event = torch.cuda.Event(enable_timing=True)
        event.record(torch.cuda.current_stream(self.device))
        return event

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        start = self._mark()
        try:
            with torch.profiler.record_function(name):
                yield
        finally:
            self._spans.append((name, start, self._mark()))

    def take(self) -> dict[str, float]:
        """The phases measured since the last call, in seconds; starts afresh."""
        out: dict[str, float] = defaultdict(float)
        for name, start, end in self._spans:
            if isinstance(end, float):
                out[name] += end - start
            else:
                end.synchronize()
                out[name] += start.elapsed_time(end) / 1000.0
        self._spans = []
        return dict(out)
