"""`cogent status`: the integration's health on one screen."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer
from rich.markup import escape
from rich.table import Table

from cogent_cli.cli.common import FormatOption, OutputFormat, print_json, stderr, stdout, workspace_from
from cogent_cli.errors import ExitStatus

if TYPE_CHECKING:
    from cogent_cli.health import Health


def _age(minutes: float | None) -> str:
    if minutes is None:
        return "-"
    if minutes < 120:
        return f"{minutes:.0f} min"
    return f"{minutes / 60:.1f} h" if minutes < 48 * 60 else f"{minutes / 1440:.1f} d"


def _render(health: Health) -> None:
    console = stdout()
    sources = Table("source", "last pull", "last file", "last webhook", "lag", "quarantined", title="Sources")
    for s in health.sources:
        sources.add_row(
            s.system,
            *(s.last_received[route] or "-" for route in ("pull", "file", "webhook")),
            _age(s.lag_minutes),
            str(s.quarantined),
        )
    console.print(sources)
    lanes = Table("lane", "waiting", "oldest waiting", title="Outbox")
    for lane in health.lanes:
        lanes.add_row(lane.lane, str(lane.depth), _age(lane.oldest_age_minutes))
    console.print(lanes)
    exceptions = Table("class", "owner", "open", "oldest", title="Open exceptions")
    for group in health.exceptions:
        exceptions.add_row(group.exception_class, group.owner, str(group.open), group.oldest_created_at or "-")
    console.print(exceptions if health.exceptions else "Open exceptions: none")
    runs = Table("run", "started", "finished", "status", "exit", "sent", title="Last sync runs")
    for run in health.runs:
        runs.add_row(
            str(run["id"]),
            run["started_at"] or "-",
            run["finished_at"] or "-",
            run["status"] or "-",
            str(run["exit_status"]),
            str(run["sent"] or 0),
        )
    console.print(runs if health.runs else "Sync runs: none yet")
    for schedule in health.schedules:
        console.print(f"next: {schedule['name']} at {schedule['next_run']} ({' '.join(schedule['command'])})")
    budget = health.rate_budget
    busiest = f" (busiest: {budget['busiest_operation']})" if budget["busiest_operation"] else ""
    console.print(
        f"Klaviyo rate budget, last hour: {budget['share_used']:.0%} used, "
        f"{budget['requests_last_hour']} request(s){busiest}"
    )


def status(
    ctx: typer.Context,
    fmt: FormatOption = OutputFormat.table,
) -> None:
    """Sources, outbox lanes, open exceptions, recent runs, schedules and rate budget; exits 5 on a breach.

    Thresholds come from [status] in cogent.toml.

    Example: cogent status --format json | jq .breaches
    """
    from cogent_cli.health import collect_health

    workspace = workspace_from(ctx)
    with workspace.store() as store:
        health = collect_health(store, workspace.config)
    show_status(health, fmt)
    if health.breaches:
        raise typer.Exit(int(ExitStatus.THRESHOLD))


def show_status(health: Health, fmt: str = "table") -> None:
    """The status screen (or its JSON) on stdout, each breach on stderr."""
    if fmt == "json":
        print_json(health.to_json())
    else:
        _render(health)
    console = stderr()
    for breach in health.breaches:
        console.print(f"[red]breach[/] ({breach.owner}) {escape(breach.summary)} -> {breach.detail_command}")


def register(app: typer.Typer) -> None:
    app.command()(status)
