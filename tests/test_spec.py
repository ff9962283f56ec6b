"""The typed session spec (sessions/spec.py): session.toml in and out, one-line problems, and the
plain forms that older sessions and every chunk's committed schedule hold. No model is run."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from engine.config import StreamConfig
from engine.positions import PositionMode
from engine.scaling.config import ScalingConfig
from sessions.errors import SessionError
from sessions.spec import (
    FORMAT_VERSION,
    Compute,
    ParentRef,
    PromptSwitch,
    RewardNames,
    SessionSpec,
    prompts_from_plain,
    prompts_to_plain,
)

PATH = Path("/sessions/s/session.toml")

# What d021eaf (the last code with the dict spec) wrote for a Stream-T1 branch: only three [stream]
# keys, no model_dir. Such a session must open with the settings it was made with.
OLD_TOML = """\
preset = "tiny"
seed = 7
prompts = [
    { from_chunk = 0, prompt = "a red fox" },
    { from_chunk = 2, prompt = "a blue bird" },
]
rewards = [
    "proxy",
    "proxy",
]
positions = "absolute"
snapshot_every = 40
snapshots_kept = 2
id = "99656705d159456089bc0458185124ca"
format = "streamt1-session"
format_version = 3
created_by = "streamt1"

[stream]
chunk_frames = 3
sink_frames = 3
local_window_frames = 12

[scaling]
beam_size = 2
top_k = 1
noise_sigma = -0.1
short_threshold = 0.0
long_threshold = 0.2
fusion_cap = 0.4
window_chunks = 10
max_sink_frames = 15
ema_alpha = 0.999
horizon_frames = 9

[parent]
path = "/sessions/p"
at = 1
id = "0123456789abcdef0123456789abcdef"

