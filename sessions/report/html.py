"""HTML assembly: one self-contained page (inline CSS and images, no script, no server), with the
report's data as a JSON island. Everything from a session is escaped."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict
from html import escape
from typing import Any

from sessions.report.model import SessionView
from sessions.report.plots import Plot
from sessions.report.thumbs import Thumb

DATA_ID = "streamt1-data"

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;color:#222;background:#fafafa}
main{max-width:1120px;margin:0 auto;padding:16px 24px 48px}
h1{font-size:22px;margin:8px 0 4px}h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid #ddd}
h3{font-size:15px;margin:18px 0 6px}
.warn{background:#fff3cd;border:1px solid #e0c36a;padding:6px 10px;border-radius:4px;display:inline-block}
table.spec{border-collapse:collapse}table.spec td{padding:2px 12px 2px 0;vertical-align:top}
table.spec td:first-child{color:#666;white-space:nowrap}
img.plot{max-width:100%;height:auto;background:#fff;border:1px solid #e4e4e4}
p.note{color:#555;font-style:italic}
.sheet{display:flex;flex-wrap:wrap;gap:6px}
.sheet figure{margin:0;text-align:center;font-size:11px;color:#555}
.sheet img,table.align img{height:96px;image-rendering:pixelated;display:block;border:1px solid #ccc}
.sheet a:hover img,table.align a:hover img{outline:2px solid #d62728}
.scroll{overflow-x:auto}table.align{border-collapse:collapse}
table.align td,table.align th{padding:2px 3px;font-size:11px;font-weight:normal;color:#555;white-space:nowrap}
details>summary{cursor:pointer;font-size:18px;margin:28px 0 8px}
"""


def _rows(rows: list[tuple[str, str]]) -> str:
    return "<table class=spec>" + "".join(f"<tr><td>{escape(k)}</td><td>{v}</td></tr>" for k, v in rows) + "</table>"


def _plot(plot: Plot) -> str:
    out = f"<h3>{escape(plot.title)}</h3>"
    if plot.uri:
        out += f'<img class=plot alt="{escape(plot.title)}" src="{plot.uri}">'
    if plot.note:
        out += f"<p class=note>{escape(plot.note)}</p>"
    return out


def _thumb(t: Thumb, video_href: str, caption: str) -> str:
    return (
        f'<a href="{escape(video_href)}#t={t.seconds:.3f}" title="chunk {t.chunk}, beam {t.beam}, frame {t.frame}">'
        f'<img alt="chunk {t.chunk}" src="{t.uri}"></a>{caption}'
    )


def compute_rows(view: SessionView) -> list[tuple[str, str]]:
    """How the chunks were computed; a warning where they were computed in more than one way (those
    after a change are not bitwise an unbroken run's)."""
    recorded = {c.compute for c in view.computes if c.compute is not None}
    if len(view.computes) > 1:
        spans = escape(", ".join(map(str, view.computes)))
        return [("computed on", f"<span class=warn>{spans}</span>" if len(recorded) > 1 else spans)]
    compute = view.computes[0].compute if view.computes else view.spec.compute
    return [] if compute is None else [("computed on", escape(str(compute)))]


