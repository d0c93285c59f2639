"""The `cogent` command line: a thin shell over the library.

Errors from the library are turned into messages and exit statuses here, and only here.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from typer.core import TyperGroup

from cogent_cli import __version__
from cogent_cli.cli import (
    audit,
    auth,
    config,
    db,
    demo,
    exceptions,
    inbox,
    ingest,
    listen,
    merge,
    playbook,
    pull,
    report,
    runs,
    sandbox,
    schedule,
    status,
    sync,
    workspace,
)
from cogent_cli.cli.common import CONTEXT_SETTINGS, GlobalOptions, stderr
from cogent_cli.errors import CogentError, ExitStatus
from cogent_cli.logs import LogFormat, json_line, log_format, redact, setup_logging


class CogentGroup(TyperGroup):
    """The root group: translates library errors into a message, a hint and an exit status."""

    def invoke(self, ctx: typer.Context):  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except CogentError as exc:
            if log_format() == "json":
                fields = {"hint": exc.hint, "problems": getattr(exc, "problems", None), "exit_status": exc.exit_status}
                sys.stderr.write(json_line("error", "cogent", exc.message, fields=fields) + "\n")
            else:
                stderr().print(f"[bold red]Error:[/] {escape(redact(str(exc)))}", soft_wrap=True)
            raise typer.Exit(int(exc.exit_status)) from None
        except KeyboardInterrupt:
            stderr().print("Interrupted.")
            raise typer.Exit(int(ExitStatus.INTERRUPTED)) from None


app = typer.Typer(
    cls=CogentGroup,
    name="cogent",
    help="Keep Klaviyo in step with what the warehouse, returns platform and marketplace actually did.\n\n"
    "Example: cogent init acme && cd acme && cogent doctor",
    no_args_is_help=True,
    context_settings=CONTEXT_SETTINGS,
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"cogent {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    workspace_path: Annotated[
        Path | None,
        typer.Option(
            "--workspace",
            "-w",
            help="Workspace folder (default: $COGENT_WORKSPACE, else the nearest folder upwards holding cogent.toml).",
        ),
    ] = None,
    verbose: Annotated[
        int, typer.Option("--verbose", "-v", count=True, help="More detail on stderr (-vv for HTTP).")
    ] = 0,
    log_format: Annotated[
        str, typer.Option("--log-format", help="text, or json for one JSON object per line (cron).")
    ] = "text",
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version and exit.")
    ] = False,
) -> None:
    """Keep Klaviyo in step with what the warehouse, returns platform and marketplace actually did."""
    if log_format not in ("text", "json"):
        raise typer.BadParameter("use text or json", param_hint="--log-format")
    fmt: LogFormat = "json" if log_format == "json" else "text"
    setup_logging(verbose, fmt)
    ctx.obj = GlobalOptions(workspace=workspace_path, verbose=verbose)


workspace.register(app)
app.add_typer(config.app, name="config")
app.add_typer(db.app, name="db")
app.add_typer(auth.app, name="auth")
app.command("pull")(pull.pull)
app.command("ingest")(ingest.ingest)
app.add_typer(inbox.app, name="inbox")
sync.register(app)
app.add_typer(runs.app, name="runs")
app.add_typer(exceptions.app, name="exceptions")
app.add_typer(schedule.app, name="schedule")
app.command("demo")(demo.demo)
status.register(app)
report.register(app)
app.add_typer(playbook.app, name="playbook")
app.add_typer(sandbox.app, name="sandbox")
app.command("audit")(audit.audit)
app.add_typer(merge.app, name="merge")
app.command("listen")(listen.listen)


def main() -> None:
    app()
