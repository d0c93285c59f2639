"""`cogent inbox list|show|retry|normalise`: the raw payloads every route stored, and their fate."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from cogent_cli.cli.common import FormatOption, OutputFormat, new_typer, print_json, stderr, stdout, workspace_from

if TYPE_CHECKING:
    from cogent_cli.inbox import InboxRow, NormaliseSummary

app = new_typer("Raw source payloads: list, show, retry after a mapping fix.")


def _row_json(row: InboxRow, with_body: bool) -> dict[str, object]:
    data: dict[str, object] = {
        "id": row.id,
        "system": row.system,
        "route": row.route,
        "kind": row.kind,
        "idempotency_key": row.idempotency_key,
        "received_at": row.received_at,
        "status": row.status,
        "reason": row.reason,
        "attempts": row.attempts,
        "normalised_at": row.normalised_at,
    }
    if with_body:
        data["headers"] = row.headers
        data["body"] = row.body
    return data


@app.command("list")
def list_rows(
    ctx: typer.Context,
    status: Annotated[str | None, typer.Option("--status", "-s", help="pending, normalised or quarantined.")] = None,
    system: Annotated[str | None, typer.Option("--system", help="Only this source system.")] = None,
    kind: Annotated[str | None, typer.Option("--kind", help="Only this kind of payload.")] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", help="At most this many rows (0: all).")] = 100,
    fmt: FormatOption = OutputFormat.table,
) -> None:
    """List inbox rows, oldest first, with the reason of each quarantined one.

    Example: cogent inbox list --status quarantined --system peoplevox
    """
    from cogent_cli.inbox import STATUSES, Inbox

    if status is not None and status not in STATUSES:
        raise typer.BadParameter(f"use one of {', '.join(STATUSES)}", param_hint="--status")
    with workspace_from(ctx).store() as store:
        rows = Inbox(store).list(status=status, system=system, kind=kind, limit=limit or None)
    if fmt == "json":
        print_json([_row_json(row, with_body=False) for row in rows])
        return
    if not rows:
        stderr().print("No inbox rows match.")
        return
    table = Table("id", "system", "route", "kind", "status", "tries", "received", "reason", box=None)
    for row in rows:
        style = "red" if row.status == "quarantined" else ("yellow" if row.status == "pending" else "")
        table.add_row(
            str(row.id),
            row.system,
            row.route,
            row.kind,
            f"[{style}]{row.status}[/]" if style else row.status,
            str(row.attempts),
            row.received_at[:19],
            escape(row.reason or ""),
        )
    stdout().print(table)


@app.command()
def show(
    ctx: typer.Context,
    row_id: Annotated[int, typer.Argument(metavar="ID", help="Inbox row id (see `cogent inbox list`).")],
    fmt: FormatOption = OutputFormat.table,
) -> None:
    """Show one inbox row: where it came from, its raw payload, and why it was quarantined.

    Example: cogent inbox show 42
    """
    from cogent_cli.inbox import Inbox

    with workspace_from(ctx).store() as store:
        row = Inbox(store).get(row_id)
    if fmt == "json":
        print_json(_row_json(row, with_body=True))
        return
    out = stdout()
    for label, value in (
        ("id", row.id),
        ("system", row.system),
        ("route", row.route),
        ("kind", row.kind),
        ("key", row.idempotency_key),
        ("received", row.received_at),
        ("status", row.status),
        ("attempts", row.attempts),
        ("normalised", row.normalised_at or "-"),
    ):
        out.print(f"{label:<11}{escape(str(value))}")
    if row.reason:
        out.print(f"{'reason':<11}[red]{escape(row.reason)}[/]")
    if row.headers:
        out.print(f"{'headers':<11}{escape(json.dumps(row.headers))}")
    out.print("body:")
    try:
        body = json.dumps(json.loads(row.body), indent=2, ensure_ascii=False)
    except ValueError:
        body = row.body
    out.print(escape(body), soft_wrap=True)


def report(summary: NormaliseSummary) -> None:
    stderr().print(
        f"Normalised {summary.normalised} row(s), quarantined {summary.quarantined}; "
        f"{summary.events_written} new event(s), {summary.events_duplicate} already stored."
    )


@app.command()
def retry(
    ctx: typer.Context,
    ids: Annotated[list[int] | None, typer.Argument(metavar="[IDS]...", help="Inbox row ids to re-normalise.")] = None,
    all_rows: Annotated[bool, typer.Option("--all", help="Every quarantined row.")] = False,
) -> None:
    """Re-normalise rows, typically quarantined ones after fixing a mapping in cogent.toml.

    Rows that still fail stay quarantined with their new reason (exit status 1).

    Example: cogent inbox retry --all
    """
    from cogent_cli.inbox import Inbox

    if not ids and not all_rows:
        raise typer.BadParameter("name inbox ids, or pass --all for every quarantined row")
    workspace = workspace_from(ctx)
    with workspace.store() as store:
        inbox = Inbox(store)
        chosen = inbox.retry(ids or None, all_quarantined=all_rows)
        summary = inbox.normalise_pending(workspace.config, ids=chosen)
        still = [inbox.get(i) for i in summary.quarantined_ids]
    report(summary)
    for row in still:
        stderr().print(f"  {row.id} {row.system}/{row.kind}: {escape(row.reason or '')}")
    if still:
        raise typer.Exit(1)


@app.command()
def normalise(ctx: typer.Context) -> None:
    """Normalise every pending row (what webhooks and pulls stored) into events.

    Example: cogent inbox normalise
    """
    from cogent_cli.inbox import Inbox

    workspace = workspace_from(ctx)
    with workspace.store() as store:
        summary = Inbox(store).normalise_pending(workspace.config)
    report(summary)
