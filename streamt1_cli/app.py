"""`streamt1` command line: parses and validates, then hands off to the engine; no generation logic."""

from __future__ import annotations

import math
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import torch
import typer
from rich.console import Console

from engine.config import StreamConfig
from engine.errors import StreamT1Error
from engine.models.factory import MODEL_DIR_ENV, load_models, tune_for_cuda
from engine.models.presets import PRESETS
from engine.stream import StreamGenerator
from sessions.video import Mp4Writer
from streamt1_cli.view import UNTRAINED_LABEL, StreamView

app = typer.Typer(
    help="Long streaming video generation (LongLive on Wan2.1) with Stream-T1 test-time scaling.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console(stderr=True)


@app.callback()
def root() -> None:
    """Long streaming video generation (LongLive on Wan2.1) with Stream-T1 test-time scaling."""


class PresetName(str, Enum):
    tiny = "tiny"
    longlive = "longlive"


class DeviceName(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


class DtypeName(str, Enum):
    auto = "auto"
    float32 = "float32"
    bfloat16 = "bfloat16"
    float16 = "float16"


def fail(message: str) -> None:
    """Print one red line and exit 2 (bad input or environment, not a crash)."""
    console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(2)


def resolve_device(name: DeviceName) -> torch.device:
    if name is DeviceName.cuda and not torch.cuda.is_available():
        fail("--device cuda asked for, but torch sees no CUDA GPU: use --device cpu or install a CUDA build of torch")
    if name is DeviceName.auto:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name.value)


def resolve_dtype(name: DtypeName, device: torch.device) -> torch.dtype:
    if name is DtypeName.auto:
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return getattr(torch, name.value)


def chunks_for(seconds: float | None, chunks: int | None, config: StreamConfig) -> int:
    """Chunk count from --chunks or --seconds (5 s -> 7 chunks / 81 frames, 30 s -> 40 / 477)."""
    if seconds is not None and chunks is not None:
        fail("give either --seconds or --chunks, not both")
    if chunks is not None:
        if chunks < 1:
            fail(f"--chunks must be >= 1, got {chunks}")
        return chunks
    seconds = 5.0 if seconds is None else seconds
    if not 0 < seconds <= 3600 or math.isnan(seconds):
        fail(f"--seconds must be in (0, 3600], got {seconds}")
    frames_per_chunk = 4 * config.chunk_frames
    return max(1, round((seconds * config.fps + 3) / frames_per_chunk))


def check_new_session_dir(path: Path) -> None:
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        fail(f"{path} already exists and is not an empty folder: choose a new --session path")


@app.command()
def new(
    prompt: Annotated[str, typer.Argument(help="What the video shows.")],
    session: Annotated[Path, typer.Option("--session", "-s", help="New folder for this run; the video goes to SESSION/video.mp4.")],
    preset: Annotated[PresetName, typer.Option(help="tiny: random-init, CPU seconds, untrained. longlive: real model, needs --model-dir.")] = PresetName.tiny,
    model_dir: Annotated[Optional[Path], typer.Option(envvar=MODEL_DIR_ENV, help="Folder with downloaded weights (see `streamt1 download`).")] = None,
    seconds: Annotated[Optional[float], typer.Option(help="Video length in seconds at 16 fps (default 5).")] = None,
    chunks: Annotated[Optional[int], typer.Option(help="Video length in chunks of 3 latent frames (12 video frames; the first has 9).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of every random draw; the same seed gives the same video.")] = 42,
    device: Annotated[DeviceName, typer.Option(help="Where to run; auto picks cuda when available.")] = DeviceName.auto,
    dtype: Annotated[DtypeName, typer.Option(help="Compute dtype; auto: bfloat16 on cuda, float32 on cpu.")] = DtypeName.auto,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No live view (logs, CI).")] = False,
    compile_blocks: Annotated[bool, typer.Option("--compile/--no-compile", help="torch.compile the transformer blocks on CUDA (+18% FPS on an H100; the first chunks are slower).")] = True,
) -> None:
    """Generate a new video, chunk by chunk."""
    if not prompt.strip():
        fail("the prompt is empty: say what the video should show")
    config = StreamConfig()
    num_chunks = chunks_for(seconds, chunks, config)
    dev = resolve_device(device)
    dt = resolve_dtype(dtype, dev)
    preset_cfg = PRESETS[preset.value]
    check_new_session_dir(session)
    try:
        models = load_models(preset_cfg, model_dir, dev, dt)
        generator = StreamGenerator(models, config, seed)
        generator.set_prompt(prompt)
    except StreamT1Error as err:
        fail(str(err))
    if dev.type == "cuda":
        tune_for_cuda(models, compile_blocks=compile_blocks)
    session.mkdir(parents=True, exist_ok=True)
    if not preset_cfg.trained:
        console.print(UNTRAINED_LABEL)
    video_path = session / "video.mp4"
    with Mp4Writer(video_path, config.fps) as writer, StreamView(console, num_chunks, f"{preset.value} {dev.type}", quiet) as view:
        for chunk in generator.stream(num_chunks):
            writer.append(chunk.frames[0])
            view.update(chunk)
    label = " (untrained tiny preset)" if not preset_cfg.trained else ""
    console.print(f"wrote {video_path}: {writer.frames_written} frames, "
                  f"{preset_cfg.width}x{preset_cfg.height} @ {config.fps} fps{label}")


class LayoutName(str, Enum):
    original = "original"
    diffusers = "diffusers"


@app.command()
def download(
    model_dir: Annotated[Path, typer.Option(envvar=MODEL_DIR_ENV, help="Folder to fill (then pass it as --model-dir).")],
    layout: Annotated[LayoutName, typer.Option(help="Wan2.1 in its original layout or the diffusers one; both load.")] = LayoutName.original,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print what would be fetched, fetch nothing.")] = False,
) -> None:
    """Fetch the real weights (Wan2.1-T2V-1.3B, LongLive base + LoRA) from the Hugging Face Hub."""
    from engine.models.download import download_models, download_plan

    for item in download_plan(model_dir, layout.value):
        console.print(f"{item.repo_id}: {', '.join(item.files)} -> {item.local_dir}", highlight=False)
    if dry_run:
        return
    try:
        download_models(model_dir, layout.value)
    except StreamT1Error as err:
        fail(str(err))
    console.print(f"done: run `streamt1 new PROMPT --preset longlive --model-dir {model_dir} --session DIR`")


def main() -> None:
    app()
