"""A session's spec (`session.toml`): everything that decides what it generates, as typed values.

`SessionSpec.from_toml` is the one way in from disk: every value is checked there (the settings
by `StreamConfig`'s and `ScalingConfig`'s own constructors, the rest by its type), so a hand-edited
or foreign file fails in one line naming the value, not deep inside a run. `to_toml` writes the same
keys back. Keys added after format 3 (`model_dir`, the [stream] settings besides the three sizes)
are optional, so every format-3 session still opens, with the defaults it was made with.
"""

from __future__ import annotations

import math
from dataclasses import MISSING, asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import tomli_w
import tomllib

from engine.config import StreamConfig
from engine.errors import StreamT1Error
from engine.models.presets import PRESETS
from engine.positions import PositionMode
from engine.scaling.config import ScalingConfig
from sessions.errors import SessionError

FORMAT = "streamt1-session"
# 2: per-array digests in every chunk, session ids checked by branches; 3: digests cover the chunk's
# identity and its record, and each chunk holds its prompt schedule
FORMAT_VERSION = 3


@dataclass(frozen=True)
class PromptSwitch:
    """`prompt` is in force from chunk `from_chunk` on (until the next switch)."""

    from_chunk: int
    prompt: str


@dataclass(frozen=True)
class RewardNames:
    """The scorers of a Stream-T1 session (engine.rewards.registry names)."""

    short: str
    long: str


@dataclass(frozen=True)
class ParentRef:
    """A branch's parent: its folder, the branch point (chunks 0..at-1 are the parent's) and its id.
    `relative` is the parent's folder as seen from the branch's: folders moved or copied together
    keep (or take along) their parent. Sessions made before it have "" and only the absolute path."""

    path: str
    at: int
    id: str
    relative: str = ""


@dataclass(frozen=True)
class Compute:
    """How chunks are computed: the same inputs on another device or in another dtype give other
    numbers, so resuming elsewhere is not bitwise an uninterrupted run."""

    device: str  # torch.device.type: "cpu", "cuda"
    dtype: str  # "float32", "bfloat16", ...

    def __str__(self) -> str:
        return f"{self.device}/{self.dtype}"


class SpecProblem(ValueError):
    """What is wrong with one value of a spec, in a few words (wrapped into a SessionError)."""


@dataclass(frozen=True)
class SessionSpec:
    """Everything that decides what a session generates (session.toml)."""

    preset: str
    seed: int
    stream: StreamConfig
    prompts: tuple[PromptSwitch, ...]  # sorted, the first from chunk 0
    scaling: ScalingConfig | None = None  # None: plain LongLive
    rewards: RewardNames | None = None  # None: plain LongLive
    parent: ParentRef | None = None  # None: not a branch
    compute: Compute | None = None  # at `new`/`branch` (each chunk's record has its own); None: older sessions
    positions: PositionMode = PositionMode.AUTO  # rotary positions, fixed at creation
    snapshot_every: int = 40  # chunks between state snapshots: `continue` replays at most this many
    snapshots_kept: int = 2  # newest snapshots kept in the store
    model_dir: str | None = None  # absolute weights folder given to `new`/`branch`; `continue` uses it by default
    id: str = ""  # set by Session.create; a branch checks that its parent is still this session
    format: str = FORMAT
    format_version: int = FORMAT_VERSION
    created_by: str = "streamt1"

    @property
    def reads_weights(self) -> bool:
        """The preset or a scorer reads downloaded weights (only then is `model_dir` kept)."""
        return PRESETS[self.preset].trained or (
            self.rewards is not None and any(r != "proxy" for r in (self.rewards.short, self.rewards.long))
        )

    @property
    def schedule(self) -> dict[int, str]:
        return {p.from_chunk: p.prompt for p in self.prompts}

    def reprompted(self, from_chunk: int, prompt: str) -> SessionSpec:
        """This spec with `prompt` in force from `from_chunk` on: earlier entries kept, later ones
        (a script's switches past that chunk) dropped, as a user re-prompting from there means."""
        kept = tuple(p for p in self.prompts if p.from_chunk < from_chunk)
        return replace(self, prompts=(*kept, PromptSwitch(from_chunk, prompt)))

    # --- plain data --------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The spec as TOML/JSON data, every key (None where a value is not set)."""
        return {
            "preset": self.preset,
            "seed": self.seed,
            "stream": _plain(self.stream),
            "prompts": prompts_to_plain(self.prompts),
            "scaling": _plain(self.scaling),
            "rewards": None if self.rewards is None else [self.rewards.short, self.rewards.long],
            "parent": _plain(self.parent),
            "compute": compute_to_plain(self.compute),
            "positions": self.positions.value,
            "snapshot_every": self.snapshot_every,
            "snapshots_kept": self.snapshots_kept,
            "model_dir": self.model_dir,
            "id": self.id,
            "format": self.format,
            "format_version": self.format_version,
            "created_by": self.created_by,
        }

    def to_toml(self) -> str:
        return tomli_w.dumps({k: v for k, v in self.to_dict().items() if v is not None})

    @classmethod
    def from_toml(cls, text: str | bytes, path: Path) -> SessionSpec:
        """Parse and check the text of `path` (a session's session.toml)."""
        try:
            raw = tomllib.loads(text.decode("utf-8") if isinstance(text, bytes) else text)
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise SessionError(
                f"{path} is corrupt or foreign ({type(exc).__name__}): it was not written by this "
                "streamt1; restore it or start a new session"
            ) from exc
        return cls.from_dict(raw, path)

    @classmethod
    def from_dict(cls, raw: Any, path: Path) -> SessionSpec:
        """Check parsed session.toml data (of `path`) value by value: one line for the first problem."""
        try:
            return _parse(raw)
        except _OtherVersion as exc:
            raise SessionError(
                f"{path.parent} was written by a streamt1 with session format {exc.version}; this "
                f"one reads format {FORMAT_VERSION}: use the matching streamt1 version"
            ) from None
        except SpecProblem as exc:
            raise SessionError(f"{path} is corrupt or foreign ({exc}): restore it or start a new session") from None