[compute]
device = "cpu"
dtype = "float32"
"""


def full_spec() -> SessionSpec:
    return SessionSpec(
        preset="tiny",
        seed=7,
        stream=StreamConfig(),
        scaling=ScalingConfig(top_k=1, horizon_frames=9),
        prompts=(PromptSwitch(0, "a red fox"), PromptSwitch(2, "a blue bird")),
        rewards=RewardNames("proxy", "proxy"),
        parent=ParentRef("/sessions/p", 1, "0123456789abcdef0123456789abcdef"),
        compute=Compute("cpu", "float32"),
        positions=PositionMode.ABSOLUTE,
        model_dir="/weights",
        id="99656705d159456089bc0458185124ca",
    )


def problem(text: str) -> str:
    with pytest.raises(SessionError) as err:
        SessionSpec.from_toml(text, PATH)
    message = str(err.value)
    assert "\n" not in message
    return message


def test_an_old_session_toml_opens_with_the_settings_it_was_made_with():
    spec = SessionSpec.from_toml(OLD_TOML, PATH)
    assert spec == replace(full_spec(), model_dir=None)
    assert spec.stream == StreamConfig() and spec.model_dir is None
    assert spec.schedule == {0: "a red fox", 2: "a blue bird"}
    assert spec.parent.at == 1 and str(spec.compute) == "cpu/float32"


def test_to_toml_keeps_every_old_key_and_value_and_round_trips():
    spec = full_spec()
    assert SessionSpec.from_toml(spec.to_toml(), PATH) == spec
    old = SessionSpec.from_toml(OLD_TOML, PATH)
    written = old.to_toml()
    for line in OLD_TOML.splitlines():  # the new [stream] keys come on top, nothing else changes
        assert line in written.splitlines()
    assert "model_dir" not in written  # only written when set
    assert SessionSpec.from_toml(written, PATH) == old
    beside = replace(spec, parent=replace(spec.parent, relative="../p"))  # a branch made since `relative`
    assert SessionSpec.from_toml(beside.to_toml(), PATH) == beside


def test_plain_forms_are_the_old_dicts():
    """show --json, the report and every committed chunk hold these; a chunk's prompt text is part
    of its digest, so it must stay byte for byte what the dict spec wrote."""
    spec = full_spec()
    plain = spec.to_dict()
    assert plain["prompts"] == [{"from_chunk": 0, "prompt": "a red fox"}, {"from_chunk": 2, "prompt": "a blue bird"}]
    assert json.dumps(prompts_to_plain(spec.prompts)) == (
        '[{"from_chunk": 0, "prompt": "a red fox"}, {"from_chunk": 2, "prompt": "a blue bird"}]'
    )
    assert prompts_from_plain(plain["prompts"]) == spec.prompts
    assert plain["rewards"] == ["proxy", "proxy"] and plain["positions"] == "absolute"
    assert plain["parent"] == {"path": "/sessions/p", "at": 1, "id": "0123456789abcdef0123456789abcdef", "relative": ""}
    assert plain["compute"] == {"device": "cpu", "dtype": "float32"}
    assert plain["scaling"]["horizon_frames"] == 9 and plain["stream"]["timesteps"] == [1000.0, 750.0, 500.0, 250.0]


def test_reprompting_keeps_earlier_switches_only():
    spec = full_spec()
    assert spec.reprompted(1, "a cat").schedule == {0: "a red fox", 1: "a cat"}
    assert spec.reprompted(3, "a cat").schedule == {0: "a red fox", 2: "a blue bird", 3: "a cat"}
    assert spec.reprompted(2, "a cat").prompts == (PromptSwitch(0, "a red fox"), PromptSwitch(2, "a cat"))


@pytest.mark.parametrize(
    "edit, needle",
    [
        (('preset = "tiny"', 'preset = "huge"'), "preset 'huge' is not one of"),
        (("seed = 7", "seed = -1"), "seed is not a whole number in [0, 2^62)"),
        (("seed = 7", "seed = true"), "seed is not a whole number"),
        (('format = "streamt1-session"', 'format = "other"'), "format is 'other', not 'streamt1-session'"),
        (("format_version = 3", 'format_version = "3"'), "format_version is missing"),
        (('created_by = "streamt1"', 'created_by = "streamt1"\nextra = 1'), "unknown keys ['extra']"),
        (("chunk_frames = 3", "chunk_frames = 0"), "bad stream or scaling settings: chunk size"),
        (("chunk_frames = 3", "chunk_frames = 3.0"), "stream.chunk_frames = 3.0 is not a whole number"),
        (("max_sink_frames = 15", "max_sink_frames = 14"), "bad stream or scaling settings: --max-sink"),
        (("beam_size = 2", "beam_size = 0"), "bad stream or scaling settings: --beam-size"),
        (("noise_sigma = -0.1", "noise_sigma = inf"), "scaling.noise_sigma = inf is not a finite number"),
        (("ema_alpha = 0.999", "ema_alpha = 0.999\nspeed = 2"), "scaling.speed is not a setting"),
        (("from_chunk = 0,", "from_chunk = 1,"), "prompts is not a sorted list"),
        (("from_chunk = 2,", "from_chunk = 0,"), "prompts is not a sorted list"),
        (('prompt = "a blue bird"', "prompt = 5"), "prompts is not a sorted list"),
        (('    "proxy",\n]', "]"), "rewards is not a [short, long] pair of names"),
        (("at = 1", 'at = "1"'), "parent is not a {path, at, id} table"),
        (("at = 1", "at = 1\nhow = 2"), "parent is not a {path, at, id} table"),
        (('dtype = "float32"', "dtype = 32"), "compute is not a {device, dtype} table"),
        (('positions = "absolute"', 'positions = "far"'), "positions is not one of"),
        (("snapshot_every = 40", "snapshot_every = 0"), "snapshot_every is not a whole number >= 1"),
        (("snapshots_kept = 2", "snapshots_kept = 1.5"), "snapshots_kept is not a whole number >= 1"),
        (('id = "99656705d159456089bc0458185124ca"', 'id = ""'), "id is missing"),
        (('created_by = "streamt1"', "created_by = 1"), "created_by is not text"),
    ],
)
def test_every_value_is_checked_in_one_line(edit: tuple[str, str], needle: str):
    assert edit[0] in OLD_TOML
    message = problem(OLD_TOML.replace(*edit))
    assert message.startswith(f"{PATH} is corrupt or foreign (") and needle in message, message
    assert message.endswith("restore it or start a new session")


def test_unparsable_and_other_versions_have_their_own_messages():
    assert "is corrupt or foreign (TOMLDecodeError)" in problem(OLD_TOML + "[stream]\n")
    assert "is corrupt or foreign (UnicodeDecodeError)" in problem(b"seed = \xff\n")
    other = problem(OLD_TOML.replace(f"format_version = {FORMAT_VERSION}", "format_version = 99"))
    assert other == (
        f"{PATH.parent} was written by a streamt1 with session format 99; this one reads format "
        f"{FORMAT_VERSION}: use the matching streamt1 version"
    )
    # A version is reported as such even when the rest would not parse as this version's spec.
    assert "session format 2" in problem(
        "old_key = 1\n" + OLD_TOML.replace(f"format_version = {FORMAT_VERSION}", "format_version = 2")
    )
