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


class PhaseTimer:
    """Accumulates seconds per named phase; `take` returns them (waiting for the last phase)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self._seconds: dict[str, float] = defaultdict(float)
        self._events: list[tuple[str, torch.cuda.Event, torch.cuda.Event]] = []

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        if self.device.type != "cuda":
            start = time.perf_counter()
            try:
                with torch.profiler.record_function(name):
                    yield
            finally:
                self._seconds[name] += time.perf_counter() - start
            return
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        stream = torch.cuda.current_stream(self.device)
        start.record(stream)
        try:
            with torch.profiler.record_function(name):
                yield
        finally:
            end.record(stream)
            self._events.append((name, start, end))

    def take(self) -> dict[str, float]:
        """The phases measured since the last call, in seconds; starts afresh."""
        out = self._seconds
        for name, start, end in self._events:
            end.synchronize()
            out[name] += start.elapsed_time(end) / 1000.0
        self._seconds, self._events = defaultdict(float), []
        return dict(out)
