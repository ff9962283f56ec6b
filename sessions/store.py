"""A session on disk: `session.toml` (human-readable spec and lineage) + a Zarr v3 store of the
committed chunks + `HEAD`, the commit marker.

What a chunk stores is exactly what a deterministic replay needs to rebuild the live state (KV
cache, sink, decoder state) bit for bit: each surviving beam's clean latents and initial noise,
plus the chunk's record (seeds, parents, rewards, sink flags, prompt). Decoded frames are stored
too (uint8) so that export needs no model. A chunk becomes visible only when `HEAD` moves past it
(written last, atomically), so a crash at any moment leaves the session at its last whole chunk.
A branch references its parent's chunks below the branch point instead of copying them.
"""

from __future__ import annotations

import fcntl
import json
import os
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import tomli_w
import torch
import zarr
from torch import Tensor

from engine.errors import StreamT1Error

FORMAT = "streamt1-session"
FORMAT_VERSION = 1
SPEC_FILE, HEAD_FILE, STORE_DIR, LOCK_FILE = "session.toml", "HEAD", "store.zarr", ".lock"


class SessionError(StreamT1Error):
    """A foreign, corrupt, busy or inconsistent session."""


@dataclass
class SessionSpec:
    """Everything that decides what a session generates (session.toml)."""

    preset: str
    seed: int
    stream: dict[str, Any]
    prompts: list[dict[str, Any]]  # [{"from_chunk": k, "prompt": p}], sorted
    scaling: dict[str, Any] | None = None  # None: plain LongLive
    rewards: list[str] | None = None  # [short, long] scorer names
    parent: dict[str, Any] | None = None  # {"path": ..., "at": K}
    format: str = FORMAT
    format_version: int = FORMAT_VERSION
    created_by: str = field(default="streamt1")

    @property
    def schedule(self) -> dict[int, str]:
        return {int(p["from_chunk"]): p["prompt"] for p in self.prompts}


