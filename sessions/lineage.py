"""Which surviving beam a video is made of at each chunk, read back from the chunk records."""

from __future__ import annotations

from sessions.store import Session, SessionError


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
