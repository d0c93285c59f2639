"""`cogent exceptions list|show|resolve`: failures nothing could fix, by owner and class."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.markup import escape

from cogent_cli.cli.common import FormatOption, OutputFormat, new_typer, print_json, stderr, stdout, workspace_from
from cogent_cli.cli.sync import check_source, parse_since

app = new_typer("Sync exceptions: what could not be delivered, who owns it, and why.")


@app.command("list")
def list_command(
    ctx: typer.Context,
    owner: Annotated[str | None, typer.Option("--owner", help="Only this team's (see [owners]).")] = None,
    exception_class: Annotated[str | None, typer.Option("--class", help="Only this class, e.g. unknown_sku.")] = None,
    source: Annotated[str | None, typer.Option("--source", help="Only this source system's.")] = None,
    since: Annotated[str | None, typer.Option("--since", help="Raised since this date (YYYY-MM-DD).")] = None,
    status: Annotated[str, typer.Option("--status", help="open, replayed, resolved, or all.")] = "open",
    fmt: FormatOption = OutputFormat.table,
) -> None:
    """List exceptions (open ones unless --status says otherwise).

    Example: cogent exceptions list --owner ops --class unmapped_ship_method
    """
    from cogent_cli.sync.exceptions import list_exceptions

    check_source(source)
    with workspace_from(ctx).store() as store:
        records = list_exceptions(
            store,
            owner=owner,
            exception_class=exception_class,
            source=source,
            since=parse_since(since),
            status=None if status == "all" else status,
        )
    if fmt == "json":
        print_json([r.to_json() for r in records])
        return
    console = stdout()
    console.print(f"{'id':>5}  {'class':<22} {'owner':<10} {'source':<12} {'status':<9} {'raised':<20} error")
    for r in records:
        error = (r.last_error or "").splitlines()[0][:90] if r.last_error else ""
        console.print(
            f"{r.id:>5}  {r.exception_class:<22} {r.owner:<10} {r.system or '-':<12} {r.status:<9} {r.created_at[:19]:<20} {escape(error)}"
        )
    stderr().print(f"{len(records)} exception(s).")


@app.command()
def show(
    ctx: typer.Context,
    exception_id: Annotated[int, typer.Argument(help="Exception id.")],
    fmt: FormatOption = OutputFormat.table,
) -> None:
    """Show one exception: class, owner, pointer, last error, details and the payload.

    Example: cogent exceptions show 7
    """
    from cogent_cli.sync.exceptions import get_exception

    with workspace_from(ctx).store() as store:
        record = get_exception(store, exception_id)
    if fmt == "json":
        print_json(record.to_json())
        return
    console = stdout()
    for key, value in record.to_json().items():
        if key in ("payload", "details"):
            continue
        console.print(f"{key + ':':<13}{escape(str(value))}")
    console.print("details:")
    console.print(escape(json.dumps(record.details, indent=2, default=str)))
    console.print("payload:")
    console.print(escape(json.dumps(record.payload, indent=2, default=str)))


@app.command()
def resolve(
    ctx: typer.Context,
    exception_id: Annotated[int, typer.Argument(help="Exception id.")],
    note: Annotated[str, typer.Option("--note", help="What was done about it (kept with the exception).")],
) -> None:
    """Close an exception that was dealt with elsewhere; its operation is not re-sent.

    Example: cogent exceptions resolve 7 --note "merged the two profiles in Klaviyo"
    """
    from cogent_cli.sync.exceptions import resolve_exception

    with workspace_from(ctx).store() as store:
        record = resolve_exception(store, exception_id, note)
    stderr().print(f"Exception {record.id} resolved.")
