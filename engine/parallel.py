"""Candidate-parallel Stream-T1 over torch.distributed: which rank runs which candidate, and the
few collectives that keep every rank's beams identical.

Every rank holds every surviving beam. A chunk's candidates are split over the ranks in contiguous
blocks (siblings stay together, so their denoising batches are the ones a single process makes);
each rank denoises, decodes and scores its own, the scores are all-gathered, and every rank makes
the same selection from the same numbers. Each survivor's owner then runs its cache write and
broadcasts what the other ranks cannot recompute cheaply (latents, the new K/V segment, the decoder
cache, the uint8 frames). A world of one is the same code with collectives that do nothing.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

from engine.errors import StreamT1Error

TIMEOUT = timedelta(minutes=10)  # a rank stuck this long in a collective stops its group


class RankMismatch(StreamT1Error):
    """Ranks that would not compute the same session (settings, models or code differ)."""


@dataclass
class Traffic:
    """Bytes a rank received from the others since the last `take` (the loop times the exchange)."""

    bytes: int = 0

    def take(self) -> int:
        out, self.bytes = self.bytes, 0
        return out


@dataclass(frozen=True)
class Ranks:
    """The processes that share one session: `rank` of `size` in `group` (None: the default group,
    or no group at all for a world of one). Collectives run on `device` (cuda for NCCL)."""

    rank: int = 0
    size: int = 1
    group: Any = None
    device: torch.device = torch.device("cpu")
    traffic: Traffic = field(default_factory=Traffic, compare=False)

    @property
    def leader(self) -> bool:
        return self.rank == 0

    def owner(self, candidate: int, candidates: int) -> int:
        """The rank that runs `candidate` of `candidates`: contiguous blocks, so one beam's children
        share a rank whenever the ranks are no more than the beams."""
        return candidate * self.size // candidates

    def gather_scores(self, mine: dict[int, tuple[float, float]], candidates: int) -> tuple[Tensor, Tensor]:
        """Every candidate's (short, long) score from the ranks that computed them, as float32
        tensors equal on every rank. Summed in float64 with zeros elsewhere: exact."""
        table = torch.zeros(2, candidates, dtype=torch.float64)
        for i, (short, long) in mine.items():
            table[0, i], table[1, i] = short, long
        if self.size > 1:
            on = table.to(self.device)
            dist.all_reduce(on, group=self.group)
            table = on.cpu()
            self.traffic.bytes += table.numel() * table.element_size()
        return table[0].float(), table[1].float()

    def share(self, parts: tuple[dict[str, Any], list[Tensor]] | None, src: int) -> tuple[dict[str, Any], list[Tensor]]:
        """Metadata and tensors from rank `src` to every rank; `parts` is None except on `src`.
        Received tensors land where the sender kept them (cpu, or this rank's compute device)."""
        if self.size == 1:
            assert parts is not None
            return parts
        if self.rank == src:
            meta, tensors = parts
            header = [meta, [(tuple(t.shape), t.dtype, t.device.type) for t in tensors]]
        else:
            header = [None, None]
        dist.broadcast_object_list(header, group_src=src, group=self.group, device=self.device)
        meta, layout = header
        out = []
        for i, (shape, dtype, where) in enumerate(layout):
            if self.rank == src:
                wire = tensors[i].to(self.device).contiguous()
            else:
                wire = torch.empty(shape, dtype=dtype, device=self.device)
            dist.broadcast(wire, group_src=src, group=self.group)
            home = torch.device("cpu") if where == "cpu" else self.device
            out.append(tensors[i] if self.rank == src else wire.to(home))
            if self.rank != src:
                self.traffic.bytes += wire.numel() * wire.element_size()
        return meta, out

    def check_same(self, facts: dict[str, str]) -> None:
        """Refuse to start unless every rank has the same `facts` (settings, model and code
        digests): ranks that differ would make different selections and corrupt the session."""
        if self.size == 1:
            return
        every: list[dict[str, str] | None] = [None] * self.size
        dist.all_gather_object(every, facts, group=self.group)
        for rank, theirs in enumerate(every):
            differ = sorted(k for k in facts.keys() | theirs.keys() if facts.get(k) != theirs.get(k))
            if differ:
                raise RankMismatch(
                    f"rank {rank} differs from rank {self.rank} in {', '.join(differ)}: start every "
                    "rank with the same command, weights and streamt1 version"
                )

    def barrier(self) -> None:
        if self.size > 1:
            dist.barrier(group=self.group, device_ids=[self.device.index] if self.device.type == "cuda" else None)


def launched_world() -> int:
    """Processes in this torchrun job (1 when not started by torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def start_world(device_type: str) -> tuple[Ranks, torch.device]:
    """Join the torchrun job this process belongs to (NCCL on CUDA, gloo on CPU) and return its
    ranks and compute device (cuda:LOCAL_RANK); a process not started by torchrun is a world of one."""
    if launched_world() == 1:
        return Ranks(device=torch.device("cpu")), torch.device(device_type)
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if os.environ.get("OMP_NUM_THREADS") == "1":  # torchrun's default starves the CPU-side work (reward inputs)
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // int(os.environ.get("LOCAL_WORLD_SIZE", "1"))))
    if device_type == "cuda":
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
        backend = "nccl"
    else:
        device, backend = torch.device("cpu"), "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend, timeout=TIMEOUT, device_id=device if backend == "nccl" else None)
    return Ranks(dist.get_rank(), dist.get_world_size(), None, device), device


def split_world(world: Ranks, per_group: int) -> tuple[Ranks, int, int]:
    """Cut the world into groups of `per_group` consecutive ranks (one session each at a time):
    (this rank's group, the group's index, the number of groups). Every rank makes every group, as
    torch.distributed requires."""
    if per_group < 1 or world.size % per_group:
        raise StreamT1Error(f"--gpus-per-session {per_group} does not divide the {world.size} processes: use a divisor")
    groups = world.size // per_group
    mine = world.rank // per_group
    handle = None
    for g in range(groups):
        ranks = list(range(g * per_group, (g + 1) * per_group))
        made = dist.new_group(ranks) if world.size > 1 and per_group > 1 else None
        if g == mine:
            handle = made
    return Ranks(world.rank % per_group, per_group, handle, world.device), mine, groups


def stop_world() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
