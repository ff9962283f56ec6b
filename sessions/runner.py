"""Runs a stream against a session: replay what is committed, generate and commit more, pick and
export the final video. The only place where the engine's state meets the store."""

from __future__ import annotations

import json
import time
from concurrent.futures import Future, ThreadPoolExecutor
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import torch
from torch import Tensor

from engine.config import StreamConfig
from engine.models.factory import Models
from engine.rewards.base import ClipScorer, FrameScorer
from engine.scaling.config import ScalingConfig
from engine.scaling.search import BeamSearchStream, ChunkRecord
from sessions.files import atomic_write, reason
from sessions.store import Session, SessionError, SessionSpec

FINAL_FILE = "final.json"


def spec_for(preset: str, seed: int, config: StreamConfig, scaling: ScalingConfig | None,
             rewards: tuple[str, str] | None, schedule: dict[int, str]) -> SessionSpec:
    return SessionSpec(
        preset=preset, seed=seed,
        stream={"chunk_frames": config.chunk_frames, "sink_frames": config.sink_frames,
                "local_window_frames": config.local_window_frames},
        scaling=None if scaling is None else asdict(scaling),
        rewards=None if rewards is None else list(rewards),
        prompts=[{"from_chunk": k, "prompt": p} for k, p in sorted(schedule.items())],
    )


def compute_of(device: torch.device, dtype: torch.dtype) -> dict[str, str]:
    """How chunks are computed, as a session records it: the same inputs on another device or in
    another dtype give other numbers, so resuming elsewhere is not bitwise an uninterrupted run."""
    return {"device": device.type, "dtype": str(dtype).removeprefix("torch.")}


def stream_config(spec: SessionSpec) -> StreamConfig:
    return StreamConfig(**spec.stream)


def scaling_config(spec: SessionSpec) -> ScalingConfig | None:
    return None if spec.scaling is None else ScalingConfig(**spec.scaling)


def open_stream(spec: SessionSpec, models: Models, scorers: tuple[FrameScorer, ClipScorer] | None) -> BeamSearchStream:
    return BeamSearchStream(models, stream_config(spec), scaling_config(spec), scorers, spec.seed, spec.schedule)


def replay(stream: BeamSearchStream, session: Session, upto: int | None = None,
           on_chunk: Callable[[int], None] | None = None) -> None:
    """Rebuild the stream's exact state after the first `upto` (default: all) committed chunks."""
    for stored in session.chunks(upto):
        stream.restore(stored.record, stored.latents, stored.noise)
        if on_chunk:
            on_chunk(stored.record["chunk"])


def generate(stream: BeamSearchStream, session: Session, num_chunks: int,
             on_record: Callable[[ChunkRecord], None],
             after_commit: Callable[[dict], None] | None = None) -> None:
    """Generate `num_chunks` chunks; a background thread commits each (whole or not at all, in
    order) while the next one generates. `record.seconds["commit_wait"]` is how long generation
    waited on the disk; `after_commit(stored_record)` runs in the writer right after a chunk is
    committed. Leaving this function (even by Ctrl-C) first finishes the writes already queued."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="session-writer") as writer:
        queued: list[Future] = []
        for _ in range(num_chunks):
            record = stream.step()
            payload = record.to_json()
            payload["prompt"] = stream.prompt_at(record.chunk)
            latents = torch.stack([b.latents[-1] for b in stream.beams])
            noise = torch.stack([b.noise for b in stream.beams])
            frames = torch.stack([b.frames[-1] for b in stream.beams])
            started = time.perf_counter()
            for done in [f for f in queued if f.done()]:
                done.result()  # a failed write stops the run here, with the session at its last whole chunk
                queued.remove(done)
            if len(queued) > 1:  # never run more than one chunk ahead of the disk
                queued.pop(0).result()
            record.seconds["commit_wait"] = time.perf_counter() - started
            queued.append(writer.submit(_commit, session, payload, latents, noise, frames, after_commit))
            on_record(record)
        for future in queued:
            future.result()


def _commit(session: Session, payload: dict, latents: Tensor, noise: Tensor, frames: Tensor,
            after_commit: Callable[[dict], None] | None) -> None:
    try:
        session.commit(payload, latents, noise, frames)
        if after_commit is not None:
            after_commit(payload)
    except OSError as exc:  # disk full, permissions, a vanished folder: the run stops at a whole chunk
        raise SessionError(f"writing chunk {payload['chunk']} of {session.path} failed ({exc.strerror or exc}): "
                           f"it holds {session.head} whole chunks; fix that and `streamt1 continue` it") from exc


def save_final_pick(stream: BeamSearchStream, session: Session) -> int:
    """The reference's final pick (best surviving beam by the long-term scorer on the whole video)
    for the current head, written atomically; export reads it."""
    beam = stream.best_beam_index()
    try:
        atomic_write(session.path / FINAL_FILE, json.dumps({"head": session.head, "beam": beam}))
    except OSError as exc:
        raise SessionError(f"writing {session.path / FINAL_FILE} failed ({reason(exc)}): all {session.head} chunks "
                           "are committed; fix that and `streamt1 continue` it") from exc
    return beam


def final_beam(session: Session) -> int:
    """The saved final pick when it is for the current head, else beam 0 (beams are stored
    best-fused first). A final.json that is not a pick of this session is an error, not a guess."""
    path = session.path / FINAL_FILE
    try:
        pick = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return 0
    except (OSError, ValueError) as exc:  # unreadable, not UTF-8, not JSON
        raise _bad_pick(path, type(exc).__name__) from exc
    if not (isinstance(pick, dict) and all(isinstance(pick.get(k), int) and not isinstance(pick[k], bool)
                                           for k in ("head", "beam"))):
        raise _bad_pick(path, "not a {head, beam} pair of whole numbers")
    if pick["head"] != session.head or session.head == 0:
        return 0
    beams = len(session.record(session.head - 1)["beams"])
    if not 0 <= pick["beam"] < beams:
        raise _bad_pick(path, f"beam {pick['beam']}, but the last chunk has beams 0..{beams - 1}")
    return pick["beam"]


def _bad_pick(path: Path, why: str) -> SessionError:
    return SessionError(f"{path} is not a final pick written by streamt1 ({why}): delete it to use the "
                        "best-fused beam")


def lineage(session: Session, beam: int, upto: int) -> list[int]:
    """Beam index at every chunk < upto of the lineage ending in `beam` at chunk upto - 1."""
    last = session.record(upto - 1)
    if not 0 <= beam < len(last["beams"]):
        raise SessionError(f"--beam {beam} is out of range: chunk {upto - 1} of {session.path} has beams "
                           f"0..{len(last['beams']) - 1}")
    indices = [beam]
    for k in range(upto - 1, 0, -1):
        record = last if k == upto - 1 else session.record(k)
        indices.insert(0, record["candidates"][record["beams"][indices[0]]["candidate"]]["parent"])
    return indices


def video_frames(session: Session, beam: int | None = None, upto: int | None = None) -> list[Tensor]:
    """Stored uint8 frames [3, F, H, W] per chunk of one surviving beam's video at the head (default:
    the final pick), optionally only its first `upto` chunks."""
    upto = session.head if upto is None else upto
    if not 1 <= upto <= session.head:
        raise SessionError(f"--upto {upto} is out of range: {session.path} has {session.head} chunks")
    beams = lineage(session, final_beam(session) if beam is None else beam, session.head)
    return [session.chunk(k).frames[b] for k, b in enumerate(beams[:upto])]
