"""The JSON island of a report (`<script type="application/json" id="streamt1-data">`): the data
the page shows, for scripts and tests to read back without parsing HTML."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from sessions.report.model import SessionView
from sessions.report.plots import Plot
from sessions.report.thumbs import Thumb

FORMAT, VERSION = "streamt1-report", 1


def session_data(
    view: SessionView, name: str, video_href: str, plots: list[Plot], thumbs: list[Thumb]
) -> dict[str, Any]:
    return {
        "name": name,
        "path": str(view.path),
        "video": video_href,
        "spec": view.spec.to_dict(),
        "untrained": view.untrained,
        "scored": view.scored,
        "ancestors": [asdict(a) for a in view.ancestors],
        "head": len(view.chunks),
        "final_beam": view.final_beam,
        "final_path": list(view.final_path),
        "final_candidates": view.final_candidates(),
        "chunks": [asdict(ch) for ch in view.chunks],
        "computes": [asdict(c) for c in view.computes],
        "evictions": [asdict(e) for e in view.evictions],
        "contact_sheet": [
            {
                "chunk": t.chunk,
                "beam": t.beam,
                "frame": t.frame,
                "seconds": t.seconds,
                "href": f"{video_href}#t={t.seconds:.3f}",
            }
            for t in thumbs
        ],
        "plots": {p.title: {"image": p.uri is not None, "note": p.note} for p in plots},
    }


def report_data(sessions: list[dict[str, Any]], generated: str) -> dict[str, Any]:
    return {"format": FORMAT, "version": VERSION, "generated": generated, "sessions": sessions}
