"""Per-chunk records as JSON lines in the session folder (machine-readable twin of the live view):
exactly one line per committed chunk, written after its commit."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from sessions.files import atomic_write, reason
from sessions.store import SessionError


class ChunkLog:
    """Rewrites `path` whole with the records already committed (a crash between a commit and its
    log line, or a log from before a kill, is repaired here), then appends one line per new commit.
    A log that cannot be written stops the run before it generates anything."""

    def __init__(self, path: Path, committed: Iterable[dict[str, Any]]) -> None:
        self.path = path
        text = "".join(json.dumps(record, sort_keys=True) + "\n" for record in committed)
        try:
            atomic_write(path, text)
            self._file = path.open("a", encoding="utf-8")
        except OSError as exc:
            raise SessionError(
                f"cannot write {path} ({reason(exc)}): free some disk space or move what is in "
                "the way, then run the command again"
            ) from exc

    def write(self, record: dict[str, Any]) -> None:
        self._file.write(json.dumps(record, sort_keys=True) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> ChunkLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_chunk_log(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
