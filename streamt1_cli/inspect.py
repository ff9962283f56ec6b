"""`list`, `show` and `export`: read sessions, never change them. No model is needed, so nothing
here imports the model stack (diffusers, transformers); the session store brings torch."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from engine.config import MODEL_DIR_ENV, StreamConfig
from engine.errors import StreamT1Error
from engine.models.presets import PRESETS
from engine.scaling.config import ScalingConfig
from sessions.files import reason
from sessions.lineage import final_beam, lineage
from sessions.report.model import compute_spans
from sessions.runner import video_frames
from sessions.snapshots import snapshot_heads, snapshots_bytes
from sessions.store import SPEC_FILE, STAGING_PREFIX, Session, compute_in
from sessions.video import FRAME_NAME, check_video_writer, write_mp4, write_pngs
from streamt1_cli.common import console, fail

stdout = Console(soft_wrap=True)


def list_(root: Annotated[Path, typer.Argument(help="Folder to search for sessions.")] = Path(".")) -> None:
    """List the sessions under a folder (those that cannot be opened are named below the table)."""
    if not root.is_dir():
        fail(f"{root} is not a folder: give the folder that holds your sessions")
    table = Table("session", "preset", "chunks", "scaling", "prompts", "branch of")
    skipped: list[str] = []
    for spec_path in sorted(root.rglob(SPEC_FILE)):
        if any(part.startswith(STAGING_PREFIX) for part in spec_path.parts):
            continue  # a session being created, or left by a crash during creation
        try:
            s = Session.open(spec_path.parent)
        except StreamT1Error as err:
            skipped.append(f"skipped {spec_path.parent}: {err}")
            continue
        parent = "-" if s.spec.parent is None else f"{s.parent.path} @ {s.spec.parent.at}"
        table.add_row(
            escape(str(s.path)),
            s.spec.preset,
            str(s.head),
            "plain" if s.spec.scaling is None else "Stream-T1",
            str(len(s.spec.prompts)),
            escape(parent),
        )
    if table.row_count or skipped:
        stdout.print(table)
    else:
        console.print(f"no sessions under {escape(str(root))}: start one with `streamt1 new PROMPT --session DIR`")
    for line in skipped:
        console.print(escape(line), style="yellow", highlight=False, soft_wrap=True)


def chunk_bytes_at(preset_name: str, config: StreamConfig, beams: int) -> int:
    """Bytes one later chunk adds at a preset's geometry, uncompressed: latents + noise (float32)
    and decoded frames (uint8) of every surviving beam."""
    p = PRESETS[preset_name]
    latent = p.transformer["in_channels"] * config.chunk_frames * p.latent_height * p.latent_width * 4
    frames = 3 * config.pixel_frames(1) * p.height * p.width
    return beams * (2 * latent + frames)


# Decoder causal-cache elements per beam at 480x832 (shape propagation through the real-size Wan VAE;
# see engine.models.vae_stream.DecoderState).
REAL_DECODER_STATE_ELEMENTS = 944_286_720


def snapshot_bytes_at(preset_name: str, config: StreamConfig, scaling: ScalingConfig | None, beams: int) -> int:
    """Bytes of one state snapshot at a preset's geometry in bf16, the sink at its cap: each beam's
    KV cache (sink + window frames, every layer's K and V) and decoder cache."""
    p = PRESETS[preset_name]
    sink = config.sink_frames if scaling is None else scaling.max_sink_frames
    frames = sink + config.window_chunks * config.chunk_frames
    dim = p.transformer["num_attention_heads"] * p.transformer["attention_head_dim"]
    tokens = (p.latent_height // 2) * (p.latent_width // 2)
    kv = frames * tokens * p.transformer["num_layers"] * 2 * dim * 2
    return beams * (kv + REAL_DECODER_STATE_ELEMENTS * 2)


def show(
    path: Annotated[Path, typer.Argument(help="The session.")],
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output on stdout.")] = False,
) -> None:
    """Chunks, prompts, rewards, sink events, lineage and disk use of a session."""
    try:
        s = Session.open(path)
        chunks = [s.record(k) for k in range(s.head)]
        final = final_beam(s) if s.head else None
        lineage_ = lineage(s, final, s.head) if s.head else []
    except StreamT1Error as err:
        fail(str(err))
    disk_bytes = s.disk_bytes()
    config = s.spec.stream
    beams = len(chunks[-1]["beams"]) if chunks else (1 if s.spec.scaling is None else s.spec.scaling.top_k)
    real_chunk = chunk_bytes_at("longlive", config, beams)
    chunks_30s = config.chunks_for_seconds(30)
    own_chunks = s.head - (s.spec.parent.at if s.spec.parent else 0)
    real_snapshot = snapshot_bytes_at("longlive", config, s.spec.scaling, beams)
    heads = snapshot_heads(s)
    spec = s.spec.to_dict()  # plain data, as session.toml holds it
    info = {
        "path": str(s.path),
        "preset": s.spec.preset,
        "untrained": not PRESETS[s.spec.preset].trained,
        "seed": s.spec.seed,
        "scaling": spec["scaling"],
        "rewards": spec["rewards"],
        "prompts": spec["prompts"],
        "parent": spec["parent"],
        "chunks": s.head,
        "final_beam": final,
        "lineage": lineage_,
        "disk_bytes": disk_bytes,
        "disk_bytes_per_chunk": s.chunks_bytes() / max(own_chunks, 1),  # a branch's own chunks, without snapshots
        "real_size_bytes_per_chunk": real_chunk,
        "real_size_bytes_30s": chunks_30s * real_chunk,
        "real_size_bytes_per_hour": config.chunks_for_seconds(3600) * real_chunk,
        "positions": spec["positions"],
        "snapshot_every": s.spec.snapshot_every,
        "snapshots_kept": s.spec.snapshots_kept,
        "snapshots": heads,
        "snapshot_bytes": snapshots_bytes(s),
        "real_size_snapshot_bytes": real_snapshot,
        "records": chunks,
    }
    if as_json:
        print(json.dumps(info, indent=1))
        return
    reseeded = s.spec.parent is not None and s.spec.seed != s.parent.spec.seed
    seed = f"seed {s.spec.seed}" + (" (from the branch point)" if reseeded else "")
    stdout.print(
        f"[bold]{escape(str(s.path))}[/]  preset {s.spec.preset}{' (untrained)' if info['untrained'] else ''}  "
        f"{seed}  {s.head} chunks  {'Stream-T1' if s.spec.scaling else 'plain LongLive'}"
    )
    for p in s.spec.prompts:
        stdout.print(f"  from chunk {p.from_chunk}: {escape(repr(p.prompt))}")
    if s.spec.parent:
        stdout.print(f"  branch of {escape(str(s.parent.path))} at chunk {s.spec.parent.at}")
    computes = compute_spans([compute_in(record) for record in chunks])
    if len(computes) > 1 or (computes and computes[0].compute is not None):
        changed = ": chunks after a change are not bitwise an unbroken run's" if len(computes) > 1 else ""
        stdout.print(f"  computed on {', '.join(map(str, computes))}{changed}", highlight=False)
    if s.spec.model_dir:
        stdout.print(
            f"  weights from {escape(s.spec.model_dir)} (unless --model-dir or ${MODEL_DIR_ENV} says otherwise)"
        )
    table = Table("chunk", "beam kept", "short", "long", "fused", "sink flag", "sink event")
    scored = s.spec.scaling is not None
    for k, (record, b) in enumerate(zip(chunks, info["lineage"])):
        beam = record["beams"][b]
        cand = record["candidates"][beam["candidate"]]
        event = beam["last_sink_event"]
        scores = [f"{cand[key]:.4f}" if scored else "-" for key in ("short", "long", "fused")]
        table.add_row(
            str(k),
            f"{b} (cand {beam['candidate']})",
            *scores,
            cand["flag"] or "-",
            "-" if not event else f"{event['route']} @ {event['start_frame']}",
        )
    stdout.print(table)
    stdout.print(
        f"disk: {info['disk_bytes'] / 1e6:.2f} MB in all, {info['disk_bytes_per_chunk'] / 1e6:.3f} MB for each of "
        f"its {own_chunks} own chunks; at real size (480x832, {beams} beam(s)): {real_chunk / 1e6:.1f} MB a "
        f"chunk, {info['real_size_bytes_30s'] / 1e9:.2f} GB for a 30 s video ({chunks_30s} chunks), "
        f"{info['real_size_bytes_per_hour'] / 1e9:.0f} GB an hour of video, uncompressed"
    )
    stdout.print(
        f"positions: {s.spec.positions.value}; snapshots every {s.spec.snapshot_every} chunks, newest "
        f"{s.spec.snapshots_kept} kept: {', '.join(map(str, heads)) or 'none'} "
        f"({info['snapshot_bytes'] / 1e6:.2f} MB); at real size a snapshot is ~{real_snapshot / 1e9:.1f} GB "
        f"(sink at its cap), so up to {s.spec.snapshots_kept * real_snapshot / 1e9:.0f} GB on disk"
    )


OTHER_MEDIA = {".avi", ".gif", ".jpeg", ".jpg", ".mkv", ".mov", ".png", ".webm", ".webp"}  # not written


def export_target_problem(out: Path, session: Session, force: bool) -> str | None:
    """What is wrong with an export target, or None. One rule for both kinds: nothing is replaced
    without --force, and --force replaces only a file or an earlier export's frames."""
    out_abs, session_abs = out.resolve(), session.path.resolve()
    if out_abs == session_abs or session_abs in out_abs.parents:
        return f"{out} is inside the session folder: export somewhere else"
    if not out_abs.parent.is_dir():
        return f"{out.parent} does not exist: create it first, or export elsewhere"
    if out.suffix.lower() in OTHER_MEDIA:
        return f"{out}: give a path ending in .mp4 for a video, or a folder for PNG frames"
    if out.suffix.lower() == ".mp4":
        if out.is_dir():
            return f"{out} is a folder: give a file name ending in .mp4"
        if out.exists() and not force:
            return f"{out} exists: add --force to replace it, or choose another name"
        return None
    if out.exists() and not out.is_dir():
        return f"{out} is a file: PNG frames go to a new or empty folder"
    existing = [p.name for p in out.iterdir()] if out.exists() else []
    if existing and not force:
        return f"{out} exists and is not an empty folder: add --force to replace an earlier export's frames there"
    if any(not FRAME_NAME.fullmatch(name) for name in existing):
        return f"{out} holds other files than an earlier export's frames: PNG frames go to a new or empty folder"
    return None


def export(
    path: Annotated[Path, typer.Argument(help="The session.")],
    out: Annotated[Path, typer.Argument(help="OUT.mp4 for a video, or a folder for PNG frames (any other name).")],
    beam: Annotated[
        Optional[int], typer.Option(help="Surviving beam at the head whose video to export (default: the final pick).")
    ] = None,
    upto: Annotated[Optional[int], typer.Option(help="Export only that video's chunks 0..UPTO-1.")] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Replace an existing OUT.mp4, or an earlier export's PNG frames in OUT.")
    ] = False,
) -> None:
    """Write a session's video (or its frames as PNGs). Nothing is replaced without --force."""
    try:
        s = Session.open(path)
        if s.head == 0:
            raise StreamT1Error(f"{path} has no committed chunk yet: nothing to export")
        # The target is checked before any chunk is read: a 30 s video is ~1 GB of stored frames.
        problem = export_target_problem(out, s, force)
    except StreamT1Error as err:
        fail(str(err))
    except OSError as err:
        fail(f"cannot check the export target {out} ({reason(err)}): export somewhere else")
    if problem:
        fail(problem)
    try:
        frames = video_frames(s, beam, upto)
        if out.suffix.lower() == ".mp4":
            check_video_writer()
            written = write_mp4(out, frames, s.spec.stream.fps)
            console.print(f"wrote {escape(str(out))}: {written} frames")
        else:
            written = write_pngs(out, frames)
            console.print(f"wrote {written} PNG frames to {escape(str(out))}")
    except StreamT1Error as err:
        fail(str(err))
