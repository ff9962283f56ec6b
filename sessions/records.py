"""Per-chunk records as JSON lines in the session folder (machine-readable twin of the live view)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


class ChunkLog:
    """Appends one JSON object per chunk to `path` and flushes it, so a crash loses no record."""

    def __init__(self, path: Path) -> None:
        self.path = path
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
