"""`report`: a self-contained HTML page of one session, or of several side by side."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape

from engine.errors import StreamT1Error
from streamt1_cli.common import console, fail


def report(
    paths: Annotated[
        list[Path], typer.Argument(help="The session; several put their rewards and contact sheets side by side.")
    ],
    out: Annotated[
        Optional[Path],
        typer.Option("--out", "-o", help="HTML file to write (default: DIR/report.html; needed for several sessions)."),
    ] = None,
    thumbs: Annotated[int, typer.Option(help="Thumbnails per chunk on the contact sheet (1 to 12).")] = 1,
) -> None:
    """Write an HTML report: spec and lineage, reward curves, beam tree, sink timeline, contact sheet, timing."""
    from sessions.report import is_report, write_report  # matplotlib loads only for this command

    if not 1 <= thumbs <= 12:
        fail(f"--thumbs must be from 1 to 12, got {thumbs}")
    if out is None and len(paths) > 1:
        fail("several sessions make a comparison: give --out FILE.html for it")
    if out is not None and not out.resolve().parent.is_dir():
        fail(f"{out.parent} does not exist: create it first, or write the report elsewhere")
    if out is not None and out.is_dir():
        fail(f"{out} is a folder: give a file name such as {out / 'report.html'}")
    if out is not None and out.is_file() and not is_report(out):
        fail(f"{out} exists and is not a streamt1 report: choose another --out (a report never replaces other files)")
    try:
        written = write_report(paths, out, thumbs)
    except StreamT1Error as err:
        fail(str(err))
    except OSError as err:
        fail(f"cannot write the report ({err.strerror or err}): choose a writable --out")
    console.print(f"wrote {escape(str(written))}")
