"""Overnight sessions on the tiny preset (its rotary table holds 48 latent frames, 16 chunks): one
chunk loop, positions past the table, flat memory, state snapshots, the video that grows."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import imageio.v3 as iio
import pytest
import torch

import engine.stream
from engine.config import StreamConfig
from engine.models.presets import TINY
from engine.positions import PositionMode, rotary_layout
from engine.rewards.proxies import SharpnessProxy, TemporalConsistencyProxy
from engine.scaling.config import ScalingConfig
from engine.stream import ChunkLoop
from sessions.growing_video import LIVE_FILE
from sessions.runner import open_loop, resume
from sessions.snapshots import snapshot_heads
from sessions.store import HEAD_FILE, STORE_DIR, Session
from streamt1_cli.app import app
from tests.helpers import assert_same_run, cli, runner

TABLE_CHUNKS = TINY.transformer["rope_max_seq_len"] // StreamConfig().chunk_frames


@pytest.fixture
def models(tiny_models):
    return tiny_models


def test_plain_and_stream_t1_run_the_same_loop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    modes = []
    step = ChunkLoop.step
    monkeypatch.setattr(ChunkLoop, "step", lambda self: modes.append(self.scaling is None) or step(self))
    cli("new", "a red fox", "--chunks", "2", "--no-scaling", "--session", str(tmp_path / "plain"))
    cli("new", "a red fox", "--chunks", "2", "--session", str(tmp_path / "scaled"))
    assert modes == [True, True, False, False]
    assert importlib.util.find_spec("engine.scaling.search") is None
    assert not hasattr(engine.stream, "StreamGenerator")


def test_rebased_attention_is_absolute_attention_shifted(models):
    loop = ChunkLoop(models, StreamConfig(), None, None, 5, {0: "a red fox"})
    for _ in range(6):
        loop.step()
    model, cache, start = models.transformer, loop.beams[0].cache, loop.config.start_frame(loop.chunk)
    text = loop.prompts.get("a red fox")
    x, t = torch.randn(1, 16, 3, 8, 8, generator=torch.Generator().manual_seed(0)), torch.tensor([937.5])
    rebased = rotary_layout(PositionMode.REBASED, cache, start, 3, model.table_frames)
    absolute = rotary_layout(PositionMode.ABSOLUTE, cache, start, 3, model.table_frames)
    assert rebased.segments == (0, 3, 6) and rebased.chunk == 9  # sink, window, chunk back to back
    assert absolute.segments == (0, 12, 15) and absolute.chunk == 18

    def attend(segments, chunk):
        return model.forward_chunk(x, t, start, text, model.build_prefix(cache, 4, 4, segments), position=chunk)[0]

    base = attend(rebased.segments, rebased.chunk)
    for shift in (5, 30):  # RoPE sees only differences of positions
        moved = attend(tuple(p + shift for p in rebased.segments), rebased.chunk + shift)
        torch.testing.assert_close(moved, base, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(attend(absolute.segments, absolute.chunk), base, atol=1e-4)  # the sink moved


def test_auto_goes_past_the_table_absolute_stops_in_one_line(tmp_path: Path):
    auto, absolute = tmp_path / "auto", tmp_path / "absolute"
    cli("new", "a red fox", "--no-scaling", "--chunks", str(TABLE_CHUNKS + 2), "--session", str(auto))
    assert Session.open(auto).head == TABLE_CHUNKS + 2
    result = runner.invoke(
        app,
        [
            "new",
            "a red fox",
            "--no-scaling",
            "--positions",
            "absolute",
            "--quiet",
            "--chunks",
            str(TABLE_CHUNKS + 1),
            "--session",
            str(absolute),
        ],
    )
    lines = [line for line in result.output.splitlines() if line.strip() and "UNTRAINED" not in line]
    assert result.exit_code == 2 and len(lines) == 1, result.output
    assert "past the rotary table" in lines[0] and "--positions auto" in lines[0]
    assert Session.open(absolute).head == TABLE_CHUNKS  # every chunk that fits was kept
    assert_same_run(auto, absolute, upto=TABLE_CHUNKS)  # below the table auto is absolute, bit for bit
    # the fix the error names: branch at the head with --positions auto, exact for the chunks made
    fixed = tmp_path / "fixed"
    cli("branch", str(absolute), "--at", str(TABLE_CHUNKS), "--to", str(fixed), "--positions", "auto", "--chunks", "2")
    assert_same_run(auto, fixed)


def test_loop_state_stops_growing(models):
    """W = 3 chunks (reward window; attention window 2 + sink). The sink cap is the initial sink, so
    the sink cannot grow: its growth is bounded by --max-sink but when it fills depends on rewards."""
    scaling = ScalingConfig(window_chunks=3, max_sink_frames=3)
    loop = ChunkLoop(
        models, StreamConfig(), scaling, (SharpnessProxy(), TemporalConsistencyProxy()), 3, {0: "a red fox"}
    )

    for _ in range(2 * 3):
        loop.step()
    at_2w = loop.state().held_bytes()
    for _ in range(4 * 3):
        loop.step()
    assert loop.chunk > TABLE_CHUNKS  # crossed into rebased positions on the way
    assert loop.state().held_bytes() == at_2w


def test_resume_from_snapshot_equals_replay_equals_unbroken(tmp_path: Path):
    unbroken, snap, replayed = tmp_path / "unbroken", tmp_path / "snap", tmp_path / "replayed"
    cli("new", "a red fox", "--chunks", "6", "--session", str(unbroken))
    for path in (snap, replayed):  # the same fusion horizon as the 6-chunk run (18 latent frames)
        cli("new", "a red fox", "--chunks", "3", "--horizon", "18", "--session", str(path), "--snapshot-every", "2")
    assert snapshot_heads(Session.open(snap)) == [3, 2]  # every 2 chunks and at the stop
    shutil.rmtree(replayed / STORE_DIR / "snapshots")
    for path in (snap, replayed):
        cli("continue", str(path), "--chunks", "3")
        assert_same_run(unbroken, path)


def test_continue_replays_at_most_m_chunks(tmp_path: Path, models):
    path = tmp_path / "long"
    spec_args = ["--no-scaling", "--snapshot-every", "8", "--session", str(path)]
    for head in (20, 200):
        if head == 20:
            cli("new", "a red fox", "--chunks", "20", *spec_args)
        else:
            cli("continue", str(path), "--chunks", str(head - 20))
        session = Session.open(path)
        heads = snapshot_heads(session)
        assert session.head == head and heads[0] == head and len(heads) == 2
        shutil.rmtree(path / STORE_DIR / "snapshots" / str(head))  # as after a kill: no snapshot at the stop
        loop = open_loop(session.spec, models, None)
        resumed = resume(loop, session)
        assert resumed.snapshot == heads[1] and resumed.replayed == head - heads[1] <= session.spec.snapshot_every
        assert loop.chunk == head


def test_damaged_snapshots_fall_back_in_one_line(tmp_path: Path):
    unbroken, path = tmp_path / "unbroken", tmp_path / "s"
    cli("new", "a red fox", "--chunks", "6", "--session", str(unbroken))
    cli("new", "a red fox", "--chunks", "4", "--horizon", "18", "--session", str(path), "--snapshot-every", "2")
    snapshot = path / STORE_DIR / "snapshots" / "4"
    noise = next(p for p in (snapshot / "b0.noise").rglob("*") if p.is_file() and p.name != "zarr.json")
    noise.write_bytes(noise.read_bytes()[:-4] + b"\0\0\0\0")
    out = cli("continue", str(path), "--chunks", "2")
    notes = [line for line in out.splitlines() if "snapshot 4" in line]
    assert len(notes) == 1 and "damaged" in notes[0] and "falling back" in notes[0], out
    assert_same_run(unbroken, path)


def test_kills_inside_snapshot_writes_leave_an_exact_session(tmp_path: Path):
    unbroken = tmp_path / "unbroken"
    cli("new", "a red fox", "--no-scaling", "--chunks", "8", "--session", str(unbroken))
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    landed = 0
    for trial in range(5):
        path = tmp_path / f"t{trial}"
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "streamt1_cli",
                "new",
                "a red fox",
                "--no-scaling",
                "--quiet",
                "--chunks",
                "8",
                "--snapshot-every",
                "1",
                "--session",
                str(path),
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        snapshots = path / STORE_DIR / "snapshots"
        seen: set[str] = set()
        deadline = time.time() + 120
        while proc.poll() is None and time.time() < deadline:
            if snapshots.is_dir():
                seen |= {p.name for p in snapshots.iterdir() if p.name.startswith(".writing-")}
                if len(seen) > trial and any(p.name.startswith(".writing-") for p in snapshots.iterdir()):
                    proc.kill()  # inside the (trial + 1)-th snapshot write
                    landed += 1
                    break
            time.sleep(0.002)
        proc.wait(timeout=60)
        session = Session.open(path)
        cli("continue", str(path), "--chunks", str(8 - session.head))
        assert_same_run(unbroken, path)
        assert not any(p.name.startswith(".writing-") for p in snapshots.iterdir())
    assert landed >= 2  # kills hit snapshots being written (each trial checks exactness either way)


def test_live_video_grows_and_survives_a_kill(tmp_path: Path):
    path = tmp_path / "live"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streamt1_cli",
            "new",
            "a red fox",
            "--no-scaling",
            "--quiet",
            "--chunks",
            "60",
            "--session",
            str(path),
        ],
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.time() + 180
        while time.time() < deadline and not ((path / HEAD_FILE).exists() and int((path / HEAD_FILE).read_text()) >= 4):
            time.sleep(0.05)
        during = iio.imread(path / LIVE_FILE)
        assert during.shape[0] >= 9 + 12 * 2  # every chunk settles at once without scaling
        export = runner.invoke(app, ["export", str(path), str(tmp_path / "during.mp4")])
        assert export.exit_code == 0, export.output  # no lock taken: the run goes on
        assert proc.poll() is None
        assert iio.imread(tmp_path / "during.mp4").shape[0] >= 9 + 12 * 3
    finally:
        proc.kill()
        proc.wait(timeout=60)
    head = Session.open(path).head
    counts = []
    deadline = time.time() + 60
    while time.time() < deadline and (len(counts) < 2 or counts[-1] != counts[-2]):
        time.sleep(0.5)  # the encoder drains its pipe and closes the file after its parent died
        try:
            counts.append(iio.imread(path / LIVE_FILE).shape[0])
        except Exception:  # still being finalized
            continue
    assert counts[-1] in (9 + 12 * (head - 1), 9 + 12 * head)  # every settled chunk (maybe one being committed)
    assert not (path / "video.mp4").exists()


def test_branch_starts_from_the_parents_nearest_snapshot(tmp_path: Path, models):
    parent, child = tmp_path / "parent", tmp_path / "child"
    cli("new", "a red fox", "--no-scaling", "--chunks", "6", "--snapshot-every", "2", "--session", str(parent))
    cli("branch", str(parent), "--at", "5", "--to", str(child), "--chunks", "1")
    assert_same_run(parent, child)
    session = Session.open(child)
    resumed = resume(open_loop(session.spec, models, None), session, upto=5)
    assert (resumed.snapshot, resumed.replayed) == (4, 1)  # the parent's snapshot 4, then chunk 4 replayed
