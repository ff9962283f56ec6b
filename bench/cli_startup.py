"""Start-up time of the `streamt1` commands that need no model: wall time of whole processes,
median of N rounds, for one or more source trees run alternately (so that all see the same load).

    python bench/cli_startup.py --session DIR [--rounds 5] before=/tmp/base after=.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("trees", nargs="+", help="NAME=PATH: a source tree to put on PYTHONPATH")
    parser.add_argument("--session", type=Path, required=True, help="a session to list, show and export")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    trees = dict(t.split("=", 1) for t in args.trees)
    session = args.session.resolve()
    out = Path(tempfile.mkdtemp(prefix="streamt1-startup-")) / "x.mp4"
    commands = {
        "--help": ["--help"],
        "list": ["list", str(session.parent)],
        "show": ["show", str(session)],
        "export": ["export", str(session), str(out), "--force"],
    }
    times: dict[tuple[str, str], list[float]] = {(t, c): [] for t in trees for c in commands}
    for _ in range(args.rounds):
        for name, command in commands.items():
            for tree, path in trees.items():
                env = dict(os.environ, PYTHONPATH=str(Path(path).resolve()))
                start = time.perf_counter()
                subprocess.run(
                    [sys.executable, "-m", "streamt1_cli", *command],
                    env=env,
                    cwd=out.parent,
                    check=True,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                times[tree, name].append(time.perf_counter() - start)
    print("| command | " + " | ".join(f"{t} (s)" for t in trees) + " |")
    print("| --- |" + " ---: |" * len(trees))
    for name in commands:
        print(f"| `streamt1 {name}` | " + " | ".join(f"{statistics.median(times[t, name]):.1f}" for t in trees) + " |")


if __name__ == "__main__":
    main()
