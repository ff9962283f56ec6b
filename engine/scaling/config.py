"""Stream-T1 knobs with the reference's defaults (configs/stream_scaling.yaml), validated once.

The one source of these defaults and of what each knob means: `streamt1 new` builds its Stream-T1
options from the fields below (a field's `help` metadata is its option's help; `option` names the
option where it is not the field's name), and the README's table points here."""

from __future__ import annotations

from dataclasses import dataclass, field

from engine.config import StreamConfig
from engine.errors import StreamT1Error

REWARD_INPUTS = ("video", "reference")


@dataclass(frozen=True)
class ScalingConfig:
    """Beam search over chunks + noise propagation + memory sinking.

    Plain LongLive (`--no-scaling`) has no ScalingConfig: `ChunkLoop(scaling=None)`.
    `horizon_frames` replaces the reference's known video length in the fusion weight, fixed when a
    session is created so that continuing a run decides exactly as an uninterrupted one.
    """

    beam_size: int = field(default=2, metadata={"help": "Children per surviving beam."})
    top_k: int = field(
        default=2, metadata={"help": "Beams kept from each chunk's pool of beam_size x top_k candidates."}
    )
    noise_sigma: float = field(
        default=-0.1, metadata={"help": "Noise propagation: weight of the parent's noise, in [-1, 1]."}
    )
    short_threshold: float = field(
        default=0.0, metadata={"help": "Memory sinking: short-term reward rise that flags a chunk."}
    )
    long_threshold: float = field(
        default=0.2, metadata={"help": "Memory sinking: long-term reward drop that makes a flagged chunk APPEND."}
    )
    fusion_cap: float = field(
        default=0.4, metadata={"help": "Largest weight of the short-term reward in the fused score."}
    )
    window_chunks: int = field(default=10, metadata={"help": "Long-term reward window, in chunks."})
    max_sink_frames: int = field(
        default=15,
        metadata={
            "option": "max_sink",
            "help": "Largest sink, in latent frames: the initial sink plus whole chunks (3, 6, 9, ...).",
        },
    )
    ema_alpha: float = 0.999  # EMA weight of a merged sink (no option: the reference's constant)
    horizon_frames: int = field(
        default=21,
        metadata={
            "option": "horizon",
            "help": "Latent frames the fusion weight ramps over, kept by `continue` (default: the length asked "
            "for here, as the reference's num_output_frames: 5 s = 21).",
        },
    )

    reward_inputs: str = field(
        default="video",
        metadata={
            "help": "What the reward models score. video: the streamed frames (12 a chunk) and the clip of the "
            "beam's last chunks as generated. reference: as the reference pipeline, its chunk re-decoded from "
            "scratch (9 frames) and the window's latents re-decoded through an H.264 mp4 at 16 fps (slower).",
        },
    )

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
        if self.reward_inputs not in REWARD_INPUTS:
            raise StreamT1Error(
                f"--reward-inputs must be one of {', '.join(REWARD_INPUTS)}, got {self.reward_inputs!r}"
            )

    def check_stream(self, stream: StreamConfig) -> None:
        """Refuse a sink cap that is not the initial sink plus whole chunks: the reference appends
        whole chunks while the sink is below the cap and turns APPENDs into EMA merges only when it
        equals the cap, so a cap between two sink sizes overruns its buffer and drops those chunks."""
        sink, chunk = stream.sink_frames, stream.chunk_frames
        extra = self.max_sink_frames - sink
        if extra < 0 or extra % chunk:
            valid = ", ".join(str(sink + j * chunk) for j in range(5))
            raise StreamT1Error(
                f"--max-sink must be the initial sink ({sink}) plus whole chunks of {chunk} latent "
                f"frames: {valid}, ... (got {self.max_sink_frames})"
            )

    @property
    def candidates(self) -> int:
        """Candidates a chunk: beam_size children of each of top_k beams (chunk 0: as many fresh)."""
        return self.beam_size * self.top_k
