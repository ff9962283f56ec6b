"""Prompt-parallel batches (`streamt1 batch`): a list of videos, each its own resumable session
under one root, split over the groups of a torchrun job deterministically, so that running the
same command again skips what is finished and continues what is not."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import tomllib

from engine.config import MAX_SECONDS, StreamConfig
from engine.errors import StreamT1Error
from engine.parallel import Ranks
from engine.records import ChunkRecord
from sessions.group import follow, join
from sessions.growing_video import VIDEO_FILE
from sessions.lineage import final_beam
from sessions.run import SessionRun
from sessions.store import Session, SessionError, SessionSpec

KEYS = {"prompt", "seconds", "chunks", "seed", "schedule"}


@dataclass(frozen=True)
class BatchItem:
    """One video of a batch: its prompt schedule ({first chunk: prompt}), length and seed."""

    index: int
    schedule: dict[int, str]
    chunks: int
    seed: int

    @property
    def prompt(self) -> str:
        return self.schedule[0]

    @property
    def name(self) -> str:
        """Its session's folder name: stable for the same line of the same file."""
        slug = "-".join(re.findall(r"[a-z0-9]+", self.prompt.lower()))[:48].strip("-") or "video"
        return f"{self.index:04d}-{slug}"


def read_batch(path: Path, seconds: float, seed: int, config: StreamConfig) -> list[BatchItem]:
    """Items from a text file (one prompt a line; blank lines and `#` comments skipped), JSON lines
    or TOML (`[[video]]` tables), each with optional seconds or chunks, seed and schedule; every
    problem is one line naming the entry."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise StreamT1Error(
            f"cannot read the prompt list {path} ({type(exc).__name__}): give a text, JSONL or TOML file"
        ) from exc
    if path.suffix == ".jsonl":
        entries = []
        for n, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    entries.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise StreamT1Error(f"{path}, line {n}: not JSON ({exc.msg})") from exc
    elif path.suffix == ".toml":
        try:
            raw = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise StreamT1Error(f"{path} is not valid TOML: {' '.join(str(exc).split())}") from exc
        entries = raw.get("video", [])
        if set(raw) - {"video"} or not isinstance(entries, list):
            raise StreamT1Error(f"{path}: put each video in a [[video]] table")
    else:
        entries = [
            {"prompt": line.strip()} for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")
        ]
    if not entries:
        raise StreamT1Error(f"the prompt list {path} is empty: give one prompt a line")
    return [_item(i, entry, f"{path}, entry {i + 1}", seconds, seed, config) for i, entry in enumerate(entries)]


def _item(index: int, entry: object, where: str, seconds: float, seed: int, config: StreamConfig) -> BatchItem:
    if not isinstance(entry, dict) or set(entry) - KEYS:
        raise StreamT1Error(f"{where}: use only the keys {', '.join(sorted(KEYS))}")
    prompt = entry.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise StreamT1Error(f"{where}: prompt is missing or empty")
    if "seconds" in entry and "chunks" in entry:
        raise StreamT1Error(f"{where}: give seconds or chunks, not both")
    chunks = entry.get("chunks")
    if chunks is None:
        length = entry.get("seconds", seconds)
        if isinstance(length, bool) or not isinstance(length, (int, float)) or not 0 < length <= MAX_SECONDS:
            raise StreamT1Error(f"{where}: seconds must be a number in (0, {MAX_SECONDS:g}]")
        chunks = config.chunks_for_seconds(length)
    if isinstance(chunks, bool) or not isinstance(chunks, int) or chunks < 1:
        raise StreamT1Error(f"{where}: chunks must be a whole number >= 1")
    item_seed = entry.get("seed", seed)
    if isinstance(item_seed, bool) or not isinstance(item_seed, int) or not 0 <= item_seed < 2**62:
        raise StreamT1Error(f"{where}: seed must be a whole number from 0 to 2^62 - 1")
    schedule = {0: prompt}
    for switch in entry.get("schedule", []):
        if (
            not isinstance(switch, dict)
            or set(switch) != {"at_chunk", "prompt"}
            or not isinstance(switch["at_chunk"], int)
            or switch["at_chunk"] <= max(schedule)
            or not isinstance(switch["prompt"], str)
            or not switch["prompt"].strip()
        ):
            raise StreamT1Error(f"{where}: a schedule is a list of {{at_chunk, prompt}} after chunk 0, in order")
        schedule[switch["at_chunk"]] = switch["prompt"]
    return BatchItem(index, schedule, chunks, item_seed)


def assigned(items: list[BatchItem], group: int, groups: int) -> list[BatchItem]:
    """The items group `group` of `groups` runs: every `groups`-th one, so each item has one group."""
    return items[group::groups]


@dataclass(frozen=True)
class BatchStatus:
    """A batch item's session as the summary shows it."""

    item: BatchItem
    path: Path
    state: str  # "done", "partial", "not started" or "damaged: ..."
    chunks: int
    fused: float | None  # the final pick's fused score at its last chunk (None: plain, or not started)

    @property
    def video(self) -> Path | None:
        path = self.path / VIDEO_FILE
        return path if path.exists() else None


def status(item: BatchItem, root: Path) -> BatchStatus:
    path = root / item.name
    if not path.exists():
        return BatchStatus(item, path, "not started", 0, None)
    try:
        session = Session.open(path)
        fused = None
        if session.head:
            last = ChunkRecord.from_json(session.record(session.head - 1))
            if len(last.candidates) > 1:
                fused = last.candidates[last.beams[final_beam(session)].candidate].fused
    except SessionError as err:
        return BatchStatus(item, path, f"damaged: {err}", 0, None)
    done = session.head >= item.chunks and (path / VIDEO_FILE).exists()
    return BatchStatus(item, path, "done" if done else "partial", session.head, fused)


def _maker(path: Path, spec: SessionSpec | None) -> Callable[[], Session]:
    """How the group's leader gets an item's session: made from `spec`, or opened (None)."""
    return lambda: Session.open(path) if spec is None else Session.create(path, spec)


def run_batch(
    items: list[BatchItem],
    root: Path,
    group: Ranks,
    group_index: int,
    groups: int,
    world_rank: int,
    spec_of: Callable[[BatchItem], SessionSpec],
    open_run: Callable[[Session], SessionRun],
    say: Callable[[str], None],
) -> None:
    """Run this group's items one after another: make the sessions that do not exist, continue
    those that stopped early, skip the finished. The group's leader writes; its other ranks follow."""
    root.mkdir(parents=True, exist_ok=True)
    for item in assigned(items, group_index, groups):
        path = root / item.name
        before = status(item, root)  # every rank looks before the leader changes anything
        group.barrier()
        if before.state == "done" or before.state.startswith("damaged"):
            if group.leader:
                say(f"rank {world_rank}: skipped {item.name} ({before.state})")
            continue
        made = before.state == "not started"
        session = join(group, path, _maker(path, spec_of(item) if made else None))
        loaded = open_run(session)
        todo = max(0, item.chunks - session.head)
        if group.leader:
            with session.lock():
                loaded.run(todo, on_record=lambda record: None, on_note=say)
            say(f"rank {world_rank}: {'made' if made else 'continued'} {item.name}")
        else:
            follow(session, loaded.loop, todo, None)