def prompts_to_plain(prompts: tuple[PromptSwitch, ...]) -> list[dict[str, Any]]:
    """[{"from_chunk": k, "prompt": p}, ...]: session.toml's form, and what each chunk commits."""
    return [asdict(p) for p in prompts]


def prompts_from_plain(raw: Any) -> tuple[PromptSwitch, ...]:
    """A prompt schedule from its plain form; SpecProblem unless sorted and starting at chunk 0."""
    problem = SpecProblem("prompts is not a sorted list of {from_chunk, prompt} starting at chunk 0")
    if not isinstance(raw, list) or not raw:
        raise problem
    prompts = tuple(_record(PromptSwitch, entry, problem) for entry in raw)
    starts = [p.from_chunk for p in prompts]
    if starts != sorted(set(starts)) or starts[0] != 0:
        raise problem
    return prompts


# --- checking --------------------------------------------------------------------------------------
class _OtherVersion(Exception):
    def __init__(self, version: int) -> None:
        self.version = version


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return _is_int(value) or (isinstance(value, float) and math.isfinite(value))


def compute_to_plain(compute: Compute | None) -> dict[str, str] | None:
    return _plain(compute)


def compute_from_plain(raw: Any) -> Compute | None:
    return None if raw is None else _record(Compute, raw, SpecProblem("compute is not a {device, dtype} table"))


def _plain(value: Any) -> Any:
    """A settings or record dataclass as a table (tuples as lists), None as None."""
    if value is None:
        return None
    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(value).items()}


def _record(cls: type, raw: Any, problem: SpecProblem) -> Any:
    """A small record (PromptSwitch, ParentRef, Compute) from a table with its fields (those with a
    default may be missing), each a whole number or text as its annotation says."""
    kinds = {f.name: f.type for f in fields(cls)}  # annotations as written: "int", "str"
    required = {f.name for f in fields(cls) if f.default is MISSING}
    if not isinstance(raw, dict) or not required <= set(raw) <= set(kinds):
        raise problem
    if not all(_is_int(value) if kinds[k] == "int" else isinstance(value, str) for k, value in raw.items()):
        raise problem
    return cls(**raw)


