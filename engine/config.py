"""Streaming geometry and sampler settings (LongLive defaults), validated once at construction."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from engine.errors import StreamT1Error

MAX_FPS = 240  # H.264 players and ffmpeg's default level
# The longest length one command asks for, and the latest start of a script's prompt: a day of video.
# Past it an extra zero is likelier than a plan; `continue` goes on from there.
MAX_SECONDS = 86_400.0
MODEL_DIR_ENV = "STREAMT1_MODEL_DIR"  # where downloaded weights are, when --model-dir is not given


@dataclass(frozen=True)
class StreamConfig:
    """How the video is cut into chunks and how much past each chunk sees.

    All sizes are in latent frames. `local_window_frames` counts the sink and the chunk being
    generated (LongLive: 12 = 3 sink + 6 previous + 3 current).
    """

    chunk_frames: int = 3
    sink_frames: int = 3
    local_window_frames: int = 12
    timesteps: tuple[float, ...] = (1000.0, 750.0, 500.0, 250.0)
    shift: float = 5.0
    fps: int = 16

    def __post_init__(self) -> None:
        c = self.chunk_frames
        if c < 1:
            raise StreamT1Error(f"chunk size must be >= 1 latent frame, got {c}")
        if self.sink_frames < 0 or self.sink_frames % c:
            raise StreamT1Error(f"sink size must be a multiple of the chunk size ({c}), got {self.sink_frames}")
        previous = self.local_window_frames - self.sink_frames - c
        if previous < 0 or previous % c:
            raise StreamT1Error(
                f"local window ({self.local_window_frames}) minus sink ({self.sink_frames}) minus chunk ({c}) "
                "must be a non-negative multiple of the chunk size"
            )
        if not self.timesteps or any(not 0 < t <= 1000 for t in self.timesteps):
            raise StreamT1Error("denoising timesteps must lie in (0, 1000]")
        if not 0 < self.shift <= 100:  # the sigma shift divides; NaN fails here too
            raise StreamT1Error(f"the timestep shift must lie in (0, 100], got {self.shift}")
        if not 1 <= self.fps <= MAX_FPS:
            raise StreamT1Error(f"fps must be a whole number from 1 to {MAX_FPS}, got {self.fps}")

    @property
    def sink_chunks(self) -> int:
        return self.sink_frames // self.chunk_frames

    @property
    def window_chunks(self) -> int:
        """Previous (non-sink) chunks a new chunk attends to."""
        return (self.local_window_frames - self.sink_frames - self.chunk_frames) // self.chunk_frames

    def start_frame(self, chunk: int) -> int:
        return chunk * self.chunk_frames

    def pixel_frames(self, chunk: int) -> int:
        """Decoded frames of one chunk: the first latent frame of a video decodes to a single frame."""
        return 4 * self.chunk_frames - (3 if chunk == 0 else 0)

    # --- video time <-> chunks: the one place that converts between them -----------------------------
    def first_frame(self, chunk: int) -> int:
        """Index in the video of the chunk's first frame (also: frames in chunks 0..chunk-1)."""
        return 0 if chunk == 0 else self.pixel_frames(0) + (chunk - 1) * self.pixel_frames(1)

    def chunk_at_frame(self, frame: int) -> int:
        """The chunk that holds video frame `frame`."""
        first = self.pixel_frames(0)
        return 0 if frame < first else 1 + (frame - first) // self.pixel_frames(1)

    def chunk_at_seconds(self, seconds: float) -> int:
        """The chunk that holds the video frame shown at `seconds` (frame round(seconds * fps))."""
        return self.chunk_at_frame(round(seconds * self.fps))

    def chunks_for_seconds(self, seconds: float, first: bool = True) -> int:
        """Chunks that make closest to `seconds` of video, at least one; `first`: they start the video,
        whose first chunk is shorter (5 s -> 7 chunks / 81 frames, 30 s -> 40 / 477)."""
        short = self.pixel_frames(1) - self.pixel_frames(0) if first else 0
        return max(1, round((seconds * self.fps + short) / self.pixel_frames(1)))

    def seconds_of(self, chunks: int, first: bool = True) -> float:
        """Video seconds of `chunks` chunks; `first`: they start the video."""
        frames = self.first_frame(chunks) if first else chunks * self.pixel_frames(1)
        return frames / self.fps


FLASH4_PACKAGE = "flash-attn-4==4.0.0b40"  # what --attention flash4 needs (pyproject's [flash4] extra pins the same)


class AttentionKernel(str, Enum):
    """Which kernels run the transformer's softmax attention (engine.models.attention)."""

    sdpa = "sdpa"  # PyTorch's scaled_dot_product_attention: cuDNN / flash on CUDA, math on the CPU
    flash4 = "flash4"  # FlashAttention-4 (flash-attn-4 on PyPI): Hopper and Blackwell, bf16/fp16


@dataclass(frozen=True)
class CudaOptions:
    """How the networks run on a CUDA GPU, chosen per run (not stored with a session's settings).
    `compile_blocks`: torch.compile the transformer blocks and the reward models' layers (faster,
    slow first chunks); `fp8`: FP8 matmuls in the transformer blocks and reward models (engine.fp8);
    `attention`: the transformer's attention kernels. FP8 and any attention but sdpa give other
    numbers, so each chunk's record of its compute says them."""

    compile_blocks: bool = True
    fp8: bool = False
    attention: AttentionKernel = AttentionKernel.sdpa
