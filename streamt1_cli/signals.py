"""SIGTERM (timeout, docker stop, batch schedulers) and SIGHUP (a closed terminal) stop a run the
way Ctrl-C does: raised as a KeyboardInterrupt in the main thread, so the same handlers keep every
whole chunk, write the one queued for the disk and print how to resume. The exit status is the
shell's 128 + signal number: 130 for SIGINT, 143 for SIGTERM, 129 for SIGHUP. No heavy imports:
the entry point installs this before it loads torch."""

from __future__ import annotations

import signal
from types import FrameType


class Stopped(KeyboardInterrupt):
    """A stop signal other than SIGINT."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _stop(signum: int, frame: FrameType | None) -> None:
    raise Stopped(signum)


def stop_on_signals() -> None:
    """An ignored signal stays ignored: `nohup streamt1 ...` must outlive the terminal."""
    for signum in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(signum) is not signal.SIG_IGN:
            signal.signal(signum, _stop)


def exit_code(exc: KeyboardInterrupt) -> int:
    return 128 + (exc.signum if isinstance(exc, Stopped) else signal.SIGINT)


def what_stopped(exc: KeyboardInterrupt) -> str:
    return f"stopped by {exc.args[0]}" if isinstance(exc, Stopped) else "interrupted"
