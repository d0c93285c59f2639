"""What every command module shares: consoles, the workspace from global options, output helpers.

Command modules import the library inside their command functions: `cogent --help` and `cogent
status` then load only what they use, which keeps start-up (and every cron tick) short.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperGroup

from cogent_cli.logs import JsonLinesWriter, log_format, redact

if TYPE_CHECKING:
    from typer._click.formatting import HelpFormatter  # typer ships its own click

    from cogent_cli.audits import AuditResult
    from cogent_cli.workspace import Workspace

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"]}


class OutputFormat(StrEnum):
    table = "table"
    json = "json"


# One spelling for machine-readable output across commands: --format json.
FormatOption = Annotated[
    OutputFormat, typer.Option("--format", "-f", help="table for people, json for scripts and monitoring.")
]
EXAMPLE = re.compile(r"^[ \t]*Example:[ \t]*(.+?)[ \t]*$", re.MULTILINE)


@dataclass
class GlobalOptions:
    workspace: Path | None = None
    verbose: int = 0


def stdout() -> Console:
    # Lines are never wrapped: piped output must stay one record per line.
    return Console(soft_wrap=True, highlight=False)


def stderr() -> Console:
    """Progress and diagnostics; with `--log-format json` each line becomes one JSON object."""
    if log_format() == "json":
        return Console(file=JsonLinesWriter(), soft_wrap=True, highlight=False)
    return Console(stderr=True, soft_wrap=True, highlight=False)


def workspace_from(ctx: typer.Context) -> Workspace:
    from cogent_cli.workspace import find_workspace

    options: GlobalOptions = ctx.find_root().obj or GlobalOptions()
    return find_workspace(options.workspace)


def alert(workspace: Workspace, audits: Sequence[AuditResult] = ()) -> None:
    """Tell the owning teams about incidents opened by this command's outcome (once per incident).

    Alerting never fails the command: a delivery that did not arrive is a warning, retried next run.
    """
    from cogent_cli.alerts import alert_after_run

    try:
        with workspace.store() as store:
            deliveries = alert_after_run(store, workspace.config, audits)
    except Exception as exc:  # the command's own work is done; alerting must not change its exit status
        stderr().print(f"[yellow]Warning:[/] alerts were not evaluated: {escape(redact(str(exc)))}")
        return
    for delivery in deliveries:
        if delivery.ok:
            stderr().print(f"Alerted {escape(delivery.owner)} by {delivery.channel}: {escape(delivery.key)}")


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str, ensure_ascii=False) + "\n")


def examples(help_text: str | None) -> list[str]:
    """The `Example:` lines of a command's help, without the prefix."""
    return EXAMPLE.findall(help_text or "")


def group_examples(group: TyperGroup, ctx: typer.Context) -> list[str]:
    """The first example of each visible command in a group, in the order `--help` lists them."""
    found = []
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        if command is not None and not command.hidden and (own := examples(command.help)):
            found.append(own[0])
    return found


class CommandGroup(TyperGroup):
    """A command group whose `--help` also shows an example of each of its commands."""

    def format_help_text(self, ctx: typer.Context, formatter: HelpFormatter) -> None:
        super().format_help_text(ctx, formatter)
        if found := group_examples(self, ctx):
            with formatter.section("Examples"):
                for line in found:
                    formatter.write(f"{'':>{formatter.current_indent}}{line}\n")


def new_typer(help_text: str) -> typer.Typer:
    return typer.Typer(cls=CommandGroup, help=help_text, no_args_is_help=True, context_settings=CONTEXT_SETTINGS)
