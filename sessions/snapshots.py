"""State snapshots in the session store: every M chunks (and when a run stops) the loop's whole
state (each beam's KV cache segments with their frames and routes, its decoder cache, its reward
window, noise and statistics), so `continue` and `branch` load the nearest snapshot and replay at
most M chunks instead of the whole video.

A snapshot is written into a hidden group and renamed into `store.zarr/snapshots/<head>` when
complete, so a kill in the middle leaves only a stray hidden group (removed by the next run) and
every older snapshot intact. Each array carries a CRC-32 that also covers the session id, the
head and the array's name, so a damaged, truncated or moved array is caught on load, and the
caller falls back to an older snapshot or to replay. bf16 tensors are stored bit-exactly as their
uint16 view (numpy has no bfloat16) with the real dtype beside them.
"""

from __future__ import annotations

import json
import shutil
import time
import uuid
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import zarr
from torch import Tensor

from sessions.files import tree_bytes
from sessions.store import STORE_DIR, Session, SessionError

if TYPE_CHECKING:  # `show` counts snapshots through this module: the engine is imported only to read one
    from engine.stream import LoopState

SNAPSHOT_DIR = "snapshots"
_HIDDEN = ".writing-"


@dataclass(frozen=True)
class SnapshotWrite:
    head: int
    bytes: int
    seconds: float


def _digest(identity: str, data: np.ndarray) -> str:
    return f"{zlib.crc32(np.ascontiguousarray(data).data, zlib.crc32(identity.encode())):08x}"


def _to_numpy(t: Tensor) -> tuple[np.ndarray, str]:
    t = t.detach().cpu().contiguous()
    dtype = str(t.dtype).removeprefix("torch.")
    if t.dtype == torch.bfloat16:
        t = t.view(torch.uint16)
    return t.numpy(), dtype


def _from_numpy(data: np.ndarray, dtype: str, device: torch.device) -> Tensor:
    """On the CPU a copy into torch's own (aligned) memory, as the loop's tensors live in; on a GPU
    the copy to the device does that."""
    t = torch.from_numpy(np.ascontiguousarray(data))
    t = t.view(torch.bfloat16) if dtype == "bfloat16" else t
    return t if device.type != "cpu" else t.clone()


def _folder(session: Session) -> Path:
    return session.path / STORE_DIR / SNAPSHOT_DIR


def snapshot_heads(session: Session) -> list[int]:
    """Heads of the complete snapshots in this session's own store, newest first."""
    folder = _folder(session)
    if not folder.is_dir():
        return []
    return sorted((int(p.name) for p in folder.iterdir() if p.name.isdigit()), reverse=True)


def snapshots_bytes(session: Session) -> int:
    """Disk use of this session's snapshots (complete or being written)."""
    return tree_bytes(_folder(session))


def write_snapshot(session: Session, state: LoopState, keep: int) -> SnapshotWrite:
    """Store `state` (the loop after `state.chunk` chunks) and keep only the `keep` newest."""
    started = time.perf_counter()
    folder = _folder(session)
    final = folder / str(state.chunk)
    if final.exists():
        return SnapshotWrite(state.chunk, 0, 0.0)
    folder.mkdir(parents=True, exist_ok=True)
    hidden = folder / f"{_HIDDEN}{state.chunk}-{uuid.uuid4().hex}"
    try:
        _write_group(session, state, hidden)
    except BaseException:
        shutil.rmtree(hidden, ignore_errors=True)
        raise
    hidden.rename(final)
    for old in snapshot_heads(session)[keep:]:
        shutil.rmtree(folder / str(old), ignore_errors=True)
    return SnapshotWrite(state.chunk, tree_bytes(final), time.perf_counter() - started)


def _write_group(session: Session, state: LoopState, hidden: Path) -> None:
    group = zarr.open_group(hidden, mode="w", zarr_format=3)
    metas, digests, dtypes = [], {}, {}
    for b, beam in enumerate(state.beams):
        meta, tensors = beam.to_parts()
        metas.append(meta)
        for name, value in tensors.items():
            key = f"b{b}.{name}"
            stacked = torch.stack([t.cpu() for t in value]) if isinstance(value, tuple) else value
            data, dtypes[key] = _to_numpy(stacked)
            # uncompressed: bf16 activations barely compress, and zstd made a 4.5 GB snapshot take 37 s
            group.create_array(key, shape=data.shape, dtype=data.dtype, chunks=data.shape, compressors=None)[...] = data
            digests[key] = _digest(f"{session.spec.id}/{state.chunk}/{key}", data)
    group.attrs["snapshot"] = json.dumps({"chunk": state.chunk, "beams": metas, "digests": digests, "dtypes": dtypes})


def remove_unfinished(session: Session) -> None:
    """Drop the hidden groups that a killed snapshot write left behind (called under the lock)."""
    folder = _folder(session)
    if folder.is_dir():
        for p in folder.iterdir():
            if p.name.startswith(_HIDDEN):
                shutil.rmtree(p, ignore_errors=True)


def read_snapshot(session: Session, head: int, device: torch.device, dtype: torch.dtype) -> LoopState:
    """The loop state stored at `head`, its KV cache in `dtype` (a session continued in another
    dtype); a SessionError names what is damaged."""
    from engine.beam import BeamState
    from engine.stream import LoopState

    path = _folder(session) / str(head)
    try:
        group = zarr.open_group(path, mode="r")
        info = json.loads(group.attrs["snapshot"])
        beams = []
        for b, meta in enumerate(info["beams"]):
            prefix = f"b{b}."
            tensors = {}
            for key in (k for k in info["digests"] if k.startswith(prefix)):
                data = np.asarray(group[key][...])
                if _digest(f"{session.spec.id}/{head}/{key}", data) != info["digests"][key]:
                    raise SessionError(f"{key} does not match its digest")
                tensors[key.removeprefix(prefix)] = _from_numpy(data, info["dtypes"][key], device)
            beams.append(BeamState.from_parts(meta, tensors).to(device, dtype))
    except SessionError as exc:
        raise SessionError(f"snapshot {head} of {session.path} is damaged ({exc})") from exc
    except Exception as exc:  # any failure to read it back means it cannot be trusted
        raise SessionError(f"snapshot {head} of {session.path} is damaged ({type(exc).__name__})") from exc
    if info["chunk"] != head:
        raise SessionError(f"snapshot {head} of {session.path} is damaged (it holds chunk {info['chunk']})")
    return LoopState(head, tuple(beams))
