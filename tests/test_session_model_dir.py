"""A session remembers its weights folder: `new` and `branch` store the absolute --model-dir (or
$STREAMT1_MODEL_DIR) in session.toml, and `continue` and `branch` use it when neither is given,
while --model-dir and the variable still override it.

The weights are tiny models written in the real diffusers file layout (tests/test_checkpoints.py),
loaded by the real loader through the CLI: the `longlive` preset is swapped for the tiny sizes with
`trained=True`, so every command goes through `load_longlive_models(--model-dir)` as a real run does,
in seconds on a CPU."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest
from diffusers import AutoencoderKLWan, WanTransformer3DModel
from transformers import UMT5Config, UMT5EncoderModel

from engine.models.factory import MODEL_DIR_ENV
from engine.models.presets import PRESETS
from sessions.store import SPEC_FILE, Session
from tests.test_checkpoints import PRESET, randomized, write_diffusers
from tests.test_sessions import assert_same_run, cli, one_line_error
from tests.wan_layout import word_tokenizer

PROMPT = "a cat walks on the moon"  # words of the tiny tokenizer's vocabulary
RUN = ("--preset", "longlive", "--no-scaling", "--device", "cpu")


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    """A model dir in the diffusers layout holding tiny random weights."""
    root = tmp_path_factory.mktemp("weights")
    write_diffusers(
        root,
        {
            "transformer": randomized(WanTransformer3DModel(**PRESET.transformer), 1),
            "vae": randomized(AutoencoderKLWan(**PRESET.vae), 2),
            "t5": randomized(UMT5EncoderModel(UMT5Config(**PRESET.text_encoder)), 3),
            "tokenizer": word_tokenizer(),
        },
    )
    return root


@pytest.fixture
def tiny_longlive(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """`--preset longlive` at the tiny sizes, no weights folder in the environment, and a working
    folder of its own (so a relative --model-dir means something); returns that folder."""
    monkeypatch.setitem(PRESETS, "longlive", dataclasses.replace(PRESET, name="longlive", trained=True))
    monkeypatch.delenv(MODEL_DIR_ENV, raising=False)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return work


def test_continue_and_branch_use_the_weights_folder_the_session_was_made_with(
    weights: Path, tiny_longlive: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    shutil.copytree(weights, tiny_longlive / "w")
    session = tmp_path / "s"
    cli("new", PROMPT, "--session", str(session), "--model-dir", "w", "--chunks", "1", *RUN)  # relative
    assert Session.open(session).spec.model_dir == str((tiny_longlive / "w").resolve())
    assert f'model_dir = "{(tiny_longlive / "w").resolve()}"' in (session / SPEC_FILE).read_text()

    monkeypatch.chdir(tmp_path)  # the relative path would now name nothing
    cli("continue", str(session), "--chunks", "1", "--device", "cpu")  # no --model-dir, no variable
    full = tmp_path / "full"
    cli("new", PROMPT, "--session", str(full), "--model-dir", str(weights), "--chunks", "2", *RUN)
    assert_same_run(full, session)  # bitwise, with the remembered weights
    assert Session.open(session).spec.model_dir == str((tiny_longlive / "w").resolve())

    child = tmp_path / "child"
    cli("branch", str(session), "--at", "1", "--to", str(child), "--chunks", "1", "--device", "cpu")
    assert Session.open(child).spec.model_dir == Session.open(session).spec.model_dir
    assert_same_run(full, child)

    # --model-dir and the variable override the remembered folder (here: one that does not exist).
    nowhere = tmp_path / "nowhere"
    assert f"model dir {nowhere} does not exist" in one_line_error(
        "continue", str(session), "--chunks", "1", "--model-dir", str(nowhere), "--device", "cpu"
    )
    monkeypatch.setenv(MODEL_DIR_ENV, str(nowhere))
    assert f"model dir {nowhere} does not exist" in one_line_error(
        "continue", str(session), "--chunks", "1", "--device", "cpu"
    )
    monkeypatch.delenv(MODEL_DIR_ENV)

    # A branch given another folder remembers that one; the parent keeps its own.
    other = tmp_path / "other"
    cli(
        "branch",
        str(session),
        "--at",
        "2",
        "--to",
        str(other),
        "--chunks",
        "1",
        "--model-dir",
        str(weights),
        "--device",
        "cpu",
    )
    assert Session.open(other).spec.model_dir == str(weights.resolve())
    assert_same_run(full, other, upto=2)

    # The remembered folder gone: one line saying where it was and how to give another.
    shutil.rmtree(tiny_longlive / "w")
    message = one_line_error("continue", str(session), "--chunks", "1", "--device", "cpu")
    assert f"made with the weights in {tiny_longlive / 'w'}" in message and "--model-dir" in message
    head = Session.open(session).head
    cli("continue", str(session), "--chunks", "1", "--device", "cpu", "--model-dir", str(weights))  # an override
    assert Session.open(session).head == head + 1
    # The override is for that run: session.toml still names the folder the session was made with.
    assert Session.open(session).spec.model_dir == str((tiny_longlive / "w").resolve())


def test_a_session_without_a_remembered_folder_needs_one_as_before(weights: Path, tiny_longlive: Path, tmp_path: Path):
    """Sessions made before the spec held model_dir (or with the key removed) behave as they did."""
    session = tmp_path / "s"
    cli("new", PROMPT, "--session", str(session), "--model-dir", str(weights), "--chunks", "1", *RUN)
    spec = session / SPEC_FILE
    spec.write_text("\n".join(line for line in spec.read_text().splitlines() if not line.startswith("model_dir =")))
    assert Session.open(session).spec.model_dir is None
    assert "needs downloaded weights: pass --model-dir DIR or set" in one_line_error(
        "continue", str(session), "--chunks", "1", "--device", "cpu"
    )
    cli("continue", str(session), "--chunks", "1", "--device", "cpu", "--model-dir", str(weights))


def test_the_tiny_preset_remembers_no_folder_unless_given_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv(MODEL_DIR_ENV, raising=False)
    cli("new", "a red fox", "--session", str(tmp_path / "s"), "--chunks", "1", "--no-scaling")
    assert Session.open(tmp_path / "s").spec.model_dir is None
    assert "model_dir" not in (tmp_path / "s" / SPEC_FILE).read_text()
