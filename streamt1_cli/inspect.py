"""`list`, `show` and `export`: read sessions, never change them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import imageio.v3 as iio
import typer
from rich.console import Console
from rich.table import Table

from engine.errors import StreamT1Error
from engine.models.presets import PRESETS
from sessions.runner import final_beam, lineage, stream_config, video_frames
from sessions.store import SPEC_FILE, Session
from sessions.video import Mp4Writer, frames_hwc
from streamt1_cli.common import console, fail

stdout = Console()


def list_(root: Annotated[Path, typer.Argument(help="Folder to search for sessions.")] = Path(".")) -> None:
    """List the sessions under a folder."""
    table = Table("session", "preset", "chunks", "scaling", "prompts", "branch of")
    for spec_path in sorted(root.rglob(SPEC_FILE)):
        try:
            s = Session.open(spec_path.parent)
        except StreamT1Error as err:
            table.add_row(str(spec_path.parent), "-", "-", "-", f"[red]{err}[/]", "-")
            continue
        parent = "-" if s.spec.parent is None else f"{s.spec.parent['path']} @ {s.spec.parent['at']}"
        table.add_row(str(s.path), s.spec.preset, str(s.head), "plain" if s.spec.scaling is None else "Stream-T1",
                      str(len(s.spec.prompts)), parent)
    stdout.print(table)


def chunk_bytes_at(preset_name: str, beams: int) -> int:
    """Bytes one chunk adds at a preset's geometry, uncompressed: latents + noise (float32) and
    decoded frames (uint8) of every surviving beam."""
    p = PRESETS[preset_name]
    latent = p.transformer["in_channels"] * 3 * p.latent_height * p.latent_width * 4
    frames = 3 * 12 * p.height * p.width
    return beams * (2 * latent + frames)


def show(
    path: Annotated[Path, typer.Argument(help="The session.")],
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output on stdout.")] = False,
) -> None:
    """Chunks, prompts, rewards, sink events, lineage and disk use of a session."""
    try:
        s = Session.open(path)
        chunks = [s.chunk(k).record for k in range(s.head)]
    except StreamT1Error as err:
        fail(str(err))
    beams = len(chunks[-1]["beams"]) if chunks else 1
    real_chunk = chunk_bytes_at("longlive", beams)
    info = {
        "path": str(s.path),
        "preset": s.spec.preset,
        "untrained": not PRESETS[s.spec.preset].trained,
        "seed": s.spec.seed,
        "scaling": s.spec.scaling,
        "rewards": s.spec.rewards,
        "prompts": s.spec.prompts,
        "parent": s.spec.parent,
        "chunks": s.head,
        "final_beam": final_beam(s) if s.head else None,
        "lineage": lineage(s, final_beam(s), s.head) if s.head else [],
        "disk_bytes": s.disk_bytes(),
        "disk_bytes_per_chunk": s.disk_bytes() / max(s.head, 1),
        "real_size_bytes_per_chunk": real_chunk,
        "real_size_bytes_30s": 40 * real_chunk,
        "records": chunks,
    }
    if as_json:
        print(json.dumps(info, indent=1))
        return
    stdout.print(f"[bold]{s.path}[/]  preset {s.spec.preset}{' (untrained)' if info['untrained'] else ''}  "
                 f"seed {s.spec.seed}  {s.head} chunks  {'Stream-T1' if s.spec.scaling else 'plain LongLive'}")
    for p in s.spec.prompts:
        stdout.print(f"  from chunk {p['from_chunk']}: {p['prompt']!r}")
    if s.spec.parent:
        stdout.print(f"  branch of {s.spec.parent['path']} at chunk {s.spec.parent['at']}")
    table = Table("chunk", "beam kept", "short", "long", "fused", "sink flag", "sink event")
    for k, (record, b) in enumerate(zip(chunks, info["lineage"])):
        beam = record["beams"][b]
        cand = record["candidates"][beam["candidate"]]
        event = beam["last_sink_event"]
        table.add_row(str(k), f"{b} (cand {beam['candidate']})", f"{cand['short']:.4f}", f"{cand['long']:.4f}",
                      f"{cand['fused']:.4f}", cand["flag"] or "-", "-" if not event else f"{event['route']} @ {event['start_frame']}")
    stdout.print(table)
    stdout.print(f"disk: {info['disk_bytes'] / 1e6:.2f} MB ({info['disk_bytes_per_chunk'] / 1e6:.3f} MB a chunk); "
                 f"at real size (480x832, {beams} beam(s)): {real_chunk / 1e6:.1f} MB a chunk, "
                 f"{info['real_size_bytes_30s'] / 1e9:.2f} GB for a 30 s video (40 chunks), uncompressed")


def export(
    path: Annotated[Path, typer.Argument(help="The session.")],
    out: Annotated[Path, typer.Argument(help="OUT.mp4 for a video, or a folder for PNG frames.")],
    beam: Annotated[Optional[int], typer.Option(help="Surviving beam to export (default: the final pick).")] = None,
    upto: Annotated[Optional[int], typer.Option(help="Export chunks 0..UPTO-1 only.")] = None,
) -> None:
    """Write a session's video (or its frames as PNGs)."""
    try:
        s = Session.open(path)
        if s.head == 0:
            raise StreamT1Error(f"{path} has no committed chunk yet: nothing to export")
        frames = video_frames(s, beam, upto)
    except StreamT1Error as err:
        fail(str(err))
    if out.suffix.lower() == ".mp4":
        with Mp4Writer(out, stream_config(s.spec).fps) as writer:
            for f in frames:
                writer.append(f)
        console.print(f"wrote {out}: {writer.frames_written} frames")
        return
    if out.suffix:
        fail(f"{out}: give a path ending in .mp4, or a folder for PNG frames")
    out.mkdir(parents=True, exist_ok=True)
    n = 0
    for f in frames:
        for frame in frames_hwc(f):
            iio.imwrite(out / f"frame_{n:05d}.png", frame)
            n += 1
    console.print(f"wrote {n} PNG frames to {out}")
