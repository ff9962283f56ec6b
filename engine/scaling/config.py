"""Stream-T1 knobs with the reference's defaults (configs/stream_scaling.yaml), validated once."""

from __future__ import annotations

from dataclasses import dataclass

from engine.config import StreamConfig
from engine.errors import StreamT1Error


@dataclass(frozen=True)
class ScalingConfig:
    """Beam search over chunks + noise propagation + memory sinking.

    Plain LongLive (`--no-scaling`) has no ScalingConfig: `ChunkLoop(scaling=None)`.
    `horizon_frames` replaces the reference's known video length in the fusion weight, fixed when a
    session is created so that continuing a run decides exactly as an uninterrupted one.
    """

    beam_size: int = 2  # children per surviving beam
    top_k: int = 2  # beams kept from the pool
    noise_sigma: float = -0.1  # weight of the parent's noise
    short_threshold: float = 0.0
    long_threshold: float = 0.2
    fusion_cap: float = 0.4  # max weight of the short-term reward
    window_chunks: int = 10  # long-term reward window, in chunks
    max_sink_frames: int = 15
    ema_alpha: float = 0.999
    horizon_frames: int = 21

    def __post_init__(self) -> None:
        if self.beam_size < 1 or self.top_k < 1:
            raise StreamT1Error(f"--beam-size and --top-k must be >= 1 (got {self.beam_size}, {self.top_k})")
        if self.max_sink_frames < 0:
            raise StreamT1Error(f"--max-sink must be >= 0 latent frames, got {self.max_sink_frames}")
        if not -1.0 <= self.noise_sigma <= 1.0:
            raise StreamT1Error(f"--noise-sigma must lie in [-1, 1], got {self.noise_sigma}")
        if not 0.0 <= self.fusion_cap <= 1.0:
            raise StreamT1Error(f"--fusion-cap must lie in [0, 1], got {self.fusion_cap}")
        if self.window_chunks < 1:
            raise StreamT1Error(f"--window-chunks must be >= 1, got {self.window_chunks}")
        if not 0.0 <= self.ema_alpha <= 1.0:
            raise StreamT1Error(f"EMA alpha must lie in [0, 1], got {self.ema_alpha}")
        if self.horizon_frames < 1:
            raise StreamT1Error(f"--horizon must be >= 1 latent frame, got {self.horizon_frames}")

    def check_stream(self, stream: StreamConfig) -> None:
        """Refuse a sink cap that is not the initial sink plus whole chunks: the reference appends
        whole chunks while the sink is below the cap and turns APPENDs into EMA merges only when it
        equals the cap, so a cap between two sink sizes overruns its buffer and drops those chunks."""
        sink, chunk = stream.sink_frames, stream.chunk_frames
        extra = self.max_sink_frames - sink
        if extra < 0 or extra % chunk:
            valid = ", ".join(str(sink + j * chunk) for j in range(5))
            raise StreamT1Error(f"--max-sink must be the initial sink ({sink}) plus whole chunks of {chunk} latent "
                                f"frames: {valid}, ... (got {self.max_sink_frames})")

    @property
    def candidates(self) -> int:
        """Candidates a chunk: beam_size children of each of top_k beams (chunk 0: as many fresh)."""
        return self.beam_size * self.top_k
