"""Small files of a session written whole or not at all (HEAD, session.toml, chunks.jsonl,
final.json): readers, and a process killed at any moment, see the old text or the new one. What
such a kill leaves behind is a hidden file named by LEFTOVERS, removed by the next run."""

from __future__ import annotations

import os
import stat
import uuid
from contextlib import suppress
from pathlib import Path

LEFTOVERS = (".*.tmp", ".*.partial-*")  # temporary names of atomic_write and of video files


def atomic_write(path: Path, text: str) -> None:
    """Write a uniquely named hidden file beside `path`, fsync it, rename it over `path`. Unique,
    so that a stray file or folder left by a kill never blocks the next write."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the umask's modes, as open() gives
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with suppress(OSError):
            os.unlink(tmp)
        raise


def reason(exc: OSError) -> str:
    """The system's words for a failed file operation ("No space left on device")."""
    return exc.strerror or str(exc).splitlines()[0] or type(exc).__name__


def tree_bytes(path: Path) -> int:
    """Bytes of the regular files under `path`; a file or folder that vanishes while it is counted
    (a running command's temporary file renamed into place, a snapshot being written or removed)
    counts as 0 (os.walk skips folders it cannot list)."""
    total = 0
    for folder, _, files in os.walk(path):
        for name in files:
            with suppress(FileNotFoundError):
                st = os.lstat(os.path.join(folder, name))
                total += st.st_size if stat.S_ISREG(st.st_mode) else 0
    return total
