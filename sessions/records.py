"""Per-chunk records as JSON lines in the session folder (machine-readable twin of the live view):
exactly one line per committed chunk, written after its commit."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any


class ChunkLog:
    """Rewrites `path` with the records already committed (a crash between a commit and its log
    line, or a log from before a kill, is repaired here), then appends one line per new commit."""

    def __init__(self, path: Path, committed: Iterable[dict[str, Any]]) -> None:
        self.path = path
        tmp = path.with_name(path.name + ".tmp")
        with tmp.open("w", encoding="utf-8") as f:
            f.writelines(json.dumps(record, sort_keys=True) + "\n" for record in committed)
        os.replace(tmp, path)
        self._file = path.open("a", encoding="utf-8")

    def write(self, record: dict[str, Any]) -> None:
        self._file.write(json.dumps(record, sort_keys=True) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> "ChunkLog":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_chunk_log(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
