"""`cogent runs list|show`: the history of sync and replay runs."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.markup import escape

from cogent_cli.cli.common import FormatOption, OutputFormat, new_typer, print_json, stdout, workspace_from
from cogent_cli.errors import UsageError

app = new_typer("History of sync runs: when, what was sent, what failed, how each ended.")


@app.command("list")
def list_runs(
    ctx: typer.Context,
    last: Annotated[int, typer.Option("--last", min=1, help="How many of the latest runs.")] = 20,
    fmt: FormatOption = OutputFormat.table,
) -> None:
    """List recent runs, newest first.

    Example: cogent runs list --last 5
    """
    with workspace_from(ctx).store() as store:
        rows = list(store.db.query("select * from sync_runs order by id desc limit ?", [last]))
    for row in rows:
        row["counts"] = json.loads(row["counts"] or "{}")
    if fmt == "json":
        print_json(rows)
        return
    console = stdout()
    console.print(
        f"{'id':>5}  {'started':<26} {'status':<11} {'exit':>4} {'sent':>7} {'failed':>6} {'waiting':>7}  command"
    )
    for row in rows:
        c = row["counts"]
        console.print(
            f"{row['id']:>5}  {row['started_at'][:26]:<26} {row['status']:<11} {row['exit_status'] or 0:>4} "
            f"{c.get('sent', 0):>7} {c.get('failed', 0):>6} {c.get('waiting', 0):>7}  {escape(row['command'] or '')}"
        )


@app.command()
def show(
    ctx: typer.Context,
    run_id: Annotated[int, typer.Argument(help="Run id from `cogent runs list`.")],
    fmt: FormatOption = OutputFormat.table,
) -> None:
    """Show one run: times, exit status, counts by metric and by exception class.

    Example: cogent runs show 12
    """
    with workspace_from(ctx).store() as store:
        rows = list(store.db.query("select * from sync_runs where id = ?", [run_id]))
    if not rows:
        raise UsageError(f"No run with id {run_id}", hint="`cogent runs list` shows the recent ones.")
    row = rows[0]
    row["counts"] = json.loads(row["counts"] or "{}")
    if fmt == "json":
        print_json(row)
        return
    console = stdout()
    for key in ("id", "command", "pid", "started_at", "finished_at", "status", "exit_status", "error"):
        console.print(f"{key + ':':<14}{escape(str(row[key]))}")
    for key, value in row["counts"].items():
        if isinstance(value, dict):
            console.print(f"{key}:")
            for name, n in value.items():
                console.print(f"    {n:>7}  {escape(str(name))}")
        elif key not in ("run_id", "status", "exit_status", "started_at", "finished_at", "error"):
            console.print(f"{key + ':':<28}{value}")
