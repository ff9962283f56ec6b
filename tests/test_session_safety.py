"""Damaged, foreign or replaced sessions and bad export targets give one-line errors and change
nothing; the chunk log and prompt schedules stay consistent with what is committed."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import imageio.v3 as iio
import pytest
import torch

from engine.config import MODEL_DIR_ENV, CudaOptions
from sessions.records import read_chunk_log
from sessions.report.write import REPORT_FILE
from sessions.run import LOG_FILE
from sessions.spec import Compute
from sessions.store import HEAD_FILE, SPEC_FILE, STORE_DIR, Session
from tests.helpers import FOX, cli, copy_of, one_line_error, tree_digest


def data_file(session: Path, chunk: int, array: str) -> Path:
    return next(
        p
        for p in (session / STORE_DIR / "chunks" / str(chunk) / array).rglob("*")
        if p.is_file() and p.name != "zarr.json"
    )


def test_damaged_store_is_detected_and_left_alone(three: Path, tmp_path: Path):
    missing = copy_of(three, tmp_path / "missing")
    data_file(missing, 2, "latents").unlink()  # zarr alone would read the chunk back as zeros
    before = tree_digest(missing)
    assert "chunk 2 of" in one_line_error("continue", str(missing), "--chunks", "1")
    assert "latents does not match its digest" in one_line_error("export", str(missing), str(tmp_path / "m.mp4"))
    assert tree_digest(missing) == before

    truncated = copy_of(three, tmp_path / "truncated")
    frames = data_file(truncated, 1, "frames")
    frames.write_bytes(frames.read_bytes()[:100])
    assert "is damaged" in one_line_error("export", str(truncated), str(tmp_path / "t.mp4"))

    no_root = copy_of(three, tmp_path / "no_root")
    (no_root / STORE_DIR / "zarr.json").unlink()
    assert "is damaged" in one_line_error("show", str(no_root))

    ahead = copy_of(three, tmp_path / "ahead")
    (ahead / HEAD_FILE).write_text("9\n")
    assert "chunk 3 of" in one_line_error("continue", str(ahead), "--chunks", "1")
    (ahead / HEAD_FILE).write_text("-2\n")
    assert "is corrupt (head -2)" in one_line_error("continue", str(ahead), "--chunks", "1")


@pytest.mark.parametrize(
    "edit, needle",
    [
        (lambda t: t.replace('preset = "tiny"', 'preset = "huge"'), "preset 'huge'"),
        (lambda t: t.replace("chunk_frames = 3", "chunk_frames = 0"), "bad stream or scaling settings"),
        (lambda t: t.replace("seed = 42", 'seed = "x"'), "seed is not"),
        (lambda t: "\n".join(line for line in t.splitlines() if not line.startswith("format =")), "format is None"),
        (lambda t: "extra = 1\n" + t, "unknown keys ['extra']"),
    ],
)
def test_edited_or_foreign_spec_is_refused(three: Path, tmp_path: Path, edit, needle: str):
    session = copy_of(three, tmp_path / "s")
    spec = session / SPEC_FILE
    spec.write_text(edit(spec.read_text()))
    before = tree_digest(session)
    message = one_line_error("continue", str(session), "--chunks", "1")
    assert "corrupt or foreign" in message and needle in message
    assert "corrupt or foreign" in one_line_error("show", str(session))
    assert tree_digest(session) == before


def test_a_replaced_parent_is_refused(tmp_path: Path):
    parent, child = tmp_path / "parent", tmp_path / "child"
    cli("new", "a red fox", "--chunks", "2", "--session", str(parent))
    cli("branch", str(parent), "--at", "1", "--to", str(child), "--chunks", "1")
    shutil.rmtree(parent)
    cli("new", "something else entirely", "--chunks", "2", "--seed", "5", "--session", str(parent))
    assert "not the one this branch was made from" in one_line_error("show", str(child))
    assert "not the one this branch was made from" in one_line_error("export", str(child), str(tmp_path / "c.mp4"))


def test_branch_keeps_the_parents_schedule_unless_reprompted(tmp_path: Path):
    script = tmp_path / "s.toml"
    script.write_text(
        '[[prompt]]\nat_chunk = 0\nprompt = "a red fox"\n[[prompt]]\nat_chunk = 2\nprompt = "a blue bird"\n'
    )
    parent = tmp_path / "parent"
    cli("new", "--script", str(script), "--chunks", "1", "--session", str(parent))
    cli("branch", str(parent), "--at", "1", "--to", str(tmp_path / "reseed"), "--seed", "7", "--chunks", "1")
    assert Session.open(tmp_path / "reseed").spec.schedule == {0: "a red fox", 2: "a blue bird"}
    cli("branch", str(parent), "--at", "1", "--to", str(tmp_path / "re"), "--prompt", "a cat", "--chunks", "1")
    assert Session.open(tmp_path / "re").spec.schedule == {0: "a red fox", 1: "a cat"}


def test_export_targets_and_beams(three: Path, tmp_path: Path):
    before = tree_digest(three)
    full, part = tmp_path / "full", tmp_path / "part"
    cli("export", str(three), str(full))
    cli("export", str(three), str(part), "--upto", "2")
    full_frames, part_frames = sorted(full.iterdir()), sorted(part.iterdir())
    assert len(part_frames) == 9 + 12 and len(full_frames) == 9 + 12 + 12
    for a, b in zip(part_frames, full_frames):  # --upto cuts the final pick's video, it picks no other
        assert a.name == b.name and (iio.imread(a) == iio.imread(b)).all()

    assert "not an empty folder" in one_line_error("export", str(three), str(full), "--upto", "1")
    assert "inside the session folder" in one_line_error("export", str(three), str(three / "frames"))
    assert "does not exist" in one_line_error("export", str(three), str(tmp_path / "nowhere" / "v.mp4"))
    assert "--beam 5 is out of range" in one_line_error("export", str(three), str(tmp_path / "b.mp4"), "--beam", "5")
    assert "--beam -1 is out of range" in one_line_error("export", str(three), str(tmp_path / "b.mp4"), "--beam", "-1")
    assert tree_digest(three) == before


def test_chunk_log_holds_one_record_per_committed_chunk(tmp_path: Path):
    session = tmp_path / "s"
    cli("new", "a red fox", "--chunks", "2", "--session", str(session))
    log = session / "chunks.jsonl"
    records = read_chunk_log(log)
    assert [r["chunk"] for r in records] == [0, 1] and {r["prompt"] for r in records} == {"a red fox"}
    with log.open("a") as f:  # a line whose chunk never got committed (a kill right after logging)
        f.write(json.dumps({**records[-1], "chunk": 2}) + "\n")
    cli("continue", str(session), "--chunks", "1", "--prompt", "a blue bird")
    records = read_chunk_log(log)
    assert [r["chunk"] for r in records] == [0, 1, 2] and records[2]["prompt"] == "a blue bird"
    assert records[:2] == [Session.open(session).record(k) for k in range(2)]


def test_markup_in_prompts_and_failed_starts(tmp_path: Path):
    session = tmp_path / "s[red]"
    cli("new", "a fox [/] in snow", "--chunks", "1", "--session", str(session))
    shown = cli("show", str(session))
    assert "a fox [/] in snow" in shown and "s[red]" in shown
    assert "is not a folder" in one_line_error("list", str(tmp_path / "nowhere"))
    if not torch.cuda.is_available():
        assert "no CUDA GPU" in one_line_error("new", "x", "--session", str(tmp_path / "gpu"), "--device", "cuda")
        assert not (tmp_path / "gpu").exists()


def test_options_that_would_do_nothing_and_notes(tmp_path: Path):
    message = one_line_error("new", "x", "--session", str(tmp_path / "p"), "--no-scaling", "--beam-size", "3")
    assert "--beam-size would do nothing" in message and not (tmp_path / "p").exists()
    script = tmp_path / "s.toml"
    script.write_text(
        '[[prompt]]\nat_chunk = 0\nprompt = "a red fox"\n[[prompt]]\nat_chunk = 4\nprompt = "a blue bird"\n'
    )
    session = tmp_path / "s"
    assert "from chunk(s) [4] start after the 1 chunk(s)" in cli(
        "new", "--script", str(script), "--chunks", "1", "--session", str(session)
    )
    assert Session.open(session).spec.compute == Compute("cpu", "float32")
    assert "chunk 0 of" in (note := cli("continue", str(session), "--chunks", "1", "--dtype", "bfloat16"))
    assert "computed on cpu/float32; continuing on cpu/bfloat16" in note and "not bitwise" in note
    # each chunk records how it was computed, so going back to float32 after bfloat16 chunks is noted too
    assert "chunk 1 of" in (note := cli("continue", str(session), "--chunks", "1"))
    assert "computed on cpu/bfloat16; continuing on cpu/float32" in note
    assert "not bitwise" not in cli("continue", str(session), "--chunks", "1")
    opened = Session.open(session)
    assert [str(opened.computed_on(k)) for k in range(4)] == [
        "cpu/float32",
        "cpu/bfloat16",
        "cpu/float32",
        "cpu/float32",
    ]
    assert opened.spec.compute == Compute("cpu", "float32")  # what it was made on
    shown = " ".join(cli("show", str(session)).split())
    assert "computed on cpu/float32 (chunk 0), cpu/bfloat16 (chunk 1), cpu/float32 (chunks 2..3):" in shown
    assert read_chunk_log(session / LOG_FILE) == list(opened.records())
    report = (session / REPORT_FILE).read_text()
    assert "cpu/float32 (chunk 0), cpu/bfloat16 (chunk 1), cpu/float32 (chunks 2..3)" in report
    branch = tmp_path / "b"
    assert "chunk 1 of" in cli("branch", str(session), "--at", "2", "--to", str(branch), "--chunks", "1")


def test_a_weights_folder_the_session_does_not_read_is_noted_and_not_remembered(tmp_path: Path, monkeypatch):
    weights = tmp_path / "weights"
    weights.mkdir()
    named = cli("new", FOX, "--chunks", "1", "--session", str(tmp_path / "a"), "--model-dir", str(weights))
    named = " ".join(named.split())  # the console wraps long lines
    assert "note: --model-dir is not used: the tiny preset with the proxy scorers reads no weights" in named
    assert Session.open(tmp_path / "a").spec.model_dir is None
    branched = ("branch", str(tmp_path / "a"), "--at", "1", "--to", str(tmp_path / "c"), "--model-dir", str(weights))
    cli(*branched, "--chunks", "1")
    assert Session.open(tmp_path / "c").spec.model_dir is None
    monkeypatch.setenv(MODEL_DIR_ENV, str(weights))  # meant for every session: no note for one that needs none
    from_env = cli("new", FOX, "--chunks", "1", "--no-scaling", "--session", str(tmp_path / "b"))
    assert "--model-dir" not in from_env and Session.open(tmp_path / "b").spec.model_dir is None


def test_a_session_in_use_is_never_removed_and_parent_loops_are_errors(three: Path, tmp_path: Path):
    import typer

    from engine.config import StreamConfig
    from sessions.runner import spec_for
    from streamt1_cli.generate import run_session

    fresh = Session.create(tmp_path / "fresh", spec_for("tiny", 1, StreamConfig(), None, None, {0: "a fox"}))
    with Session.open(fresh.path).lock():  # another process's lock, as far as flock is concerned
        with pytest.raises(typer.Exit):
            run_session(
                fresh,
                1,
                None,
                torch.device("cpu"),
                torch.float32,
                True,
                CudaOptions(compile_blocks=False),
                created=True,
            )
    assert Session.open(fresh.path).head == 0

    child = tmp_path / "child"
    cli("branch", str(three), "--at", "1", "--to", str(child), "--chunks", "1")
    spec = child / SPEC_FILE
    edited = spec.read_text().replace(str(three.resolve()), str(child.resolve()))
    spec.write_text(re.sub(r'relative = ".*"', 'relative = "."', edited))  # both ways to the parent lead back
    assert "its own ancestor" in one_line_error("show", str(child))


def test_reprompting_drops_later_script_switches_and_bad_values_are_one_line(tmp_path: Path):
    script = tmp_path / "s.toml"
    script.write_text(
        '[[prompt]]\nat_chunk = 0\nprompt = "a red fox"\n[[prompt]]\nat_chunk = 3\nprompt = "a blue bird"\n'
    )
    session = tmp_path / "s"
    cli("new", "--script", str(script), "--chunks", "1", "--session", str(session))
    cli("continue", str(session), "--chunks", "1", "--prompt", "a cat")
    assert Session.open(session).spec.schedule == {0: "a red fox", 1: "a cat"}
    assert "--seed must be a whole number" in one_line_error(
        "new", "x", "--session", str(tmp_path / "n"), "--seed", "-1"
    )
    blocker = tmp_path / "afile"
    blocker.write_text("")
    assert f"{blocker} is a file, not a folder" in one_line_error("new", "x", "--session", str(blocker / "s"))
