"""Prompt schedules from TOML scripts (`streamt1 new --script FILE.toml`): which prompt takes over
at which chunk. Times in seconds map to the chunk that holds that video frame."""

from __future__ import annotations

from pathlib import Path

import tomllib

from engine.config import MAX_SECONDS, StreamConfig
from engine.errors import StreamT1Error


def read_script(path: Path, config: StreamConfig) -> dict[int, str]:
    """{first chunk: prompt}; every problem is a one-line StreamT1Error naming the entry."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise StreamT1Error(f"prompt script {path} does not exist") from exc
    except OSError as exc:
        raise StreamT1Error(
            f"prompt script {path} cannot be read ({exc.strerror or type(exc).__name__}): give a TOML file"
        ) from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise StreamT1Error(f"prompt script {path} is not valid TOML: {' '.join(str(exc).split())}") from exc
    if unknown := set(raw) - {"prompt"}:
        raise StreamT1Error(f"prompt script {path}: unknown keys {sorted(unknown)}; entries go in [[prompt]] tables")
    entries = raw.get("prompt")
    if not isinstance(entries, list) or not entries:
        raise StreamT1Error(f"prompt script {path} has no [[prompt]] entries (see prompts/*.toml for the format)")
    schedule: dict[int, str] = {}
    last_chunk = config.chunk_at_seconds(MAX_SECONDS)
    for i, entry in enumerate(entries, 1):
        where = f"prompt script {path}, entry {i}"
        if not isinstance(entry, dict) or set(entry) - {"at_seconds", "at_chunk", "prompt"}:
            raise StreamT1Error(f"{where}: use only the keys at_seconds or at_chunk, and prompt")
        text = entry.get("prompt")
        if not isinstance(text, str) or not text.strip():
            raise StreamT1Error(f"{where}: prompt is missing or empty")
        if ("at_seconds" in entry) == ("at_chunk" in entry):
            raise StreamT1Error(f"{where}: give exactly one of at_seconds or at_chunk")
        at = entry.get("at_seconds", entry.get("at_chunk"))
        limit = MAX_SECONDS if "at_seconds" in entry else last_chunk
        if (
            isinstance(at, bool)
            or not isinstance(at, (int, float))
            or not 0 <= at <= limit
            or ("at_chunk" in entry and not isinstance(at, int))
        ):
            raise StreamT1Error(
                f"{where}: the start must be a number from 0 to {MAX_SECONDS:g} seconds or "
                f"{last_chunk} chunks (at_chunk a whole number)"
            )
        chunk = at if "at_chunk" in entry else config.chunk_at_seconds(at)
        if schedule and chunk <= max(schedule):
            raise StreamT1Error(
                f"{where}: starts at chunk {chunk}, not after the previous entry's chunk {max(schedule)}"
            )
        schedule[chunk] = text
    if 0 not in schedule:
        raise StreamT1Error(f"prompt script {path}: the first entry must start at 0")
    return schedule
