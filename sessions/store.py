"""A session on disk: `session.toml` (human-readable spec and lineage) + a Zarr v3 store of the
committed chunks + `HEAD`, the commit marker.

What a chunk stores is exactly what a deterministic replay needs to rebuild the live state (KV
cache, sink, decoder state) bit for bit: each surviving beam's clean latents and initial noise,
plus the chunk's record (seeds, parents, rewards, sink flags, prompt). Decoded frames are stored
too (uint8) so that export needs no model. A chunk becomes visible only when `HEAD` moves past it
(written last, atomically), so a crash at any moment leaves the session at its last whole chunk.
The prompt schedule a chunk was made under is committed with it, so HEAD moving is also the one
atomic point of a prompt switch (session.toml, rewritten after it, is the human-readable copy).
Every digest covers the chunk's identity (session id, index), so a moved or copied chunk reads
as damaged. A branch references its parent's chunks below the branch point instead of copying them.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import zarr
from torch import Tensor

from sessions.errors import SessionError
from sessions.files import LEFTOVERS, atomic_write, reason, tree_bytes
from sessions.spec import (  # noqa: F401 (FORMAT, FORMAT_VERSION: re-exported)
    FORMAT,
    FORMAT_VERSION,
    Compute,
    ParentRef,
    PromptSwitch,
    SessionSpec,
    SpecProblem,
    compute_from_plain,
    compute_to_plain,
    prompts_from_plain,
    prompts_to_plain,
)

SPEC_FILE, HEAD_FILE, STORE_DIR, LOCK_FILE = "session.toml", "HEAD", "store.zarr", ".lock"
STAGING_PREFIX = ".creating-"  # a session being created (or left by a crash during creation)

ARRAYS = ("latents", "noise", "frames")  # per chunk, in StoredChunk's field order


def _digest(identity: str, *parts: bytes | np.ndarray) -> str:
    """BLAKE2b of a chunk's identity ("session id/chunk/what") followed by its data: the same bytes
    under another chunk index or session give another digest."""
    h = hashlib.blake2b(identity.encode() + b"\0", digest_size=16)
    for part in parts:
        h.update(np.ascontiguousarray(part).data if isinstance(part, np.ndarray) else part)
    return h.hexdigest()


@dataclass(frozen=True)
class StoredChunk:
    record: dict[str, Any]
    latents: Tensor  # [beams, C, F, h, w] float32
    noise: Tensor  # [beams, C, F, h, w] float32
    frames: Tensor  # [beams, 3, F, H, W] uint8


def _not_writable(path: Path, exc: OSError) -> SessionError:
    fix = (
        "it is not yours to write: `streamt1 branch` it into a folder of yours"
        if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS)
        else f"move {path} out of the way"
    )
    return SessionError(f"cannot open {path} for writing ({reason(exc)}): {fix}")


class Session:
    """Open with `Session.open` (checks it), make with `Session.create`. `head` is read once, when
    opened, so that one command sees one consistent session while another process extends it."""

    def __init__(self, path: Path, spec: SessionSpec, head: int) -> None:
        self.path = path
        self.spec = spec
        self.head = head  # number of committed chunks (a branch counts its parent's below the branch point)
        self._parent: Session | None = None
        self._spec_stale = False  # session.toml lags the schedule committed with the last chunk

    # --- creating and opening --------------------------------------------------------------------
    @classmethod
    def create(cls, path: Path, spec: SessionSpec, head: int = 0) -> Session:
        """Build the session in a hidden sibling folder and rename it into place: a crash leaves
        either no session or a complete empty one."""
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            if _looks_like_session(path):
                raise SessionError(
                    f"{path} is already a session: choose a new session path, or extend it with "
                    f"`streamt1 continue {path}`"
                )
            what = "a folder with other files" if path.is_dir() else "a file"
            raise SessionError(f"{path} is already {what}: choose a new session path")
        if blocker := next((p for p in path.parents if p.exists() and not p.is_dir()), None):
            raise SessionError(f"{blocker} is a file, not a folder: choose a session path outside it")
        if path.is_mount():
            raise SessionError(
                f"{path} is a mount point, which cannot be replaced by a session folder: give a new "
                f"folder inside it, such as {path / 'session'}"
            )
        if inside := next((p for p in path.resolve().parents if _looks_like_session(p)), None):
            raise SessionError(f"{path} is inside the session {inside}: choose a folder outside any session")
        spec = replace(spec, id=uuid.uuid4().hex)
        staging = path.parent / f"{STAGING_PREFIX}{path.name}.{spec.id}"
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            staging.mkdir()
            zarr.open_group(staging / STORE_DIR, mode="w", zarr_format=3)
            cls(staging, spec, head).write_spec()
            atomic_write(staging / HEAD_FILE, f"{head}\n")
            if path.exists():
                path.rmdir()  # empty, checked above
            os.rename(staging, path)
        except OSError as exc:
            shutil.rmtree(staging, ignore_errors=True)
            fix = "free some disk space" if exc.errno == errno.ENOSPC else "choose a path in a writable folder"
            raise SessionError(f"cannot create a session at {path} ({reason(exc)}): {fix}") from exc
        return cls(path, spec, head)

    @classmethod
    def open(cls, path: Path, _children: frozenset[Path] = frozenset()) -> Session:
        """Open and check a session (and, for a branch, its parents); `_children` are the branches
        being opened below it, so a loop of parents is an error, not endless recursion."""
        if path.resolve() in _children:
            raise SessionError(
                f"{path} is its own ancestor (a branch's parent path leads back to it): restore the "
                "original parent folder"
            )
        spec_path = path / SPEC_FILE
        if not path.exists():
            raise SessionError(f"no session at {path}: the folder does not exist (start one with `streamt1 new`)")
        if not path.is_dir():
            raise SessionError(f"{path} is a file, not a session folder: give the folder that holds {SPEC_FILE}")
        if not spec_path.is_file():
            raise SessionError(f"{path} is not a streamt1 session (no {SPEC_FILE}): check the path")
        try:
            text = spec_path.read_bytes()
        except OSError as exc:
            raise SessionError(f"cannot read {spec_path} ({reason(exc)}): check its permissions") from exc
        session = cls(path, SessionSpec.from_toml(text, spec_path), _read_head(path))
        if session.spec.parent is not None:
            session._open_parent(_children | {path.resolve()})
        session._adopt_committed_schedule()
        return session

    def _adopt_committed_schedule(self) -> None:
        """Take the prompt schedule from the last own committed chunk: session.toml is rewritten
        only after a commit, so a kill in between leaves it behind HEAD. A damaged last chunk keeps
        session.toml's schedule; whatever reads that chunk reports the damage."""
        if self.head <= (self.spec.parent.at if self.spec.parent else 0):
            return
        try:
            prompts = self._stored(self.head - 1, with_arrays=False)[1]
        except SessionError:
            return
        if prompts != self.spec.prompts:
            self.spec = replace(self.spec, prompts=prompts)
            self._spec_stale = True

    def write_spec(self) -> None:
        atomic_write(self.path / SPEC_FILE, self.spec.to_toml())
        self._spec_stale = False

    # --- reading ---------------------------------------------------------------------------------
    def holds(self) -> str:
        """ "PATH holds N whole chunks": what a stopped or failed run leaves, for its one-line message."""
        return f"{self.path} holds {self.head} whole chunk{'' if self.head == 1 else 's'}"

    @property
    def parent(self) -> Session:
        """Opened (and checked) once: a branch's replay reads every early chunk through it."""
        if self._parent is None:
            self._open_parent(frozenset({self.path.resolve()}))
        return self._parent

    def _open_parent(self, children: frozenset[Path]) -> Session:
        self._parent = self._parent_beside(children) or self._parent_at_its_path(children)
        return self._parent

    def _parent_beside(self, children: frozenset[Path]) -> Session | None:
        """The parent where it stood beside this branch, if the same session is there: folders of
        sessions moved or copied together keep (or take along) their parent."""
        ref = self.spec.parent
        beside = (self.path / ref.relative).resolve() if ref.relative else None
        if beside is None or beside in children or not _looks_like_session(beside):
            return None
        try:
            parent = Session.open(beside, children)
        except SessionError:
            return None  # the absolute path may still hold it
        return parent if _is_parent(parent, ref) else None

    def _parent_at_its_path(self, children: frozenset[Path]) -> Session:
        ref = self.spec.parent
        parent_path = Path(ref.path)
        if not parent_path.exists():
            raise SessionError(
                f"branch {self.path} needs its parent {parent_path}, which is gone (moved or "
                "deleted): put it back at that path, or move it together with the branch"
            )
        try:
            parent = Session.open(parent_path, children)
        except SessionError as exc:
            raise SessionError(f"branch {self.path} needs its parent {parent_path}: {exc}") from exc
        if not _is_parent(parent, ref):
            raise SessionError(
                f"parent session {parent.path} is not the one this branch was made from (it was "
                "replaced or rewritten): put the original back there, or start a new session"
            )
        return parent

    def _check_range(self, k: int) -> None:
        if not 0 <= k < self.head:
            raise SessionError(f"chunk {k} is out of range: {self.path} has chunks 0..{self.head - 1}")

    def _owner(self, k: int) -> Session:
        """The session whose store holds chunk k: a branch's early chunks live in its parent."""
        self._check_range(k)
        if self.spec.parent is not None and k < self.spec.parent.at:
            return self.parent._owner(k)
        return self

    def _damaged(self, k: int, why: str) -> SessionError:
        return SessionError(
            f"chunk {k} of {self.path} is damaged ({why}): restore the session from a backup, or "
            f"`streamt1 branch {self.path} --at K` at a chunk K before it"
        )

    def _stored(
        self,
        k: int,
        with_arrays: bool,
        stores: dict[Path, zarr.Group] | None = None,
    ) -> tuple[dict[str, Any], tuple[PromptSwitch, ...], dict[str, np.ndarray]]:
        """Chunk k's record, prompt schedule and (if asked) arrays, each checked against the digest
        written at commit. Zarr reads a missing chunk file back as zeros, so a deleted or truncated
        file would pass unnoticed; the digests cover the chunk's identity, so a chunk folder moved or
        copied from another index or session is caught too. `stores` keeps opened stores for a
        caller reading many chunks (opening a store costs more than reading a record). A record
        committed before records said how their chunk was computed gets the compute its session was
        made with: right unless that session was continued elsewhere before then."""
        owner = self._owner(k)
        try:
            stores = {} if stores is None else stores
            if owner.path not in stores:
                stores[owner.path] = zarr.open_group(owner.path / STORE_DIR, mode="r")
            g = stores[owner.path][f"chunks/{k}"]
            digests = dict(g.attrs["digests"])
            texts = (str(g.attrs["record"]), str(g.attrs["prompts"]))
            arrays = {name: np.asarray(g[name][...]) for name in ARRAYS} if with_arrays else {}
        except Exception as exc:  # any failure to read committed data means the store is damaged
            raise owner._damaged(k, type(exc).__name__) from exc
        identity = f"{owner.spec.id}/{k}"
        if _digest(f"{identity}/meta", *(t.encode() for t in texts)) != digests.get("meta"):
            raise owner._damaged(k, "its record does not match its digest: edited, or moved from another chunk")
        for name, data in arrays.items():
            if _digest(f"{identity}/{name}", data) != digests.get(name):
                raise owner._damaged(k, f"{name} does not match its digest")
        record, prompts = (json.loads(t) for t in texts)
        record.setdefault("compute", compute_to_plain(owner.spec.compute))
        try:
            compute_from_plain(record["compute"])
        except SpecProblem:
            raise owner._damaged(k, "its compute is malformed") from None
        try:
            return record, prompts_from_plain(prompts), arrays
        except SpecProblem:
            raise owner._damaged(k, "its prompt schedule is malformed") from None

    def record(self, k: int) -> dict[str, Any]:
        """Chunk k's record alone (what `show` and lineages need; no arrays are read)."""
        return self._stored(k, with_arrays=False)[0]

    def records(self, start: int = 0, stop: int | None = None) -> Iterator[dict[str, Any]]:
        """Records of chunks start..stop-1 (default: up to the head), opening each store once."""
        stores: dict[Path, zarr.Group] = {}
        for k in range(start, self.head if stop is None else stop):
            yield self._stored(k, with_arrays=False, stores=stores)[0]

    def computed_on(self, k: int) -> Compute | None:
        """How chunk k was computed (None: a session from before sessions recorded it)."""
        return compute_in(self.record(k))

    def chunk(self, k: int) -> StoredChunk:
        """Chunk k with its arrays."""
        record, _, arrays = self._stored(k, with_arrays=True)
        return StoredChunk(record, *(torch.from_numpy(arrays[name]) for name in ARRAYS))

    def chunks(self, upto: int | None = None) -> Iterator[StoredChunk]:
        for k in range(self.head if upto is None else upto):
            yield self.chunk(k)

    # --- writing ---------------------------------------------------------------------------------
    def commit(self, record: dict[str, Any], latents: Tensor, noise: Tensor, frames: Tensor, compute: Compute) -> None:
        """Write chunk `record["chunk"]` (which must be the head) with the prompt schedule it was made
        under (`spec.prompts`) and how it was computed, then move HEAD past it."""
        k = record["chunk"]
        if k != self.head:
            raise SessionError(f"commit of chunk {k} at head {self.head}")
        group = zarr.open_group(self.path / STORE_DIR, mode="a")
        g = group.require_group(f"chunks/{k}")
        identity = f"{self.spec.id}/{k}"
        digests = {}
        for name, tensor in zip(ARRAYS, (latents, noise, frames)):
            data = tensor.detach().cpu().numpy()
            array = g.create_array(name, shape=data.shape, dtype=data.dtype, chunks=data.shape, overwrite=True)
            array[...] = data
            digests[name] = _digest(f"{identity}/{name}", data)
        texts = (json.dumps(with_compute(record, compute)), json.dumps(prompts_to_plain(self.spec.prompts)))
        digests["meta"] = _digest(f"{identity}/meta", *(t.encode() for t in texts))
        g.attrs.update({"record": texts[0], "prompts": texts[1], "digests": digests})
        atomic_write(self.path / HEAD_FILE, f"{k + 1}\n")
        self.head = k + 1

    @contextmanager
    def lock(self) -> Iterator[None]:
        """One process per session: a second one is refused instead of corrupting it. Once locked,
        HEAD must still be where `open` read it (another process may have committed in between),
        a stale session.toml is brought up to date, and what a killed run left is removed."""
        lock_path = self.path / LOCK_FILE
        try:
            f = open(lock_path, "a+")
        except OSError as exc:
            raise _not_writable(lock_path, exc) from exc
        with f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError as exc:
                raise SessionError(f"{self.path} is in use by another streamt1 process: wait for it to finish") from exc
            try:
                if _read_head(self.path) != self.head:
                    raise SessionError(
                        f"{self.path} was extended by another streamt1 process while this one "
                        "started: run the command again"
                    )
                try:
                    if self._spec_stale:
                        self.write_spec()
                    for leftover in (p for pattern in LEFTOVERS for p in self.path.glob(pattern)):
                        if leftover.is_dir():
                            shutil.rmtree(leftover)
                        else:
                            leftover.unlink()
                except OSError as exc:
                    raise _not_writable(Path(exc.filename or self.path), exc) from exc
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def disk_bytes(self) -> int:
        """Bytes of the files under the session folder, counted while other processes may write."""
        return tree_bytes(self.path)

    def chunks_bytes(self) -> int:
        """Bytes of this session's own committed chunks (not its snapshots, videos or logs)."""
        return tree_bytes(self.path / STORE_DIR / "chunks")


