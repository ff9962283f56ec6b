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
from engine.rewards.registry import DEFAULT_REWARDS, LONG_REWARDS, SHORT_REWARDS, build_scorers, check_reward_names
from engine.scaling.config import ScalingConfig
from sessions.records import ChunkLog
from sessions.video import Mp4Writer
from streamt1_cli.runs import run_plain, run_scaled
from streamt1_cli.scaling_view import ScalingView
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
    session: Annotated[Path, typer.Option("--session", "-s", help="New folder for this run: SESSION/video.mp4 and SESSION/chunks.jsonl.")],
    preset: Annotated[PresetName, typer.Option(help="tiny: random-init, CPU seconds, untrained. longlive: real model, needs --model-dir.")] = PresetName.tiny,
    model_dir: Annotated[Optional[Path], typer.Option(envvar=MODEL_DIR_ENV, help="Folder with downloaded weights (see `streamt1 download`).")] = None,
    seconds: Annotated[Optional[float], typer.Option(help="Video length in seconds at 16 fps (default 5).")] = None,
    chunks: Annotated[Optional[int], typer.Option(help="Video length in chunks of 3 latent frames (12 video frames; the first has 9).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of every random draw; the same seed gives the same video.")] = 42,
    device: Annotated[DeviceName, typer.Option(help="Where to run; auto picks cuda when available.")] = DeviceName.auto,
    dtype: Annotated[DtypeName, typer.Option(help="Compute dtype; auto: bfloat16 on cuda, float32 on cpu.")] = DtypeName.auto,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No live view (logs, CI); records still go to chunks.jsonl.")] = False,
    compile_blocks: Annotated[bool, typer.Option("--compile/--no-compile", help="torch.compile the transformer blocks on CUDA (+18% FPS on an H100; the first chunks are slower).")] = True,
    no_scaling: Annotated[bool, typer.Option("--no-scaling", help="Plain LongLive: one candidate a chunk, no rewards.")] = False,
    beam_size: Annotated[int, typer.Option(help="Children per surviving beam.", rich_help_panel="Stream-T1")] = 2,
    top_k: Annotated[int, typer.Option(help="Beams kept from each chunk's pool of beam_size x top_k candidates.", rich_help_panel="Stream-T1")] = 2,
    noise_sigma: Annotated[float, typer.Option(help="Noise propagation: weight of the parent's noise, in [-1, 1].", rich_help_panel="Stream-T1")] = -0.1,
    short_threshold: Annotated[float, typer.Option(help="Memory sinking: short-term reward rise that flags a chunk.", rich_help_panel="Stream-T1")] = 0.0,
    long_threshold: Annotated[float, typer.Option(help="Memory sinking: long-term reward drop that makes a flagged chunk APPEND.", rich_help_panel="Stream-T1")] = 0.2,
    fusion_cap: Annotated[float, typer.Option(help="Largest weight of the short-term reward in the fused score.", rich_help_panel="Stream-T1")] = 0.4,
    window_chunks: Annotated[int, typer.Option(help="Long-term reward window, in chunks.", rich_help_panel="Stream-T1")] = 10,
    max_sink: Annotated[int, typer.Option(help="Largest sink, in latent frames (original sink included).", rich_help_panel="Stream-T1")] = 15,
    horizon: Annotated[int, typer.Option(help="Latent frames the fusion weight ramps over (the reference's 5 s = 21).", rich_help_panel="Stream-T1")] = 21,
    short_reward: Annotated[Optional[str], typer.Option(help=f"Short-term (per-frame) scorer: {', '.join(SHORT_REWARDS)} (default: proxy on tiny, hpsv3 on longlive).", rich_help_panel="Stream-T1")] = None,
    long_reward: Annotated[Optional[str], typer.Option(help=f"Long-term (per-clip) scorer: {', '.join(LONG_REWARDS)} (default: proxy on tiny, videoreward on longlive).", rich_help_panel="Stream-T1")] = None,
) -> None:
    """Generate a new video, chunk by chunk (Stream-T1 test-time scaling unless --no-scaling)."""
    if not prompt.strip():
        fail("the prompt is empty: say what the video should show")
    config = StreamConfig()
    num_chunks = chunks_for(seconds, chunks, config)
    dev = resolve_device(device)
    dt = resolve_dtype(dtype, dev)
    preset_cfg = PRESETS[preset.value]
    short_name, long_name = DEFAULT_REWARDS[preset.value]
    short_name, long_name = short_reward or short_name, long_reward or long_name
    check_new_session_dir(session)
    try:
        scaling = None if no_scaling else ScalingConfig(
            beam_size=beam_size, top_k=top_k, noise_sigma=noise_sigma, short_threshold=short_threshold,
            long_threshold=long_threshold, fusion_cap=fusion_cap, window_chunks=window_chunks,
            max_sink_frames=max_sink, horizon_frames=horizon)
        if scaling is not None:
            check_reward_names(short_name, long_name)
        models = load_models(preset_cfg, model_dir, dev, dt)
        scorers = None if scaling is None else build_scorers(short_name, long_name, model_dir=model_dir,
                                                             device=dev, dtype=dt)
    except StreamT1Error as err:
        fail(str(err))
    if dev.type == "cuda":
        tune_for_cuda(models, compile_blocks=compile_blocks)
    session.mkdir(parents=True, exist_ok=True)
    if not preset_cfg.trained:
        console.print(UNTRAINED_LABEL)
    title = f"{preset.value} {dev.type}"
    video_path = session / "video.mp4"
    with ChunkLog(session / "chunks.jsonl") as log:
        if scaling is None:
            frames = run_plain(models, config, seed, prompt, num_chunks, log, StreamView(console, num_chunks, title, quiet))
        else:
            view = ScalingView(console, num_chunks, title, (scorers[0].name, scorers[1].name), quiet)
            frames = run_scaled(models, config, scaling, scorers, seed, prompt, num_chunks, log, view)
    with Mp4Writer(video_path, config.fps) as writer:
        for chunk_frames in frames:
            writer.append(chunk_frames)
    label = " (untrained tiny preset)" if not preset_cfg.trained else ""
    console.print(f"wrote {video_path}: {writer.frames_written} frames, "
                  f"{preset_cfg.width}x{preset_cfg.height} @ {config.fps} fps{label}; records in {session / 'chunks.jsonl'}")