@dataclass(frozen=True)
class StoredChunk:
    record: dict[str, Any]
    latents: Tensor  # [beams, C, F, h, w] float32
    noise: Tensor  # [beams, C, F, h, w] float32
    frames: Tensor  # [beams, 3, F, H, W] uint8


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class Session:
    """Open with `Session.open` (checks it), make with `Session.create`."""

    def __init__(self, path: Path, spec: SessionSpec) -> None:
        self.path = path
        self.spec = spec

    # --- creating and opening --------------------------------------------------------------------
    @classmethod
    def create(cls, path: Path, spec: SessionSpec, head: int = 0) -> Session:
        """Build the session in a hidden sibling folder and rename it into place: a crash leaves
        either no session or a complete empty one."""
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            raise SessionError(f"{path} already exists and is not an empty folder: choose a new session path, "
                               f"or extend it with `streamt1 continue {path}`")
        path.parent.mkdir(parents=True, exist_ok=True)
        staging = path.parent / f".{path.name}.creating-{os.getpid()}"
        staging.mkdir()
        zarr.open_group(staging / STORE_DIR, mode="w", zarr_format=3)
        cls(staging, spec).write_spec()
        _atomic_write(staging / HEAD_FILE, f"{head}\n")
        if path.exists():
            path.rmdir()  # empty, checked above
        os.rename(staging, path)
        return cls(path, spec)

    @classmethod
    def open(cls, path: Path) -> Session:
        spec_path = path / SPEC_FILE
        if not path.is_dir():
            raise SessionError(f"no session at {path}: the folder does not exist (start one with `streamt1 new`)")
        if not spec_path.is_file():
            raise SessionError(f"{path} is not a streamt1 session (no {SPEC_FILE}): check the path")
        try:
            raw = tomllib.loads(spec_path.read_text(encoding="utf-8"))
            spec = SessionSpec(**raw)
        except (tomllib.TOMLDecodeError, TypeError, UnicodeDecodeError) as exc:
            raise SessionError(f"{spec_path} is corrupt or foreign ({type(exc).__name__}): it was not written by "
                               "this streamt1; restore it or start a new session") from exc
        if spec.format != FORMAT:
            raise SessionError(f"{spec_path} is not a streamt1 session file (format {spec.format!r})")
        if spec.format_version != FORMAT_VERSION:
            raise SessionError(f"{path} was written by a streamt1 with session format {spec.format_version}; this one "
                               f"reads format {FORMAT_VERSION}: use the matching streamt1 version")
        session = cls(path, spec)
        session.head  # validates HEAD
        if spec.parent is not None:
            parent = session.parent
            if parent.head < spec.parent["at"]:
                raise SessionError(f"parent session {parent.path} has {parent.head} chunks, fewer than this branch's "
                                   f"branch point {spec.parent['at']}: it was changed or replaced")
        return session

    def write_spec(self) -> None:
        spec = {k: v for k, v in asdict(self.spec).items() if v is not None}
        _atomic_write(self.path / SPEC_FILE, tomli_w.dumps(spec))

    # --- reading ---------------------------------------------------------------------------------
    @property
    def head(self) -> int:
        """Number of committed chunks (a branch counts its parent's chunks below the branch point)."""
        try:
            return int((self.path / HEAD_FILE).read_text().strip())
        except (FileNotFoundError, ValueError) as exc:
            raise SessionError(f"{self.path / HEAD_FILE} is missing or corrupt: the session cannot be trusted") from exc

    @cached_property
    def parent(self) -> Session:
        """Opened (and checked) once: a branch's replay reads every early chunk through it."""
        parent_path = Path(self.spec.parent["path"])
        try:
            return Session.open(parent_path)
        except SessionError as exc:
            raise SessionError(f"branch {self.path} needs its parent {parent_path}: {exc}") from exc

    def chunk(self, k: int) -> StoredChunk:
        if not 0 <= k < self.head:
            raise SessionError(f"chunk {k} is out of range: {self.path} has chunks 0..{self.head - 1}")
        if self.spec.parent is not None and k < self.spec.parent["at"]:
            return self.parent.chunk(k)
        group = zarr.open_group(self.path / STORE_DIR, mode="r")
        try:
            g = group[f"chunks/{k}"]
            return StoredChunk(
                record=json.loads(g.attrs["record"]),
                latents=torch.from_numpy(np.asarray(g["latents"][...])),
                noise=torch.from_numpy(np.asarray(g["noise"][...])),
                frames=torch.from_numpy(np.asarray(g["frames"][...])),
            )
        except (KeyError, ValueError, OSError) as exc:
            raise SessionError(f"chunk {k} of {self.path} is damaged ({type(exc).__name__}): restore the session "
                               "from a backup or branch before it") from exc

    def chunks(self, upto: int | None = None) -> Iterator[StoredChunk]:
        for k in range(self.head if upto is None else upto):
            yield self.chunk(k)

    # --- writing ---------------------------------------------------------------------------------
    def commit(self, record: dict[str, Any], latents: Tensor, noise: Tensor, frames: Tensor) -> None:
        """Write chunk `record["chunk"]` (which must be the head) and then move HEAD past it."""
        k = record["chunk"]
        if k != self.head:
            raise SessionError(f"commit of chunk {k} at head {self.head}")
        group = zarr.open_group(self.path / STORE_DIR, mode="a")
        g = group.require_group(f"chunks/{k}")
        for name, tensor in (("latents", latents), ("noise", noise), ("frames", frames)):
            data = tensor.detach().cpu().numpy()
            array = g.create_array(name, shape=data.shape, dtype=data.dtype, chunks=data.shape, overwrite=True)
            array[...] = data
        g.attrs["record"] = json.dumps(record)
        _atomic_write(self.path / HEAD_FILE, f"{k + 1}\n")

    @contextmanager
    def lock(self) -> Iterator[None]:
        """One process per session: a second one is refused instead of corrupting it."""
        with open(self.path / LOCK_FILE, "a+") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError as exc:
                raise SessionError(f"{self.path} is in use by another streamt1 process: wait for it to finish") from exc
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def disk_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.path.rglob("*") if p.is_file())