def with_compute(record: dict[str, Any], compute: Compute) -> dict[str, Any]:
    """A chunk's record as committed: the loop's record and how the chunk was computed."""
    return record | {"compute": compute_to_plain(compute)}


def compute_in(record: dict[str, Any]) -> Compute | None:
    """How the chunk of a committed `record` (as `Session.record` reads it) was computed."""
    return compute_from_plain(record["compute"])


def _is_parent(session: Session, ref: ParentRef) -> bool:
    return session.spec.id == ref.id and session.head >= ref.at


def _looks_like_session(path: Path) -> bool:
    """A session's files are there (another tool's session.toml alone does not count)."""
    return all(os.path.isfile(path / name) for name in (SPEC_FILE, HEAD_FILE)) and os.path.isdir(path / STORE_DIR)


def _read_head(path: Path) -> int:
    head_path = path / HEAD_FILE
    try:
        text = head_path.read_text()
    except FileNotFoundError as exc:
        raise SessionError(f"{head_path} is missing: the session cannot be trusted") from exc
    except OSError as exc:
        raise SessionError(f"cannot read {head_path} ({reason(exc)}): check its permissions") from exc
    try:
        head = int(text.strip())
    except ValueError as exc:
        raise SessionError(f"{head_path} is corrupt: the session cannot be trusted") from exc
    if head < 0:
        raise SessionError(f"{head_path} is corrupt (head {head}): the session cannot be trusted")
    return head