def spec_rows(view: SessionView, video_href: str, video_exists: bool) -> list[tuple[str, str]]:
    """Spec, lineage and a summary of the run, as (label, HTML) rows."""
    spec = view.spec
    sc = spec.scaling
    mode = (
        "plain LongLive (one candidate a chunk, no rewards)"
        if sc is None
        else f"Stream-T1: {sc.beam_size} children x {sc.top_k} beams = {sc.candidates} candidates a chunk"
    )
    rows = [
        ("session", escape(str(view.path))),
        ("id", escape(spec.id)),
        (
            "preset",
            escape(spec.preset)
            + (
                " <span class=warn>UNTRAINED random-init weights: the video is noise by design</span>"
                if view.untrained
                else ""
            ),
        ),
        ("seed", str(spec.seed)),
        ("mode", escape(mode)),
    ]
    if spec.rewards:
        rows.append(("rewards", f"short: {escape(spec.rewards.short)}, long: {escape(spec.rewards.long)}"))
    if sc is not None:
        rows.append(("knobs", escape(", ".join(f"{k} {v}" for k, v in asdict(sc).items()))))
    rows.append(("stream", escape(", ".join(f"{k} {v}" for k, v in asdict(spec.stream).items()))))
    rows.extend(compute_rows(view))
    rows.append(("prompts", "<br>".join(f"from chunk {p.from_chunk}: {escape(p.prompt)}" for p in spec.prompts)))
    if view.ancestors:
        chain = " &larr; ".join(f"{escape(a.path)} (chunks 0..{a.at - 1})" for a in view.ancestors)
        rows.append(("branch point", f"<b>chunk {view.ancestors[0].at}</b>: chunks before it are its parent's"))
        rows.append(("lineage", chain))
    else:
        rows.append(("lineage", "an original session (not a branch)"))
    rows.append(("chunks", f"{len(view.chunks)} committed"))
    if view.chunks:
        rows.append(("final pick", f"beam {view.final_beam} at the head"))
        seconds = sum(sum(ch.seconds.values()) for ch in view.chunks)
        rows.append(("time", f"{seconds:.1f} s in the chunk loop ({seconds / len(view.chunks):.2f} s a chunk)"))
    if view.evictions:
        routes = Counter(e.route for e in view.evictions if view.final_path[e.chunk] == e.beam)
        rows.append(
            ("final pick's evictions", escape(", ".join(f"{r} {n}" for r, n in sorted(routes.items())) or "none"))
        )
    video = f'<a href="{escape(video_href)}">{escape(video_href)}</a>'
    rows.append(("video", video if video_exists else video + " (written when the run ends; not there yet)"))
    return rows


def session_section(
    view: SessionView,
    name: str,
    plots: list[Plot],
    thumbs: list[Thumb],
    video_href: str,
    video_exists: bool,
    sampled: bool,
) -> str:
    sheet = "".join(f"<figure>{_thumb(t, video_href, f'{t.chunk} &middot; {t.seconds:.2f}s')}</figure>" for t in thumbs)
    sheet_note = "<p class=note>Evenly sampled chunks; the JSON island lists which.</p>" if sampled else ""
    return (
        f"<section><h2>{escape(name)}</h2>{_rows(spec_rows(view, video_href, video_exists))}"
        + "".join(_plot(p) for p in plots)
        + f"<h3>Contact sheet (final pick; click a frame to open the video there)</h3>{sheet_note}"
        + (f"<div class=sheet>{sheet}</div>" if thumbs else "<p class=note>No chunk committed yet.</p>")
        + "</section>"
    )


def compare_section(
    names: list[str], plot: Plot, sheets: list[list[Thumb]], chunks: list[int], video_hrefs: list[str]
) -> str:
    """Rewards on one axis, and the contact sheets in one table, a column per chunk."""
    head = "<tr><th></th>" + "".join(f"<th>{k}</th>" for k in chunks) + "</tr>"
    body = ""
    for name, thumbs, href in zip(names, sheets, video_hrefs):
        by_chunk: dict[int, list[Thumb]] = {}
        for t in thumbs:
            by_chunk.setdefault(t.chunk, []).append(t)
        cells = "".join("<td>" + "".join(_thumb(t, href, "") for t in by_chunk.get(k, [])) + "</td>" for k in chunks)
        body += f"<tr><th>{escape(name)}</th>{cells}</tr>"
    return (
        f"<section><h2>Comparison</h2>{_plot(plot)}<h3>Contact sheets by chunk (final picks)</h3>"
        f"<div class=scroll><table class=align>{head}{body}</table></div></section>"
    )


def page(title: str, subtitle: str, sections: list[str], data: dict[str, Any]) -> str:
    island = json.dumps(data, separators=(",", ":")).replace("</", "<\\/")  # no early end of the script element
    return (
        f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{escape(title)}</title>"
        f"<meta name=viewport content='width=device-width,initial-scale=1'><style>{CSS}</style></head><body><main>"
        f"<h1>{escape(title)}</h1><p class=note>{escape(subtitle)}</p>{''.join(sections)}</main>"
        f'<script type="application/json" id="{DATA_ID}">{island}</script></body></html>\n'
    )
