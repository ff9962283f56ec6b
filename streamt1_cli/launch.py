"""Entry point: imports the CLI lazily so that Ctrl-C (or SIGTERM, SIGHUP) during the slow start-up
(torch, diffusers) is one line, not a traceback."""

from __future__ import annotations

import sys

from streamt1_cli.signals import exit_code, stop_on_signals, what_stopped


def main() -> None:
    # One handler around both the imports and the run: no moment between them where an interrupt
    # escapes as a traceback (the app's own handler covers a run that already touched a session).
    stop_on_signals()
    try:
        from streamt1_cli.app import main as run_cli

        run_cli()
    except KeyboardInterrupt as exc:
        print(f"error: {what_stopped(exc)} while starting; nothing was changed", file=sys.stderr)
        raise SystemExit(exit_code(exc)) from None


if __name__ == "__main__":
    main()
