"""The one error type of sessions (the CLI prints it as one line)."""

from __future__ import annotations

from engine.errors import StreamT1Error


class SessionError(StreamT1Error):
    """A foreign, corrupt, busy or inconsistent session."""
