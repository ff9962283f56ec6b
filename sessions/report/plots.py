"""The report's figures, drawn with matplotlib's object API (no pyplot: no global state, safe in a
background writer thread) and embedded as PNG data URIs, whose size does not grow with the number
of points. A figure that does not apply to a session is a sentence saying why instead."""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass

from matplotlib.collections import LineCollection
from matplotlib.figure import Figure

from sessions.report.model import SessionView, lineage

DPI = 110
WIDTH = 10.0  # inches
SCATTER_CHUNKS = 250  # longer sessions show reward ranges per chunk instead of every candidate
TREE_CHUNKS = 48  # the beam tree shows the last this many chunks; wider, nodes would overlap
TIMING_BINS = 300  # longer sessions show the mean phase times of this many bins of chunks
KEPT, PRUNED, FINAL, ALIVE, BRANCH = "#1f77b4", "#b8b8b8", "#d62728", "#1f77b4", "#7f7f7f"
ROUTES = {"discard": "#9e9e9e", "ema": "#2ca02c", "append": "#ff7f0e"}
SCORES = ("short", "long", "fused")


@dataclass(frozen=True)
class Plot:
    """A titled figure, or the sentence that replaces it."""

    title: str
    uri: str | None = None  # data:image/png;base64,...
    note: str = ""