def _settings(name: str, raw: Any, cls: type) -> dict[str, Any]:
    """The values of a [stream] or [scaling] table as `cls` (StreamConfig, ScalingConfig) takes
    them: each key a field of it, whole numbers for ints, finite numbers for floats (as floats),
    lists of finite numbers for tuples and text for text, so that a hand edit such as
    `window_chunks = 2.5` is refused here. The constructor checks the values themselves."""
    if not isinstance(raw, dict):
        raise SpecProblem(f"{name} is not a table")
    kinds = {f.name: f.type for f in fields(cls)}  # annotations as written: "int", "float", "tuple[float, ...]"
    values = {}
    for key, value in raw.items():
        kind = kinds.get(key)
        if kind == "int" and _is_int(value):
            values[key] = value
        elif kind == "float" and _is_number(value):
            values[key] = float(value)
        elif kind == "str" and isinstance(value, str):
            values[key] = value
        elif kind == "tuple[float, ...]" and isinstance(value, list) and all(_is_number(v) for v in value):
            values[key] = tuple(float(v) for v in value)
        elif kind == "tuple[float, ...]":
            raise SpecProblem(f"{name}.{key} = {value!r} is not a list of finite numbers")
        elif kind in ("int", "float"):
            raise SpecProblem(f"{name}.{key} = {value!r} is not a {'whole' if kind == 'int' else 'finite'} number")
        elif kind == "str":
            raise SpecProblem(f"{name}.{key} = {value!r} is not text")
        else:
            raise SpecProblem(f"{name}.{key} is not a setting that a session can hold")
    return values


def _whole_at_least_one(raw: dict[str, Any], key: str, default: int) -> int:
    value = raw.get(key, default)
    if not (_is_int(value) and value >= 1):
        raise SpecProblem(f"{key} is not a whole number >= 1")
    return value


def _parse(raw: Any) -> SessionSpec:
    if not isinstance(raw, dict):  # tomllib always gives a table; from_dict may be handed anything
        raise SpecProblem("not a table")
    if raw.get("format") != FORMAT:
        raise SpecProblem(f"format is {raw.get('format')!r}, not {FORMAT!r}")
    if not _is_int(raw.get("format_version")):
        raise SpecProblem("format_version is missing")
    if raw["format_version"] != FORMAT_VERSION:
        raise _OtherVersion(raw["format_version"])
    if unknown := set(raw) - {f.name for f in fields(SessionSpec)}:
        raise SpecProblem(f"unknown keys {sorted(unknown)}")
    if raw.get("preset") not in PRESETS:
        raise SpecProblem(f"preset {raw.get('preset')!r} is not one of {sorted(PRESETS)}")
    if not _is_int(raw.get("seed")) or not 0 <= raw["seed"] < 2**62:
        raise SpecProblem("seed is not a whole number in [0, 2^62)")
    stream_values = _settings("stream", raw.get("stream"), StreamConfig)
    prompts = prompts_from_plain(raw.get("prompts"))
    scaling_values = None if "scaling" not in raw else _settings("scaling", raw["scaling"], ScalingConfig)
    try:
        stream = StreamConfig(**stream_values)
        scaling = None if scaling_values is None else ScalingConfig(**scaling_values)
        if scaling is not None:
            scaling.check_stream(stream)
    except StreamT1Error as exc:
        raise SpecProblem(f"bad stream or scaling settings: {exc}") from None
    rewards = raw.get("rewards")
    if rewards is not None:
        if not (isinstance(rewards, list) and len(rewards) == 2 and all(isinstance(r, str) for r in rewards)):
            raise SpecProblem("rewards is not a [short, long] pair of names")
        rewards = RewardNames(*rewards)
    parent = raw.get("parent")
    if parent is not None:
        parent = _record(ParentRef, parent, SpecProblem("parent is not a {path, at, id} table"))
    compute = compute_from_plain(raw.get("compute"))
    modes = [m.value for m in PositionMode]
    if raw.get("positions", PositionMode.AUTO.value) not in modes:
        raise SpecProblem(f"positions is not one of {modes}")
    snapshot_every = _whole_at_least_one(raw, "snapshot_every", SessionSpec.snapshot_every)
    snapshots_kept = _whole_at_least_one(raw, "snapshots_kept", SessionSpec.snapshots_kept)
    model_dir = raw.get("model_dir")
    if model_dir is not None and not (isinstance(model_dir, str) and Path(model_dir).is_absolute()):
        raise SpecProblem("model_dir is not an absolute path")
    if not isinstance(raw.get("id"), str) or not raw["id"]:
        raise SpecProblem("id is missing")
    if not isinstance(raw.get("created_by", ""), str):
        raise SpecProblem("created_by is not text")
    return SessionSpec(
        preset=raw["preset"],
        seed=raw["seed"],
        stream=stream,
        prompts=prompts,
        scaling=scaling,
        rewards=rewards,
        parent=parent,
        compute=compute,
        positions=PositionMode(raw.get("positions", PositionMode.AUTO.value)),
        snapshot_every=snapshot_every,
        snapshots_kept=snapshots_kept,
        model_dir=model_dir,
        id=raw["id"],
        format=raw["format"],
        format_version=raw["format_version"],
        created_by=raw.get("created_by", SessionSpec.created_by),
    )
