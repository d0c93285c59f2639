"""`cogent playbook list|show|run|export`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table

from cogent_cli.cli.common import new_typer, stderr, stdout, workspace_from
from cogent_cli.errors import ExitStatus

if TYPE_CHECKING:
    from cogent_cli.playbooks import StepResult

app = new_typer("Runbooks for handover and day-to-day operation.")

NameArg = Annotated[str, typer.Argument(help="Playbook name (see `cogent playbook list`).")]


@app.command("list")
def list_(ctx: typer.Context) -> None:
    """List the built-in playbooks and this workspace's own.

    Example: cogent playbook list
    """
    from cogent_cli.playbooks import load_playbooks

    table = Table("name", "title", "audience", "when")
    for playbook in load_playbooks(workspace_from(ctx).root).values():
        table.add_row(playbook.name, playbook.title, ", ".join(playbook.audience), playbook.when)
    stdout().print(table)


@app.command()
def show(ctx: typer.Context, name: NameArg) -> None:
    """Show a playbook's steps, owners, commands and checks.

    Example: cogent playbook show failed-despatch-triage
    """
    from cogent_cli.playbooks import get_playbook

    playbook = get_playbook(workspace_from(ctx).root, name)
    console = stdout()
    console.print(f"[bold]{escape(playbook.title)}[/]  ({', '.join(playbook.audience)})\nWhen: {escape(playbook.when)}")
    for index, step in enumerate(playbook.steps, start=1):
        console.print(f"\n[bold]{index}. {escape(step.title)}[/]  [dim]owner: {step.owner}[/]\n{escape(step.explain)}")
        if step.command:
            console.print(f"  $ cogent {escape(step.command)}")
        for check in step.checks:
            console.print(f"  check: {escape(check.describe)} (if not: {escape(check.on_fail)})")


def _render_result(result: StepResult) -> None:
    console = stderr()
    if result.command is not None:
        console.print(f"  exit status {result.command.exit_status}")
        if not result.step.checks and result.command.stdout.strip():
            console.print(escape(result.command.stdout.rstrip()))
        if result.command.exit_status != 0 and result.command.stderr.strip():
            console.print(f"[dim]{escape(result.command.stderr.rstrip())}[/]")
    for check in result.checks:
        mark = "[green]pass[/]" if check.passed else "[red]FAIL[/]"
        console.print(f"  {mark} {escape(check.check.describe)}: {escape(check.detail)}")
        if not check.passed:
            console.print(f"       what to do: {escape(check.check.on_fail)}")


@app.command()
def run(
    ctx: typer.Context,
    name: NameArg,
    non_interactive: Annotated[
        bool, typer.Option("--non-interactive", help="Run every step without asking (for cron).")
    ] = False,
) -> None:
    """Walk through a playbook: each step's command runs, its checks are evaluated, and the run is recorded.

    Interactive by default (run, skip or quit each step, and add notes); --non-interactive runs every
    step and exits with status 3 when a check fails.

    Example: cogent playbook run daily-sync-health --non-interactive
    """
    from cogent_cli.playbooks import PlaybookSession, get_playbook, run_non_interactive

    workspace = workspace_from(ctx)
    playbook = get_playbook(workspace.root, name)
    console = stderr()
    with workspace.store() as store:
        if non_interactive:
            session = run_non_interactive(workspace, store, playbook)
            for result in session.results:
                console.print(f"[bold]{result.index + 1}. {escape(result.step.title)}[/]: {result.outcome}")
                _render_result(result)
        else:
            session = PlaybookSession(workspace, store, playbook, mode="interactive")
            console.print(Panel(f"{escape(playbook.title)}\nWhen: {escape(playbook.when)}", expand=False))
            for index, step in enumerate(playbook.steps):
                command = f"\n$ cogent {escape(step.command)}" if step.command else ""
                console.print(
                    f"\n[bold]{index + 1}/{len(playbook.steps)} {escape(step.title)}[/]  [dim]owner: {step.owner}[/]"
                    f"\n{escape(step.explain)}{command}"
                )
                choice = typer.prompt("[r]un, [s]kip or [q]uit", default="r").strip().lower()[:1]
                if choice == "q":
                    session.finish("abandoned")
                    raise typer.Exit(int(ExitStatus.ERROR))
                if choice == "s":
                    session.skip(index, typer.prompt("Why skip? (optional)", default="", show_default=False) or None)
                    continue
                result = session.run(index)
                _render_result(result)
                note = typer.prompt("Note (optional, enter to continue)", default="", show_default=False)
                if note:
                    session.annotate(result, note)
        outcome = session.finish()
    console.print(f"Playbook {playbook.name}: {outcome} ({len(session.failed)} step(s) failed).")
    if session.failed:
        raise typer.Exit(int(ExitStatus.FINDINGS))


@app.command()
def export(
    ctx: typer.Context,
    name: NameArg,
    fmt: Annotated[str, typer.Option("--format", help="Only md is supported.")] = "md",
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write to this file.")] = None,
) -> None:
    """Write a playbook as a handover document with this workspace's real figures.

    Example: cogent playbook export handover --format md --output handover.md
    """
    from cogent_cli.playbooks import export_markdown, get_playbook

    if fmt != "md":
        raise typer.BadParameter("only md is supported", param_hint="--format")
    workspace = workspace_from(ctx)
    document = export_markdown(workspace, get_playbook(workspace.root, name))
    if output:
        output.write_text(document, encoding="utf-8")
        stderr().print(f"Wrote {output}")
    else:
        typer.echo(document)
