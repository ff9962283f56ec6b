"""The two run loops behind `streamt1 new`: plain LongLive and Stream-T1. Each drives the engine,
logs one JSON record per chunk, updates its view, and returns the final video's chunk frames."""

from __future__ import annotations

from torch import Tensor

from engine.config import StreamConfig
from engine.models.factory import Models
from engine.rewards.base import ClipScorer, FrameScorer
from engine.scaling.config import ScalingConfig
from engine.scaling.search import BeamSearchStream
from engine.stream import StreamGenerator
from sessions.records import ChunkLog
from streamt1_cli.scaling_view import ScalingView
from streamt1_cli.view import StreamView


def run_plain(models: Models, config: StreamConfig, seed: int, prompt: str, num_chunks: int, log: ChunkLog,
              view: StreamView) -> list[Tensor]:
    generator = StreamGenerator(models, config, seed)
    generator.set_prompt(prompt)
    frames = []
    with view:
        for chunk in generator.stream(num_chunks):
            frames.append(chunk.frames[0])
            log.write({"chunk": chunk.index, "seconds": chunk.seconds})
            view.update(chunk)
    return frames


def run_scaled(models: Models, config: StreamConfig, scaling: ScalingConfig, scorers: tuple[FrameScorer, ClipScorer],
               seed: int, prompt: str, num_chunks: int, log: ChunkLog, view: ScalingView) -> list[Tensor]:
    search = BeamSearchStream(models, config, scaling, scorers[0], scorers[1], seed, prompt)
    with view:
        for _ in range(num_chunks):
            record = search.step()
            log.write(record.to_json())
            view.update(record)
    index = search.best_beam_index()
    best = search.beams[index]
    log.write({"final": {"beam": index, "lineage": list(best.lineage),
                         "short_reward": scorers[0].name, "long_reward": scorers[1].name,
                         "proxies": scorers[0].is_proxy or scorers[1].is_proxy}})
    return list(best.frames)
