"""Which surviving beam a video is made of at each chunk: the final pick saved for the head, and
lineages read back from the chunk records. Light (no model code), so every reader can use it."""

from __future__ import annotations

import json

from sessions.store import Session, SessionError

FINAL_FILE = "final.json"


def save_final_pick(session: Session, beam: int) -> None:
    """Record the final pick for the current head; export, show and the report read it."""
    (session.path / FINAL_FILE).write_text(json.dumps({"head": session.head, "beam": beam}))


def final_beam(session: Session) -> int:
    """The final pick saved for the current head, else beam 0 (beams are stored best fused first)."""
    path = session.path / FINAL_FILE
    if path.exists():
        pick = json.loads(path.read_text())
        if pick.get("head") == session.head:
            return int(pick["beam"])
    return 0


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
