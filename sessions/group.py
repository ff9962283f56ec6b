"""A session run by a group of processes (candidate-parallel Stream-T1): the leader (rank 0) owns the
folder, the lock and every write; the other ranks open the same folder read-only, resume to the same
head and take the same steps, so the loop's collectives line up. Ranks that would not compute the
same chunks are refused before anything is generated."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import torch

from engine.models.factory import Models
from engine.parallel import Ranks
from engine.stream import ChunkLoop
from sessions.runner import resume
from sessions.store import Session

PACKAGES = ("engine", "sessions", "streamt1_cli")


def code_digest() -> str:
    """Digest of this streamt1's source: ranks running other code would decide differently."""
    root = Path(__file__).resolve().parent.parent
    h = hashlib.blake2b(digest_size=8)
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            h.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


def weights_digest(modules: list[torch.nn.Module]) -> str:
    """Digest of the weights' float64 sums, one per tensor: cheap, and any different checkpoint,
    dtype or load shows (a checksum of every byte would cost seconds at real size)."""
    sums = [
        p.detach().double().sum().item()
        for m in modules
        for p in m.state_dict().values()
        if torch.is_tensor(p) and p.is_floating_point()
    ]
    return hashlib.blake2b(json.dumps(sums).encode(), digest_size=8).hexdigest()


def run_facts(command: list[str], models: Models, scorers: tuple[object, ...] | None) -> dict[str, str]:
    """What every rank of a session must agree on before its first chunk: the command, the code,
    the weights and how they compute."""
    scorer_modules = [m for s in scorers or () for m in vars(s).values() if isinstance(m, torch.nn.Module)]
    return {
        "command": json.dumps(command),
        "code": code_digest(),
        "torch": torch.__version__,
        "compute": f"{models.device.type}/{models.dtype}",
        "weights": weights_digest([models.transformer, models.decoder.vae, *scorer_modules]),
    }


def join(ranks: Ranks, path: Path, make: Callable[[], Session]) -> Session:
    """The session every rank works on: the leader makes (or opens) it with `make`, the others open
    it once it exists."""
    session = make() if ranks.leader else None
    ranks.barrier()
    return session if session is not None else Session.open(path)


def follow(session: Session, loop: ChunkLoop, num_chunks: int, new_prompt: str | None) -> None:
    """A non-leading rank: the leader's resume and chunks, with nothing written."""
    start = session.head
    if start:
        resume(loop, session)
    if new_prompt is not None and new_prompt != loop.prompt_at(start):
        loop.schedule = session.spec.reprompted(start, new_prompt).schedule
    for _ in range(num_chunks):
        loop.step()
