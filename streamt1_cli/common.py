"""What every command shares: the console, one-line failures, option types and their checks.

Light on purpose: every command, `--help` included, imports this module, so it imports neither
torch nor the model stack (the functions that need torch import it when called)."""

from __future__ import annotations

import math
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape

from engine.config import FLASH4_PACKAGE, MAX_SECONDS, MODEL_DIR_ENV, AttentionKernel, StreamConfig
from engine.positions import PositionMode

if TYPE_CHECKING:
    import torch

console = Console(stderr=True, soft_wrap=True)  # a line stays one line in a log file, whatever the width
DEFAULT_SECONDS = 5.0  # --seconds when neither --seconds nor --chunks is given
_STREAM = StreamConfig()  # the geometry the option texts describe


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


ModelDirOption = Annotated[
    Optional[Path], typer.Option(envvar=MODEL_DIR_ENV, help="Folder with downloaded weights (see `streamt1 download`).")
]
SecondsOption = Annotated[
    Optional[float],
    typer.Option(help=f"Length to generate, in seconds at {_STREAM.fps} fps (default {DEFAULT_SECONDS:g})."),
]
ChunksOption = Annotated[
    Optional[int],
    typer.Option(
        help=f"Length to generate, in chunks of {_STREAM.chunk_frames} latent frames ({_STREAM.pixel_frames(1)} video frames; a video's first has {_STREAM.pixel_frames(0)})."
    ),
]
DeviceOption = Annotated[DeviceName, typer.Option(help="Where to run; auto picks cuda when available.")]
DtypeOption = Annotated[DtypeName, typer.Option(help="Compute dtype; auto: bfloat16 on cuda, float32 on cpu.")]
PresetOption = Annotated[
    PresetName,
    typer.Option(help="tiny: random-init, CPU seconds, untrained. longlive: real model, needs --model-dir."),
]
NoScalingOption = Annotated[
    bool, typer.Option("--no-scaling", help="Plain LongLive: one candidate a chunk, no rewards.")
]
QuietOption = Annotated[
    bool, typer.Option("--quiet", "-q", help="No live view (logs, CI); records still go to chunks.jsonl.")
]
PositionsOption = Annotated[
    PositionMode,
    typer.Option(
        help="Rotary positions, fixed for the session: absolute (LongLive exactly; stops at the table's end, ~4 min 16 s), rebased (sink, window and chunk re-indexed every chunk: no length limit) or auto (absolute while it fits, then rebased)."
    ),
]
CompileOption = Annotated[
    bool,
    typer.Option(
        "--compile/--no-compile",
        help="torch.compile the transformer blocks and the reward models' layers on CUDA (faster on GPUs, see docs/performance.md; the first chunks are slower).",
    ),
]

Fp8Option = Annotated[
    bool,
    typer.Option(
        "--fp8",
        help="FP8 matmuls in the transformer blocks and reward models (Ada/Hopper GPUs): faster, other numbers (docs/performance.md measures the drift).",
    ),
]

AttentionOption = Annotated[
    AttentionKernel,
    typer.Option(
        help=f"The transformer's attention kernels on CUDA: sdpa (PyTorch's, the default) or flash4 (FlashAttention-4, Hopper/Blackwell, `pip install {FLASH4_PACKAGE}`): other numbers, see docs/performance.md.",
    ),
]


def fail(message: str, code: int = 2) -> None:
    """Print one red line and exit (bad input or environment, not a crash)."""
    console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def resolve_device(name: DeviceName) -> torch.device:
    import torch

    if name is DeviceName.cuda and not torch.cuda.is_available():
        fail("--device cuda asked for, but torch sees no CUDA GPU: use --device cpu or install a CUDA build of torch")
    if name is DeviceName.auto:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name.value)


def resolve_dtype(name: DtypeName, device: torch.device) -> torch.dtype:
    import torch

    if name is DtypeName.auto:
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return getattr(torch, name.value)


def chunks_for(seconds: float | None, chunks: int | None, config: StreamConfig, first: bool = True) -> int:
    """Chunk count from --chunks or --seconds (StreamConfig.chunks_for_seconds converts)."""
    if seconds is not None and chunks is not None:
        fail("give either --seconds or --chunks, not both")
    if chunks is not None:
        if chunks < 1:
            fail(f"--chunks must be >= 1, got {chunks}")
        return chunks
    seconds = DEFAULT_SECONDS if seconds is None else seconds
    if not 0 < seconds <= MAX_SECONDS or math.isnan(seconds):
        fail(f"--seconds must be in (0, {MAX_SECONDS:g}] (a day; `streamt1 continue` goes on), got {seconds}")
    return config.chunks_for_seconds(seconds, first)
