"""Plain helpers the test modules share (fixtures live in conftest.py): driving the CLI in process,
its one-line errors, and comparing sessions bit for bit."""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Iterator
from pathlib import Path

import torch
from typer.testing import CliRunner

from sessions.store import Session
from streamt1_cli.app import app

FOX = "a red fox"
runner = CliRunner()


def cli(*args: str) -> str:
    """Run the CLI in this process; it must succeed. Generating commands run with --quiet."""
    result = runner.invoke(app, [*args, "--quiet"] if args[0] in ("new", "continue", "branch") else list(args))
    assert result.exit_code == 0, result.output
    return result.output


def one_line(code: int, output: str) -> str:
    """The one `error:` line of a command refused with exit status 2."""
    lines = [line for line in output.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error:"), output
    assert "Traceback" not in output, output
    return lines[0]


def one_line_error(*args: str) -> str:
    """Run the CLI in this process; it must refuse in one `error:` line (exit status 2)."""
    result = runner.invoke(app, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    return one_line(result.exit_code, result.output)


def stored(path: Path) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Every committed chunk's latents and frames."""
    chunks = list(Session.open(path).chunks())
    return [c.latents for c in chunks], [c.frames for c in chunks]


def assert_same_run(a: Path, b: Path, upto: int | None = None) -> None:
    """Chunks 0..upto-1 (default: all of `a`'s) of both sessions are bitwise equal."""
    (la, fa), (lb, fb) = stored(a), stored(b)
    n = upto or len(la)
    assert len(la) >= n and len(lb) >= n, (len(la), len(lb), n)
    for k in range(n):
        assert torch.equal(la[k], lb[k]), f"latents differ at chunk {k}"
        assert torch.equal(fa[k], fb[k]), f"frames differ at chunk {k}"


def png_bytes(folder: Path) -> list[bytes]:
    return [p.read_bytes() for p in sorted(folder.glob("*.png"))]


def tree_digest(path: Path) -> dict[str, str]:
    """SHA-256 of every file under `path`, by relative path: equal digests, untouched folder."""
    return {
        str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(path.rglob("*"))
        if p.is_file()
    }


def copy_of(src: Path, dst: Path) -> Path:
    """A private copy of a (shared) session for a test that changes it."""
    shutil.copytree(src, dst)
    return dst


def unchanged(path: Path) -> Iterator[Path]:
    """For a fixture that lends a shared session to one test: yields it, then checks that the test
    changed none of its files."""
    before = tree_digest(path)
    yield path
    assert tree_digest(path) == before, f"the test changed the shared session {path}: work on a copy_of it"