class RewardsDownload(str, Enum):
    all = "all"
    none = "none"


class LayoutName(str, Enum):
    original = "original"
    diffusers = "diffusers"


@app.command()
def download(
    model_dir: Annotated[Path, typer.Option(envvar=MODEL_DIR_ENV, help="Folder to fill (then pass it as --model-dir).")],
    layout: Annotated[LayoutName, typer.Option(help="Wan2.1 in its original layout or the diffusers one; both load.")] = LayoutName.original,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print what would be fetched, fetch nothing.")] = False,
    rewards: Annotated[RewardsDownload, typer.Option(help="all: also HPSv3 + VideoReward and their Qwen2-VL processor files; none: skip them (--short-reward/--long-reward proxy then).")] = RewardsDownload.all,
) -> None:
    """Fetch the real weights (Wan2.1-T2V-1.3B, LongLive base + LoRA, reward models) from the Hugging Face Hub."""
    from engine.models.download import download_models, download_plan

    with_rewards = rewards is RewardsDownload.all
    for item in download_plan(model_dir, layout.value, with_rewards):
        console.print(f"{item.repo_id}: {', '.join(item.files)} -> {item.local_dir}", highlight=False)
    if dry_run:
        return
    try:
        download_models(model_dir, layout.value, with_rewards)
    except StreamT1Error as err:
        fail(str(err))
    console.print(f"done: run `streamt1 new PROMPT --preset longlive --model-dir {model_dir} --session DIR`")


def main() -> None:
    app()
