"""`streamt1` end to end on the tiny preset, and its one-line errors."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import imageio.v3 as iio
import pytest
import torch
from typer.testing import CliRunner

from streamt1_cli.app import app

runner = CliRunner()


def test_new_tiny_writes_video(tmp_path: Path):
    session = tmp_path / "fox"
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "streamt1_cli", "new", "a red fox", "--preset", "tiny", "--chunks", "3",
         "--session", str(session)],
        capture_output=True, text=True, timeout=120,
    )
    took = time.perf_counter() - start
    assert proc.returncode == 0, proc.stderr
    assert "UNTRAINED" in proc.stderr
    video = iio.imread(session / "video.mp4")
    assert video.shape == (9 + 12 + 12, 64, 64, 3)
    assert took < 60


def one_line_error(args: list[str]) -> str:
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert lines[0].startswith("error:")
    return lines[0]


def test_errors_are_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("STREAMT1_MODEL_DIR", raising=False)
    s = str(tmp_path / "s")
    assert "--chunks must be >= 1" in one_line_error(["new", "x", "--session", s, "--chunks", "0"])
    assert "either --seconds or --chunks" in one_line_error(["new", "x", "--session", s, "--chunks", "2", "--seconds", "3"])
    assert "--seconds must be" in one_line_error(["new", "x", "--session", s, "--seconds", "-1"])
    assert "prompt is empty" in one_line_error(["new", "  ", "--session", s])
    msg = one_line_error(["new", "x", "--session", s, "--preset", "longlive"])
    assert "--model-dir" in msg and "streamt1 download" in msg
    assert "does not exist" in one_line_error(["new", "x", "--session", s, "--preset", "longlive",
                                               "--model-dir", str(tmp_path / "nowhere")])
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "keep.txt").write_text("mine")
    assert "already exists" in one_line_error(["new", "x", "--session", str(occupied), "--chunks", "1"])
    assert (occupied / "keep.txt").read_text() == "mine"
    if not torch.cuda.is_available():
        assert "no CUDA GPU" in one_line_error(["new", "x", "--session", s, "--device", "cuda"])


def test_download_dry_run_prints_plan(tmp_path: Path):
    result = runner.invoke(app, ["download", "--model-dir", str(tmp_path / "w"), "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "Wan-AI/Wan2.1-T2V-1.3B" in result.output and "Efficient-Large-Model/LongLive" in result.output
    assert not (tmp_path / "w").exists()


def test_every_command_has_help():
    for args in (["--help"], ["new", "--help"], ["download", "--help"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 0 and "Usage" in result.output
