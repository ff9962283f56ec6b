"""Commands that need no model never import the model stack: `--help`, `list`, `show`, `export`
and `report` run in a fresh interpreter, which must end with no diffusers or transformers module
loaded (they cost 10+ s of start-up; torch comes with the session store)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from streamt1_cli.app import app

COMMANDS = """
import json, sys
from typer.testing import CliRunner
from streamt1_cli.app import app

root, session, out = sys.argv[1:4]
runner = CliRunner()
runs = [["--help"], ["list", root], ["show", session], ["show", session, "--json"],
        ["export", session, out + "/video.mp4"], ["export", session, out + "/frames"],
        ["report", session, "--out", out + "/report.html"]]
failed = [(args, r.output) for args in runs if (r := runner.invoke(app, args)).exit_code != 0]
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("diffusers", "transformers"))
print(json.dumps({"failed": failed, "heavy": heavy}))
"""


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("imports") / "sessions" / "s"
    result = CliRunner().invoke(
        app, ["new", "a red fox", "--chunks", "2", "--no-scaling", "--quiet", "--session", str(path)]
    )
    assert result.exit_code == 0, result.output
    return path


def test_commands_without_a_model_import_no_model_stack(tiny: Path, tmp_path: Path):
    proc = subprocess.run(
        [sys.executable, "-c", COMMANDS, str(tiny.parent), str(tiny), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.splitlines()[-1])
    assert result["failed"] == []
    assert result["heavy"] == [], f"imported {len(result['heavy'])} model-stack modules, e.g. {result['heavy'][:5]}"
    assert (tmp_path / "video.mp4").is_file() and len(list((tmp_path / "frames").iterdir())) == 9 + 12
    assert (tmp_path / "report.html").is_file()


def test_the_cli_module_itself_imports_no_model_stack():
    """Also `streamt1 new --help`: the generation commands load the model stack only when they run."""
    code = (
        "import sys\nfrom typer.testing import CliRunner\nfrom streamt1_cli.app import app\n"
        "assert CliRunner().invoke(app, ['new', '--help']).exit_code == 0\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('diffusers', 'transformers')))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "[]"
