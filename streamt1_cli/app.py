"""`streamt1` command line: parses and validates, then hands off to the engine and the session
store; no generation logic here. One module per group of verbs. Importing it imports no model
stack (diffusers, transformers): the commands that generate import it when they run."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from typer.exceptions import TyperException

from engine.config import MODEL_DIR_ENV
from engine.errors import StreamT1Error
from streamt1_cli.batch import batch
from streamt1_cli.common import console, fail
from streamt1_cli.generate import branch, continue_, new
from streamt1_cli.inspect import export, list_, show
from streamt1_cli.report import report
from streamt1_cli.signals import exit_code, what_stopped

app = typer.Typer(
    help="Long streaming video generation (LongLive on Wan2.1) with Stream-T1 test-time scaling.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.command()(new)
app.command("continue")(continue_)
app.command()(branch)
app.command("list")(list_)
app.command()(show)
app.command()(export)
app.command()(report)
app.command()(batch)


class RewardsDownload(str, Enum):
    all = "all"
    none = "none"


class LayoutName(str, Enum):
    original = "original"
    diffusers = "diffusers"


@app.command()
def download(
    model_dir: Annotated[
        Path, typer.Option(envvar=MODEL_DIR_ENV, help="Folder to fill (then pass it as --model-dir).")
    ],
    layout: Annotated[
        LayoutName, typer.Option(help="Wan2.1 in its original layout or the diffusers one; both load.")
    ] = LayoutName.original,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print what would be fetched, fetch nothing.")] = False,
    rewards: Annotated[
        RewardsDownload,
        typer.Option(
            help="all: also HPSv3 + VideoReward and their Qwen2-VL processor files; none: skip them (--short-reward/--long-reward proxy then)."
        ),
    ] = RewardsDownload.all,
) -> None:
    """Fetch the real weights (Wan2.1-T2V-1.3B, LongLive base + LoRA, reward models) from the Hugging Face Hub."""
    from engine.model_files import download_models, download_plan

    with_rewards = rewards is RewardsDownload.all
    for item in download_plan(model_dir, layout.value, with_rewards):  # the plan is the output: stdout
        typer.echo(f"{item.repo_id}: {', '.join(item.files)} -> {item.local_dir}")
    if dry_run:
        return
    try:
        download_models(model_dir, layout.value, with_rewards)
    except StreamT1Error as err:
        fail(str(err))
    console.print(f"done: run `streamt1 new PROMPT --preset longlive --model-dir {model_dir} --session DIR`")


def main() -> None:
    try:
        code = app(prog_name="streamt1", standalone_mode=False)  # click's errors come back: one line, as ours
    except TyperException as err:  # a mistyped command, option or value (typer's own click errors)
        if type(err).__name__ != "NoArgsIsHelpError":  # a bare `streamt1`: the help was printed
            ctx = getattr(err, "ctx", None)
            where = ctx.command_path if ctx else "streamt1"
            console.print(
                f"[bold red]error:[/] {escape(err.format_message())} (see `{escape(where)} --help`)",
                highlight=False,
                soft_wrap=True,
            )
        raise SystemExit(err.exit_code) from None
    except KeyboardInterrupt as exc:  # before a session loop took over (start-up, model loading)
        console.print(f"[bold red]error:[/] {what_stopped(exc)} before any session was changed")
        raise SystemExit(exit_code(exc)) from None
    raise SystemExit(code)
