"""Rich progress display of a running stream: chunks done, frames, FPS, ETA, phase split."""

from __future__ import annotations

import time

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from engine.stream import ChunkResult

UNTRAINED_LABEL = "[bold yellow]UNTRAINED[/] random-init weights (tiny preset): the video is noise-like by design"


class StreamView:
    """A progress bar over chunks with the last chunk's timing split; silent with `quiet`."""

    def __init__(self, console: Console, total_chunks: int, title: str, quiet: bool) -> None:
        self.console = console
        self.quiet = quiet
        self.frames = 0
        self._start = time.perf_counter()
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[stats]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
            disable=quiet,
        )
        self._task = self._progress.add_task(title, total=total_chunks, stats="")

    def __enter__(self) -> "StreamView":
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def update(self, chunk: ChunkResult) -> None:
        self.frames += chunk.frames.shape[2]
        fps = self.frames / max(time.perf_counter() - self._start, 1e-9)
        split = " ".join(f"{name} {sec * 1000:.0f}ms" for name, sec in chunk.seconds.items())
        stats = f"{self.frames} frames  {fps:.1f} fps  [dim]{split}[/]"
        self._progress.update(self._task, advance=1, stats=stats)
