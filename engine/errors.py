"""User-facing errors: one line that says what is wrong and what to do."""


class StreamT1Error(Exception):
    """An error the CLI prints as one red line (no traceback)."""


class WeightsError(StreamT1Error):
    """Missing, truncated or foreign checkpoint files."""
