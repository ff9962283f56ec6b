"""A surviving beam as a value: exactly what later chunks need, and nothing that grows with the video.

The past of a beam lives in the session store; a beam keeps its KV cache (sink + window), its
decoder's causal cache, its last chunk's noise and seed, reward statistics, the clean latents of
the chunks in its attention window (a prompt switch re-caches them) and the frames and clean
latents of the chunks in the long-term reward's window (the `reference` reward inputs re-decode
the latents). `to_parts`/`from_parts` turn it into named tensors plus JSON-able
metadata: the form snapshots store and processes exchange.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import Tensor

from engine.models.kv_cache import CacheSegment, KVCache, SinkRoute
from engine.models.vae_stream import DecoderState
from engine.records import SinkEvent


@dataclass(frozen=True)
class ChunkLatents:
    start_frame: int
    latents: Tensor  # [C, F, h, w] float32, CPU


@dataclass(frozen=True, eq=False)
class BeamState:
    cache: KVCache
    decoder: DecoderState
    noise: Tensor  # initial (mixed) noise of its last chunk, [C, F, h, w] float32 CPU
    seed: int  # seed of its last chunk
    short_sum: float  # sum of its chunks' short-term rewards, added in chunk order
    short_count: int
    last_long: float | None
    window_latents: tuple[ChunkLatents, ...]  # clean latents of the chunks its cache window holds
    reward_frames: tuple[Tensor, ...]  # uint8 [3, F, H, W] CPU of its last chunks the long reward re-scores
    candidate: int  # candidate index it was at its last chunk
    last_sink_event: SinkEvent | None = None
    reward_latents: tuple[Tensor, ...] = ()  # clean latents [C, F, h, w] float32 CPU of the same chunks

    def latents_at(self, start_frame: int) -> Tensor:
        return next(c.latents for c in self.window_latents if c.start_frame == start_frame)

    def grown(
        self,
        cache: KVCache,
        decoder: DecoderState,
        noise: Tensor,
        seed: int,
        short: float,
        long: float,
        latents: ChunkLatents,
        frames: Tensor | None,
        reward_chunks: int,
        candidate: int,
        events: list[SinkEvent],
    ) -> BeamState:
        """This beam after one more chunk; bounded: only the window's latents and the reward
        window's frames are kept."""
        window = {s.start_frame for s in cache.window}
        kept = tuple(c for c in self.window_latents + (latents,) if c.start_frame in window)
        recent = () if frames is None or reward_chunks == 0 else (self.reward_frames + (frames,))[-reward_chunks:]
        recent_latents = () if reward_chunks == 0 else (self.reward_latents + (latents.latents,))[-reward_chunks:]
        return BeamState(
            cache=cache,
            decoder=decoder,
            noise=noise,
            seed=seed,
            short_sum=self.short_sum + short,
            short_count=self.short_count + 1,
            last_long=long,
            window_latents=kept,
            reward_frames=recent,
            candidate=candidate,
            last_sink_event=events[-1] if events else self.last_sink_event,
            reward_latents=recent_latents,
        )

    @property
    def earlier_short_mean(self) -> float | None:
        return None if self.short_count == 0 else self.short_sum / self.short_count

    def tensors(self) -> list[Tensor]:
        """Every tensor the beam holds (for memory accounting)."""
        return [t for value in self.to_parts()[1].values() for t in (value if isinstance(value, tuple) else (value,))]

    def to(self, device: torch.device, dtype: torch.dtype) -> BeamState:
        """The KV cache on `device` in the model's `dtype`, the decoder cache on `device` (the rest
        lives on the CPU). A no-op for a state made there: a snapshot resumes bit for bit."""
        cache = KVCache(
            tuple(_segment_to(s, device, dtype) for s in self.cache.sink),
            tuple(_segment_to(s, device, dtype) for s in self.cache.window),
        )
        feats = tuple(None if f is None else f.to(device) for f in self.decoder.feats)
        return replace(self, cache=cache, decoder=replace(self.decoder, feats=feats))

    # --- as named tensors + metadata (snapshots, other processes) ------------------------------------
    def to_parts(self) -> tuple[dict[str, Any], dict[str, Tensor | tuple[Tensor, ...]]]:
        """Metadata and named tensors; a segment's keys and values are per-layer tuples."""
        tensors: dict[str, Tensor | tuple[Tensor, ...]] = {"noise": self.noise}
        segments = []
        for kind, group in (("sink", self.cache.sink), ("window", self.cache.window)):
            for i, seg in enumerate(group):
                segments.append(
                    {
                        "kind": kind,
                        "start_frame": seg.start_frame,
                        "num_frames": seg.num_frames,
                        "route": seg.route.value,
                    }
                )
                tensors[f"{kind}.{i}.k"] = seg.keys
                tensors[f"{kind}.{i}.v"] = seg.values
        cached = []
        for i, feat in enumerate(self.decoder.feats):
            cached.append(feat is not None)
            if feat is not None:
                tensors[f"decoder.{i}"] = feat
        for c in self.window_latents:
            tensors[f"latents.{c.start_frame}"] = c.latents
        for i, frames in enumerate(self.reward_frames):
            tensors[f"frames.{i}"] = frames
        for i, chunk_latents in enumerate(self.reward_latents):
            tensors[f"reward_latents.{i}"] = chunk_latents
        meta = {
            "segments": segments,
            "decoder": {"cached": cached, "frames": self.decoder.frames, "batch_size": self.decoder.batch_size},
            "window_latents": [c.start_frame for c in self.window_latents],
            "reward_frames": len(self.reward_frames),
            "reward_latents": len(self.reward_latents),
            "seed": self.seed,
            "short_sum": self.short_sum,
            "short_count": self.short_count,
            "last_long": self.last_long,
            "candidate": self.candidate,
            "last_sink_event": None
            if self.last_sink_event is None
            else {"start_frame": self.last_sink_event.start_frame, "route": self.last_sink_event.route},
        }
        return meta, tensors

    @classmethod
    def from_parts(cls, meta: dict[str, Any], tensors: dict[str, Tensor | tuple[Tensor, ...]]) -> BeamState:
        """Inverse of `to_parts`; per-layer keys/values may also come stacked in one tensor."""
        sink, window, counts = [], [], {"sink": 0, "window": 0}
        for seg in meta["segments"]:
            kind, i = seg["kind"], counts[seg["kind"]]
            counts[kind] += 1
            keys, values = _per_layer(tensors[f"{kind}.{i}.k"]), _per_layer(tensors[f"{kind}.{i}.v"])
            (sink if kind == "sink" else window).append(
                CacheSegment(seg["start_frame"], seg["num_frames"], keys, values, SinkRoute(seg["route"]))
            )
        dec = meta["decoder"]
        feats = tuple(tensors[f"decoder.{i}"] if cached else None for i, cached in enumerate(dec["cached"]))
        event = meta["last_sink_event"]
        return cls(
            cache=KVCache(tuple(sink), tuple(window)),
            decoder=DecoderState(feats, dec["frames"], dec["batch_size"]),
            noise=tensors["noise"],
            seed=meta["seed"],
            short_sum=meta["short_sum"],
            short_count=meta["short_count"],
            last_long=meta["last_long"],
            window_latents=tuple(ChunkLatents(s, tensors[f"latents.{s}"]) for s in meta["window_latents"]),
            reward_frames=tuple(tensors[f"frames.{i}"] for i in range(meta["reward_frames"])),
            candidate=meta["candidate"],
            last_sink_event=None if event is None else SinkEvent(**event),
            # snapshots made before the reference reward inputs hold none (those sessions score video)
            reward_latents=tuple(tensors[f"reward_latents.{i}"] for i in range(meta.get("reward_latents", 0))),
        )


def _segment_to(segment: CacheSegment, device: torch.device, dtype: torch.dtype) -> CacheSegment:
    return replace(
        segment,
        keys=tuple(k.to(device, dtype) for k in segment.keys),
        values=tuple(v.to(device, dtype) for v in segment.values),
    )


def _per_layer(value: Tensor | tuple[Tensor, ...]) -> tuple[Tensor, ...]:
    """Per-layer tensors from a tuple, or from one stacked tensor (each layer its own memory, so
    CPU kernels see the same alignment as for the loop's own tensors)."""
    return value if isinstance(value, tuple) else tuple(t.clone() for t in value.unbind(0))
