"""`streamt1` end to end on the tiny preset, and its one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import imageio.v3 as iio
import pytest
import torch

from streamt1_cli.app import app, main
from tests.helpers import one_line_error, runner


def test_new_tiny_writes_video(tmp_path: Path):
    session = tmp_path / "fox"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "streamt1_cli",
            "new",
            "a red fox",
            "--preset",
            "tiny",
            "--chunks",
            "3",
            "--session",
            str(session),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "UNTRAINED" in proc.stderr
    video = iio.imread(session / "video.mp4")
    assert video.shape == (9 + 12 + 12, 64, 64, 3)


def test_errors_are_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("STREAMT1_MODEL_DIR", raising=False)
    s = str(tmp_path / "s")
    assert "--chunks must be >= 1" in one_line_error("new", "x", "--session", s, "--chunks", "0")
    assert "either --seconds or --chunks" in one_line_error(
        "new", "x", "--session", s, "--chunks", "2", "--seconds", "3"
    )
    assert "--seconds must be" in one_line_error("new", "x", "--session", s, "--seconds", "-1")
    assert "(a day; `streamt1 continue` goes on)" in one_line_error("new", "x", "--session", s, "--seconds", "1e6")
    assert "prompt is empty" in one_line_error("new", "  ", "--session", s)
    msg = one_line_error("new", "x", "--session", s, "--preset", "longlive")
    assert "--model-dir" in msg and "streamt1 download" in msg
    assert "does not exist" in one_line_error(
        "new", "x", "--session", s, "--preset", "longlive", "--model-dir", str(tmp_path / "nowhere")
    )
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "keep.txt").write_text("mine")
    msg = one_line_error("new", "x", "--session", str(occupied), "--chunks", "1")
    assert "is already a folder with other files" in msg and "continue" not in msg
    assert (occupied / "keep.txt").read_text() == "mine"
    afile = occupied / "keep.txt"
    assert "is already a file: choose a new session path" in one_line_error("new", "x", "--session", str(afile))
    assert f"{afile} is a file, not a folder" in one_line_error("new", "x", "--session", str(afile / "s"))
    assert "is a file: give the folder" in one_line_error(
        "new", "x", "--session", s, "--preset", "longlive", "--model-dir", str(afile)
    )
    assert (occupied / "keep.txt").read_text() == "mine"
    if not torch.cuda.is_available():
        assert "no CUDA GPU" in one_line_error("new", "x", "--session", s, "--device", "cuda")


def test_download_dry_run_prints_plan(tmp_path: Path):
    result = runner.invoke(app, ["download", "--model-dir", str(tmp_path / "w"), "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "Wan-AI/Wan2.1-T2V-1.3B" in result.stdout  # `> plan.txt` keeps it
    assert "Wan-AI/Wan2.1-T2V-1.3B" in result.output and "Efficient-Large-Model/LongLive" in result.output
    for repo in ("MizzenAI/HPSv3", "Qwen/Qwen2-VL-7B-Instruct", "KlingTeam/VideoReward", "Qwen/Qwen2-VL-2B-Instruct"):
        assert repo in result.output
    assert not (tmp_path / "w").exists()
    bare = runner.invoke(app, ["download", "--model-dir", str(tmp_path / "w"), "--dry-run", "--rewards", "none"])
    assert bare.exit_code == 0 and "HPSv3" not in bare.output


def test_every_command_has_help():
    for args in (["--help"], ["new", "--help"], ["download", "--help"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 0 and "Usage" in result.output


def test_new_with_scaling_shows_live_view_and_writes_records(tmp_path: Path):
    from sessions.records import read_chunk_log

    session = tmp_path / "fox"
    result = runner.invoke(app, ["new", "a red fox", "--chunks", "5", "--session", str(session)])
    assert result.exit_code == 0, result.output
    assert "candidates" in result.output and "surviving beams" in result.output and "proxy" in result.output
    chunks = read_chunk_log(session / "chunks.jsonl")
    final = json.loads((session / "final.json").read_text())
    assert [r["chunk"] for r in chunks] == [0, 1, 2, 3, 4]
    for r in chunks:
        assert len(r["candidates"]) == 4 and sum(c["kept"] for c in r["candidates"]) == 2
        assert {"seed", "parent", "short", "long", "fused", "kept", "flag"} <= set(r["candidates"][0])
        assert {"denoise", "decode", "short_reward", "long_reward", "cache_write"} <= set(r["seconds"])
    assert final["head"] == 5 and final["beam"] in (0, 1)
    assert iio.imread(session / "video.mp4").shape[0] == 9 + 4 * 12

    quiet = runner.invoke(app, ["new", "a red fox", "--chunks", "2", "--session", str(tmp_path / "q"), "--quiet"])
    assert quiet.exit_code == 0
    assert "candidates" not in quiet.output and "┃" not in quiet.output
    assert len(read_chunk_log(tmp_path / "q" / "chunks.jsonl")) == 2


def test_scaling_switch_errors(tmp_path: Path):
    s = str(tmp_path / "s")
    assert "--noise-sigma" in one_line_error("new", "x", "--session", s, "--noise-sigma", "1.5")
    assert "--top-k" in one_line_error("new", "x", "--session", s, "--top-k", "0")
    assert "3, 6, 9, 12, 15, ... (got 14)" in one_line_error("new", "x", "--session", s, "--max-sink", "14")
    assert "unknown short-term reward 'clip'" in one_line_error("new", "x", "--session", s, "--short-reward", "clip")
    assert "hpsv3 reward needs downloaded weights" in one_line_error(
        "new", "x", "--session", s, "--short-reward", "hpsv3"
    )
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize(
    "argv, said",
    [
        (["new", "x", "--preset", "huge"], "'huge' is not one of 'tiny', 'longlive'. (see `streamt1 new --help`)"),
        (["branch", "a", "--at", "abc", "--to", "b"], "Invalid value for '--at'"),
        (["nosuch"], "No such command 'nosuch'. (see `streamt1 --help`)"),
        (["new", "x"], "Missing option '--session'"),
    ],
)
def test_mistyped_commands_and_values_are_one_line(monkeypatch, capsys, argv: list[str], said: str):
    monkeypatch.setattr(sys, "argv", ["streamt1", *argv])
    with pytest.raises(SystemExit) as stop:
        main()
    err = capsys.readouterr().err
    assert stop.value.code == 2 and err.startswith("error: ") and said in err and err.count("\n") == 1, err


def test_help_and_success_exit_zero(monkeypatch, capsys, tmp_path: Path):
    for argv in (["new", "--help"], ["list", str(tmp_path)]):
        monkeypatch.setattr(sys, "argv", ["streamt1", *argv])
        with pytest.raises(SystemExit) as stop:
            main()
        assert stop.value.code in (0, None), capsys.readouterr()
    assert "no sessions under" in capsys.readouterr().err  # an empty folder: a line, not an empty table


def test_ctrl_c_during_startup_is_one_line(tmp_path: Path):
    import signal

    # The child says "ready" when our entry point starts importing torch, so the signal lands
    # inside launch.main's slow imports on any machine, however loaded, never before it.
    child = (
        "import sys, streamt1_cli.launch as launch\n"
        "class Ready:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'torch':\n"
        "            sys.meta_path.remove(self)\n"
        "            print('ready', flush=True)\n"
        "sys.meta_path.insert(0, Ready())\n"
        "sys.argv = ['streamt1', 'new', 'x', '--session', sys.argv[1]]\n"
        "launch.main()\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", child, str(tmp_path / "s")], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert proc.stdout.readline().strip() == b"ready"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert b"Traceback" not in err and b"interrupted" in err
    assert not (tmp_path / "s").exists()


def test_stream_t1_options_come_from_scaling_config():
    """`new`'s Stream-T1 options take their defaults and help from ScalingConfig, and the README's
    row of defaults says the same values."""
    import re
    from dataclasses import fields

    import typer.main

    from engine.scaling.config import ScalingConfig

    params = {p.name: p for p in typer.main.get_command(app).commands["new"].params}
    defaults = ScalingConfig()
    shown = [f for f in fields(ScalingConfig) if "help" in f.metadata]
    assert {f.name for f in fields(ScalingConfig)} - {f.name for f in shown} == {"ema_alpha"}
    for f in shown:
        param = params[f.metadata.get("option", f.name)]
        assert param.help == f.metadata["help"] and param.rich_help_panel == "Stream-T1"
        assert param.default == (None if f.name == "horizon_frames" else getattr(defaults, f.name)), f.name
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    row = next(line for line in readme.splitlines() if "--beam-size" in line)
    values = {name.replace("-", "_"): float(value) for name, value in re.findall(r"--([a-z-]+) (-?[\d.]+)", row)}
    assert values == {
        f.metadata.get("option", f.name): getattr(defaults, f.name)
        for f in shown
        if f.name not in ("horizon_frames", "reward_inputs")
    }


def test_a_broken_video_writer_stops_a_run_before_it_generates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from sessions.store import Session

    session = tmp_path / "s"
    assert (
        runner.invoke(
            app, ["new", "a red fox", "--chunks", "1", "--no-scaling", "--quiet", "--session", str(session)]
        ).exit_code
        == 0
    )
    monkeypatch.setenv("IMAGEIO_FFMPEG_EXE", str(tmp_path / "no-ffmpeg"))  # imageio-ffmpeg runs what this names
    for args in (
        ["new", "a red fox", "--chunks", "1", "--session", str(tmp_path / "n")],
        ["continue", str(session), "--chunks", "1"],
    ):
        line = one_line_error(*args)
        assert "no video writer" in line and "pip install imageio-ffmpeg" in line and "no-ffmpeg" in line
    assert not (tmp_path / "n").exists()  # the new session was removed, holding nothing
    assert Session.open(session).head == 1  # the existing one lost no chunk
    monkeypatch.setattr("sessions.video.imageio_ffmpeg", None)  # not installed at all
    line = one_line_error("continue", str(session), "--chunks", "1")
    assert "imageio-ffmpeg is not installed" in line and "pip install imageio-ffmpeg" in line
    assert Session.open(session).head == 1


def test_seconds_and_chunks_convert_in_one_place():
    from engine.config import StreamConfig

    c = StreamConfig()
    assert [c.chunks_for_seconds(s) for s in (0.01, 5, 30, 3600)] == [1, 7, 40, 4800]
    assert c.chunks_for_seconds(5, first=False) == 7 and c.first_frame(7) == 81 and c.seconds_of(7) == 81 / 16
    assert c.seconds_of(3, first=False) == 36 / 16
    for k in range(5):
        assert c.chunk_at_frame(c.first_frame(k)) == k and c.chunk_at_frame(c.first_frame(k + 1) - 1) == k
    assert c.chunk_at_seconds(0.5) == 0 and c.chunk_at_seconds(1.0) == 1  # frame 8 is chunk 0's last, 16 chunk 1's


def test_fp8_is_refused_in_one_line_where_it_cannot_run(tmp_path):
    """Without an FP8-capable GPU, `--fp8` says what it needs, and the new session is not left behind."""
    s = tmp_path / "fp8"
    line = one_line_error("new", "x", "--session", str(s), "--chunks", "1", "--quiet", "--device", "cpu", "--fp8")
    assert "--fp8 needs a CUDA GPU with FP8 tensor cores" in line
    assert not s.exists()
