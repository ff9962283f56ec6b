"""Which surviving beam a video is made of at each chunk: the final pick saved for the head, and
lineages read back from the chunk records. Light (no model code), so every reader can use it."""

from __future__ import annotations

import json
from pathlib import Path

from sessions.files import atomic_write, reason
from sessions.store import Session, SessionError

FINAL_FILE = "final.json"


def save_final_pick(session: Session, beam: int) -> None:
    """Record the final pick for the current head, atomically; export, show and the report read it."""
    try:
        atomic_write(session.path / FINAL_FILE, json.dumps({"head": session.head, "beam": beam}))
    except OSError as exc:
        raise SessionError(
            f"writing {session.path / FINAL_FILE} failed ({reason(exc)}): all {session.head} chunks "
            "are committed; fix that and `streamt1 continue` it"
        ) from exc


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
    if not (
        isinstance(pick, dict)
        and all(isinstance(pick.get(k), int) and not isinstance(pick[k], bool) for k in ("head", "beam"))
    ):
        raise _bad_pick(path, "not a {head, beam} pair of whole numbers")
    if pick["head"] != session.head or session.head == 0:
        return 0
    beams = len(session.record(session.head - 1)["beams"])
    if not 0 <= pick["beam"] < beams:
        raise _bad_pick(path, f"beam {pick['beam']}, but the last chunk has beams 0..{beams - 1}")
    return pick["beam"]


def _bad_pick(path: Path, why: str) -> SessionError:
    return SessionError(f"{path} is not a final pick written by streamt1 ({why}): delete it to use the best-fused beam")


def lineage(session: Session, beam: int, upto: int) -> list[int]:
    """Beam index at every chunk < upto of the lineage ending in `beam` at chunk upto - 1."""
    last = session.record(upto - 1)
    if not 0 <= beam < len(last["beams"]):
        raise SessionError(
            f"--beam {beam} is out of range: chunk {upto - 1} of {session.path} has beams 0..{len(last['beams']) - 1}"
        )
    indices = [beam]
    for k in range(upto - 1, 0, -1):
        record = last if k == upto - 1 else session.record(k)
        indices.insert(0, record["candidates"][record["beams"][indices[0]]["candidate"]]["parent"])
    return indices
