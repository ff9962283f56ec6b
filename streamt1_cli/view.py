"""Rich live view of a run: every candidate's rewards, which beams survived, their sinks, timing."""

from __future__ import annotations

import time

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from engine.records import ChunkRecord

SPARKS = "▁▂▃▄▅▆▇█"


def sparkline(values: list[float], width: int = 24) -> str:
    """The last `width` values as one line of block characters, lowest to highest (a trend, e.g.
    of the kept fused score, for the live view)."""
    values = values[-width:]
    if not values:
        return ""
    lo, hi = min(values), max(values)
    span = (hi - lo) or 1.0
    return "".join(SPARKS[round((v - lo) / span * (len(SPARKS) - 1))] for v in values)


UNTRAINED_LABEL = "[bold yellow]UNTRAINED[/] random-init weights (tiny preset): the video is noise-like by design"


class ScalingView:
    """Redraws after each chunk; prints nothing with `quiet`."""

    def __init__(
        self,
        console: Console,
        total_chunks: int,
        title: str,
        reward_names: tuple[str, str],
        quiet: bool,
        first_chunk: int = 0,
        report: str | None = None,
    ) -> None:
        self.console, self.total, self.title, self.quiet = console, total_chunks, title, quiet
        self.first_chunk, self.report = first_chunk, report
        self._kept_fused: list[float] = []  # best kept fused score per chunk, for the trend line
        self.short_name, self.long_name = reward_names
        self._start = time.perf_counter()
        self._live = Live(Text("starting..."), console=console, refresh_per_second=4, transient=False)

    def __enter__(self) -> ScalingView:
        return self  # the display starts with the first chunk: a run that fails while resuming prints one line

    def __exit__(self, *exc: object) -> None:
        if self._live.is_started:
            self._live.stop()
            self.console.line()

    def update(self, record: ChunkRecord) -> None:
        if self.quiet:
            return
        if not self._live.is_started:
            self._live.start()
        self._kept_fused.append(max(c.fused for c in record.candidates if c.kept))
        done = record.chunk + 1
        elapsed = time.perf_counter() - self._start
        eta = elapsed / (done - self.first_chunk) * (self.total - done)
        chunk_s = sum(record.seconds.values())
        header = Text.from_markup(
            f"[bold]{self.title}[/]  chunk {done}/{self.total}  alpha {record.alpha:.3f}  "
            f"chunk {chunk_s:.2f}s  elapsed {elapsed:.0f}s  ETA {eta:.0f}s"
        )
        cands = Table(title=f"candidates (short: {self.short_name}, long: {self.long_name})", expand=False)
        for col in ("#", "parent", "seed", "short", "long", "fused", "kept", "sink flag"):
            cands.add_column(col, justify="right")
        for c in record.candidates:
            style = "bold green" if c.kept else "dim"
            cands.add_row(
                str(c.index),
                "-" if c.parent is None else str(c.parent),
                str(c.seed),
                f"{c.short:.4f}",
                f"{c.long:.4f}",
                f"{c.fused:.4f}",
                "yes" if c.kept else "",
                c.flag or "",
                style=style,
            )
        beams = Table(title="surviving beams")
        for col in ("beam", "candidate", "sink frames", "last sink action"):
            beams.add_column(col, justify="right")
        for b, beam in enumerate(record.beams):
            event = beam.last_sink_event
            action = "-" if event is None else f"{event.route} (frame {event.start_frame})"
            beams.add_row(str(b), str(beam.candidate), str(beam.sink_frames), action)
        split = "  ".join(f"{k} {v * 1000:.0f}ms" for k, v in record.seconds.items())
        trend = Text(
            f"kept fused score, last {min(len(self._kept_fused), 24)} chunks: {sparkline(self._kept_fused)}"
            if len(record.candidates) > 1
            else ""
        )
        where = Text(f"report: {self.report}" if self.report else "", style="dim")
        self._live.update(Group(header, cands, beams, trend, Text(split, style="dim"), where))
