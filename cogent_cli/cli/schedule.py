"""`cogent schedule add|list|remove|run-due|crontab`."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape

from cogent_cli.cli.common import (
    FormatOption,
    OutputFormat,
    alert,
    new_typer,
    print_json,
    stderr,
    stdout,
    workspace_from,
)
from cogent_cli.errors import ExitStatus

app = new_typer("Run cogent commands on a schedule from one crontab line.")


@app.command(context_settings={"allow_interspersed_args": False})
def add(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Schedule name.")],
    cron: Annotated[str, typer.Argument(help='Cron expression, e.g. "*/5 * * * *".')],
    command: Annotated[list[str], typer.Argument(help="The cogent command after --.")],
) -> None:
    """Add a schedule that runs a cogent command.

    Example: cogent schedule add despatches "*/5 * * * *" -- sync --source peoplevox
    """
    from cogent_cli.sync import schedule as schedules

    with workspace_from(ctx).store() as store:
        info = schedules.add_schedule(store, name, cron, command)
    stderr().print(f"Added {info.name}: cogent {' '.join(info.command)}; next run {info.next_run.isoformat()}")


@app.command("list")
def list_command(ctx: typer.Context, fmt: FormatOption = OutputFormat.table) -> None:
    """List schedules with their next run time and last outcome.

    Example: cogent schedule list
    """
    from cogent_cli.sync import schedule as schedules

    with workspace_from(ctx).store() as store:
        found = schedules.list_schedules(store)
    if fmt == "json":
        print_json([s.__dict__ for s in found])
        return
    console = stdout()
    for s in found:
        last = s.last_run or {}
        console.print(
            f"{s.name:<20} {s.cron:<16} next {s.next_run.isoformat():<26} "
            f"last {last.get('outcome', 'never')!s:<16} cogent {escape(' '.join(s.command))}"
        )
    if not found:
        stderr().print('No schedules; add one with cogent schedule add NAME "CRON" -- COMMAND')


@app.command()
def remove(ctx: typer.Context, name: Annotated[str, typer.Argument(help="Schedule name.")]) -> None:
    """Remove a schedule.

    Example: cogent schedule remove despatches
    """
    from cogent_cli.sync import schedule as schedules

    with workspace_from(ctx).store() as store:
        schedules.remove_schedule(store, name)
    stderr().print(f"Removed {name}.")


@app.command("run-due")
def run_due(ctx: typer.Context) -> None:
    """Run every schedule that is due (meant for a crontab line every minute); records each outcome.

    Afterwards, threshold breaches (see `cogent status`) are alerted to their owners, once per incident.

    Example: cogent schedule run-due
    """
    from cogent_cli.sync import schedule as schedules

    workspace = workspace_from(ctx)
    with workspace.store() as store:
        outcomes = schedules.run_due(store, workspace.root)
    for outcome in outcomes:
        stderr().print(f"{outcome.name} (due {outcome.due_at}): {outcome.outcome}")
    alert(workspace)
    if any(o.exit_status not in (0, ExitStatus.LOCKED) for o in outcomes):
        raise typer.Exit(int(ExitStatus.ERROR))


@app.command()
def crontab(ctx: typer.Context) -> None:
    """Print the crontab line that runs due schedules every minute.

    Example: cogent schedule crontab | (crontab -l; cat) | crontab -
    """
    from cogent_cli.sync import schedule as schedules

    typer.echo(schedules.crontab_line(workspace_from(ctx).root))
