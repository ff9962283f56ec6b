"""Build and write a report: one session's, or several side by side. The file is replaced
atomically, so a browser refreshing it while a run rewrites it never sees half a page."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from sessions.growing_video import VIDEO_FILE
from sessions.report import data, html, plots
from sessions.report.model import SessionView, load_session
from sessions.report.thumbs import sheet_chunks, thumbnails
from sessions.store import Session

REPORT_FILE = "report.html"
DENSE_COMMITS = 32  # a run rewrites its report after every commit up to here, then ever more sparsely


def report_due(head: int, dense: int = DENSE_COMMITS) -> bool:
    """Whether a run should rewrite its report after committing chunk `head - 1`: after every commit
    up to `dense` chunks, then every 2nd up to 2 * dense, every 4th up to 4 * dense, ...: dense / 2
    rewrites per doubling of the session, so their cost stays a shrinking share of a long run."""
    step = 1
    while head > step * dense:
        step *= 2
    return head % step == 0


def atomic_write_text(path: Path, text: str) -> None:
    """Write a uniquely named temporary file in the same folder, then rename it over `path`: readers
    see the old file or the new one, and two writers never share a temporary file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _name(view: SessionView) -> str:
    return view.path.resolve().name


def is_report(path: Path) -> bool:
    """`path` holds a page this module wrote (its data island), so writing over it loses nothing."""
    try:
        return f'id="{html.DATA_ID}"'.encode() in path.read_bytes()
    except OSError:
        return False


def write_report(
    paths: Path | Sequence[Path],
    out: Path | None = None,
    thumbs_per_chunk: int = 1,
) -> Path:
    """Write the report of one session (default `DIR/report.html`) or a comparison of several
    (`out` required) and return its path. Reads committed chunks only and takes no lock, so it
    runs beside a generating run."""
    paths = [paths] if isinstance(paths, Path) else list(paths)
    if out is None:
        if len(paths) != 1:
            raise ValueError("a comparison of several sessions needs an output path")
        out = paths[0] / REPORT_FILE
    sessions = [Session.open(p) for p in paths]
    views = [load_session(s) for s in sessions]
    names = _unique([_name(v) for v in views])
    hrefs = [Path(os.path.relpath(v.path / VIDEO_FILE, out.resolve().parent)).as_posix() for v in views]
    shared = sheet_chunks(max(len(v.chunks) for v in views))  # one sampling for all: sheets align by chunk
    sections, payload, sheets = [], [], []
    for session, view, name, href in zip(sessions, views, names, hrefs):
        thumbs = thumbnails(session, view, [k for k in shared if k < len(view.chunks)], thumbs_per_chunk)
        sheets.append(thumbs)
        figures = [plots.rewards(view), plots.tree(view), plots.sinks(view), plots.timing(view)] if view.chunks else []
        sections.append(
            html.session_section(
                view,
                name,
                figures,
                thumbs,
                href,
                (view.path / VIDEO_FILE).exists(),
                sampled=len({t.chunk for t in thumbs}) < len(view.chunks),
            )
        )
        payload.append(data.session_data(view, name, href, figures, thumbs))
    if len(views) > 1:
        sections.insert(0, html.compare_section(names, plots.compare(views, names), sheets, shared, hrefs))
    generated = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    title = f"streamt1 report: {names[0]}" if len(views) == 1 else f"streamt1 comparison: {', '.join(names)}"
    subtitle = f"Written {generated} from the committed chunks; refresh to see a running session's progress."
    atomic_write_text(out, html.page(title, subtitle, sections, data.report_data(payload, generated)))
    return out


def _unique(names: list[str]) -> list[str]:
    """Session folder names, numbered where two are alike (runs/a/fox vs runs/b/fox)."""
    return [n if names.count(n) == 1 else f"{n} ({i + 1})" for i, n in enumerate(names)]


class ReportFailed(OSError):
    """A background rewrite of the report failed (its own process said why)."""


class ReportWriter:
    """Keeps one session's report current while it runs, each rewrite in a process of its own:
    `after_commit(head)` starts one when `report_due(head)` and the last has finished (a skipped one
    is covered by the next) and returns at once; `close()` waits for it and writes the final report.
    Rendering (matplotlib, thumbnails, reading the store) is Python-heavy: in a thread it would hold
    the GIL the chunk loop needs to keep the GPU fed. The process runs at a lower priority in a
    session of its own (a Ctrl-C is the run's to handle) and holds none of the run's output streams,
    so a run killed outright leaves it to finish its one page and exit."""

    def __init__(self, session_path: Path, out: Path | None = None, dense: int = DENSE_COMMITS) -> None:
        self.session_path, self.out, self.dense = session_path, out, dense
        self._proc: subprocess.Popen | None = None
        self._error: str | None = None

    @property
    def renderer_pid(self) -> int | None:
        """The process of the rewrite in progress, if one is."""
        return None if self._finished() else self._proc.pid

    def after_commit(self, head: int) -> None:
        if not report_due(head, self.dense) or not self._finished():
            return
        command = [sys.executable, "-m", __name__, str(self.session_path)]
        self._proc = subprocess.Popen(
            command + ([] if self.out is None else [str(self.out)]),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )

    def _finished(self) -> bool:
        if self._proc is None:
            return True
        if self._proc.poll() is None:
            return False
        if self._proc.returncode and self._error is None:
            said = self._proc.stderr.read().decode(errors="replace").strip().splitlines()
            self._error = said[-1] if said else f"the report process exited with {self._proc.returncode}"
        self._proc.stderr.close()
        self._proc = None
        return True

    def close(self) -> Path:
        """Wait for the rewrite in progress, then write the report of the final head here. A rewrite
        that failed during the run is raised here (a report must not stop the run)."""
        if self._proc is not None:
            self._proc.wait()
        self._finished()
        if self._error is not None:
            raise ReportFailed(self._error)
        return write_report(self.session_path, self.out)


def main(argv: list[str]) -> int:
    """`python -m sessions.report.write DIR [OUT]`: one rewrite, as a running session starts it."""
    with contextlib.suppress(OSError):
        os.nice(10)
    try:
        write_report(Path(argv[0]), Path(argv[1]) if len(argv) > 1 else None)
    except Exception as exc:  # one line for the run's note
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
