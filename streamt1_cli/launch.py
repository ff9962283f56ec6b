"""Entry point: imports the CLI lazily so that Ctrl-C during the slow start-up (torch, diffusers)
is one line, not a traceback."""

from __future__ import annotations

import sys


def main() -> None:
    # One handler around both the imports and the run: no moment between them where an interrupt
    # escapes as a traceback (the app's own handler covers a run that already touched a session).
    try:
        from streamt1_cli.app import main as run_cli

        run_cli()
    except KeyboardInterrupt:
        print("error: interrupted while starting; nothing was changed", file=sys.stderr)
        raise SystemExit(130) from None