def _uri(fig: Figure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _marker_size(points: int) -> float:
    return max(1.0, min(28.0, 6000.0 / max(points, 1)))


def _mark_branch(ax, view: SessionView) -> None:
    if view.ancestors:
        at = view.ancestors[0].at
        ax.axvline(at - 0.5, color=BRANCH, ls=":", lw=1.2)
        ax.axvspan(-0.5, at - 0.5, color=BRANCH, alpha=0.08, lw=0)


def _chunk_axis(ax, view: SessionView) -> None:
    ax.set_xlim(-0.5, max(len(view.chunks), 2) - 0.5)
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.grid(alpha=0.25)


def rewards(view: SessionView) -> Plot:
    """Every candidate's short, long and fused score per chunk (ranges for long sessions), the final
    pick's path as a line; the fusion weight alpha on the right axis of the fused panel."""
    title = "Rewards"
    if not view.scored:
        return Plot(
            title,
            note="No reward plots: this is a plain LongLive session (--no-scaling), which makes one "
            "candidate a chunk and scores none.",
        )
    chunks = view.chunks
    rewards = view.spec.rewards
    names = {"short": rewards.short, "long": rewards.long} if rewards else {"short": "?", "long": "?"}
    size = _marker_size(sum(len(c.candidates) for c in chunks))
    fig = Figure(figsize=(WIDTH, 7.2), layout="constrained")
    axes = fig.subplots(3, 1, sharex=True)
    for ax, key in zip(axes, SCORES):
        if len(chunks) > SCATTER_CHUNKS:
            _bands(ax, chunks, key)
        else:
            _points(ax, chunks, key, size)
        ax.plot(
            [ch.chunk for ch in chunks],
            view.final_scores(key),
            color=FINAL,
            lw=1.4 if len(chunks) <= SCATTER_CHUNKS else 0.7,
            label="final pick",
            zorder=4,
        )
        ax.set_ylabel(f"{key}" + (f" ({names[key]})" if key in names else " score"))
        _chunk_axis(ax, view)
        _mark_branch(ax, view)
    twin = axes[2].twinx()
    twin.plot(
        [ch.chunk for ch in chunks],
        [ch.alpha for ch in chunks],
        color="#2ca02c",
        ls="--",
        lw=1.2,
        label="alpha (short-term weight)",
    )
    twin.set_ylim(0, 1)
    twin.set_ylabel("alpha")
    handles, labels = axes[0].get_legend_handles_labels()
    h2, l2 = twin.get_legend_handles_labels()
    axes[0].legend(handles + h2, labels + l2, loc="lower left", bbox_to_anchor=(0, 1.02), ncol=4, frameon=False)
    axes[2].set_xlabel("chunk")
    return Plot(title, _uri(fig))


def _points(ax, chunks, key: str, size: float) -> None:
    """Every candidate: survivors filled, pruned ones hollow."""
    for kept in (False, True):
        pts = [(ch.chunk, getattr(c, key)) for ch in chunks for c in ch.candidates if c.kept is kept]
        if pts:
            xs, ys = zip(*pts)
            if kept:
                ax.scatter(xs, ys, s=size, color=KEPT, label="survivor", zorder=3)
            else:
                ax.scatter(xs, ys, s=size, facecolors="none", edgecolors=PRUNED, label="pruned", zorder=2)


def _bands(ax, chunks, key: str) -> None:
    """Long sessions: the range of all candidates and of the survivors per chunk (thousands of
    points would be an unreadable, incompressible cloud)."""
    xs = [ch.chunk for ch in chunks]
    for kept, color, label in ((False, PRUNED, "all candidates (range)"), (True, KEPT, "survivors (range)")):
        values = [[getattr(c, key) for c in ch.candidates if c.kept or not kept] for ch in chunks]
        ax.fill_between(
            xs,
            [min(v) for v in values],
            [max(v) for v in values],
            color=color,
            alpha=0.55,
            lw=0,
            step="mid",
            label=label,
            zorder=2 + kept,
        )


def tree(view: SessionView) -> Plot:
    """Candidates as nodes (row = candidate index), edges to the candidate their parent beam kept.
    The final pick's path is red, other lineages alive at the head blue, dead ones dimmed."""
    title = "Beam tree"
    chunks = view.chunks
    if not view.scored:
        return Plot(title, note="No beam tree: a plain session keeps its one candidate a chunk.")
    first = max(0, len(chunks) - TREE_CHUNKS)
    note = "" if first == 0 else f"The last {TREE_CHUNKS} of {len(chunks)} chunks (from chunk {first})."
    alive = set()  # (chunk, candidate) with a descendant among the head's survivors
    for b in range(len(chunks[-1].beams)):
        for ch, beam in zip(chunks, lineage(chunks, b)):
            alive.add((ch.chunk, ch.beams[beam].candidate))
    final = set(zip(range(len(chunks)), view.final_candidates()))
    segments, colors, widths = [], [], []
    for prev, ch in zip(chunks[first:], chunks[first + 1 :]):
        for c in ch.candidates:
            src = (prev.chunk, prev.beams[c.parent].candidate)
            dst = (ch.chunk, c.index)
            segments.append([src, dst])
            on_final = src in final and dst in final
            colors.append(FINAL if on_final else ALIVE if dst in alive else PRUNED)
            widths.append(2.4 if on_final else 1.2 if dst in alive else 0.7)
    height = max(2.2, 0.45 * max(len(ch.candidates) for ch in chunks) + 1.2)
    fig = Figure(figsize=(WIDTH, height), layout="constrained")
    ax = fig.subplots()
    order = sorted(range(len(segments)), key=lambda i: widths[i])  # the final path drawn last, on top
    ax.add_collection(
        LineCollection(
            [segments[i] for i in order],
            colors=[colors[i] for i in order],
            linewidths=[widths[i] for i in order],
            zorder=1,
        )
    )
    nodes = [(ch.chunk, c.index, c.kept, (ch.chunk, c.index)) for ch in chunks[first:] for c in ch.candidates]
    size = _marker_size(len(nodes)) * 1.5
    for label, pick, style in (
        ("pruned", lambda kept, key: not kept, dict(facecolors="white", edgecolors=PRUNED)),
        ("survivor, later dead", lambda kept, key: kept and key not in alive, dict(color="#555555")),
        ("alive at the head", lambda kept, key: key in alive and key not in final, dict(color=ALIVE)),
        ("final pick", lambda kept, key: key in final, dict(color=FINAL)),
    ):
        pts = [(x, y) for x, y, kept, key in nodes if pick(kept, key)]
        if pts:
            xs, ys = zip(*pts)
            ax.scatter(xs, ys, s=size, label=label, zorder=2, **style)
    ax.set_xlim(first - 0.5, len(chunks) - 0.5)
    ax.set_ylim(max(len(ch.candidates) for ch in chunks) - 0.5, -0.5)
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.yaxis.get_major_locator().set_params(integer=True)
    ax.set_xlabel("chunk")
    ax.set_ylabel("candidate")
    _mark_branch(ax, view)
    ax.legend(loc="lower left", bbox_to_anchor=(0, 1.02), ncol=4, frameon=False)
    return Plot(title, _uri(fig), note)


def sinks(view: SessionView) -> Plot:
    """Sink size per surviving beam after each chunk, and every eviction with the route it took."""
    title = "Memory sink"
    if not view.scored:
        return Plot(title, note="No sink timeline: plain LongLive evicts first in, first out, with no reward routing.")
    chunks = view.chunks
    fig = Figure(figsize=(WIDTH, 4.6), layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=(3, 2))
    slots = max(len(ch.beams) for ch in chunks)
    for b in range(slots):
        pts = [(ch.chunk, ch.beams[b].sink_frames) for ch in chunks if b < len(ch.beams)]
        xs, ys = zip(*pts)
        top.step(xs, ys, where="mid", lw=1, alpha=0.7, label=f"beam {b}")
    top.step(
        range(len(chunks)),
        [ch.beams[b].sink_frames for ch, b in zip(chunks, view.final_path)],
        where="mid",
        color=FINAL,
        lw=2,
        label="final pick",
    )
    top.axhline(view.spec.scaling.max_sink_frames, color="k", ls="--", lw=0.8, label="max sink")
    top.set_ylim(0, view.spec.scaling.max_sink_frames + 1)
    top.set_ylabel("sink (latent frames)")
    rows = ["final pick"] + [f"beam {b}" for b in range(slots)]
    size = _marker_size(len(view.evictions)) * 1.5
    for route, color in ROUTES.items():
        pts = [(e.chunk, 1 + e.beam) for e in view.evictions if e.route == route]
        pts += [(e.chunk, 0) for e in view.evictions if e.route == route and view.final_path[e.chunk] == e.beam]
        if pts:
            xs, ys = zip(*pts)
            bottom.scatter(xs, ys, s=size, marker="s", color=color, label=route)
    bottom.set_yticks(range(len(rows)), rows)
    bottom.set_ylim(len(rows) - 0.5, -0.5)
    bottom.set_xlabel("chunk (evictions: when the chunk left the window)")
    handles, labels = top.get_legend_handles_labels()
    h2, l2 = bottom.get_legend_handles_labels()
    top.legend(
        handles + h2,
        labels + [f"route: {r}" for r in l2],
        loc="lower left",
        bbox_to_anchor=(0, 1.02),
        ncol=5,
        frameon=False,
    )
    for ax in (top, bottom):
        _chunk_axis(ax, view)
        _mark_branch(ax, view)
    note = "" if view.evictions else "No chunk has left the rolling window yet."
    return Plot(title, _uri(fig), note)


def timing(view: SessionView) -> Plot:
    """Wall seconds per phase and chunk, stacked; long sessions show bin means."""
    title = "Time per phase"
    chunks = view.chunks
    phases = list(dict.fromkeys(p for ch in chunks for p in ch.seconds))
    bins = min(len(chunks), TIMING_BINS)
    edges = [round(i * len(chunks) / bins) for i in range(bins + 1)]
    xs, series = [], {p: [] for p in phases}
    for lo, hi in zip(edges, edges[1:]):
        xs.append((lo + hi - 1) / 2)
        for p in phases:
            series[p].append(sum(ch.seconds.get(p, 0.0) for ch in chunks[lo:hi]) / (hi - lo))
    fig = Figure(figsize=(WIDTH, 3.4), layout="constrained")
    ax = fig.subplots()
    if len(xs) == 1:
        bottom = 0.0
        for p in phases:
            ax.bar(xs, series[p], bottom=bottom, width=0.6, label=p)
            bottom += series[p][0]
    else:
        ax.stackplot(xs, *(series[p] for p in phases), labels=phases, alpha=0.85)
    ax.set_ylabel("seconds per chunk")
    ax.set_xlabel("chunk")
    _chunk_axis(ax, view)
    _mark_branch(ax, view)
    ax.legend(loc="lower left", bbox_to_anchor=(0, 1.02), ncol=5, frameon=False)
    note = "" if bins == len(chunks) else f"Means over {bins} bins of ~{len(chunks) / bins:.1f} chunks."
    return Plot(title, _uri(fig), note)


def compare(views: list[SessionView], names: list[str]) -> Plot:
    """The final pick's short, long and fused score of each session on shared axes."""
    title = "Rewards of the final picks"
    scored = [(v, n) for v, n in zip(views, names) if v.scored and v.chunks]
    if not scored:
        return Plot(title, note="No reward comparison: none of these sessions is scored (all are plain LongLive).")
    fig = Figure(figsize=(WIDTH, 6.4), layout="constrained")
    axes = fig.subplots(3, 1, sharex=True)
    for ax, key in zip(axes, SCORES):
        for v, name in scored:
            ax.plot(
                range(len(v.chunks)),
                v.final_scores(key),
                lw=1.4,
                marker="o" if len(v.chunks) <= 60 else None,
                ms=3,
                label=name,
            )
            if v.ancestors:
                ax.axvline(v.ancestors[0].at - 0.5, color=ax.lines[-1].get_color(), ls=":", lw=1)
        ax.set_ylabel(key)
        ax.grid(alpha=0.25)
        ax.xaxis.get_major_locator().set_params(integer=True)
    axes[0].legend(loc="lower left", bbox_to_anchor=(0, 1.02), ncol=3, frameon=False)
    axes[2].set_xlabel("chunk (dotted: a branch's branch point)")
    note = "" if len(scored) == len(views) else "Plain sessions have no scores and are left out."
    return Plot(title, _uri(fig), note)
