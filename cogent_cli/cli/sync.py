"""`cogent sync` and `cogent replay`: deliver the outbox to Klaviyo, with progress and a summary."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape

from cogent_cli.cli.common import FormatOption, OutputFormat, alert, print_json, stderr, stdout, workspace_from
from cogent_cli.errors import ExitStatus, UsageError

if TYPE_CHECKING:
    from cogent_cli.sync.engine import LaneProgress, ProgressCallback, RunSummary


def parse_since(value: str | None, option: str = "--since") -> datetime | None:
    """A date (2026-01-31, midnight UTC) or an ISO 8601 time; naive times are taken as UTC."""
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(
            f"{option} {value!r} is not a date", hint=f"Use YYYY-MM-DD or an ISO time, e.g. {option} 2026-01-31"
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def check_source(source: str | None) -> None:
    from cogent_cli.config import SOURCE_SYSTEMS

    if source is not None and source not in SOURCE_SYSTEMS:
        raise UsageError(f"Unknown source {source!r}", hint=f"Use one of: {', '.join(SOURCE_SYSTEMS)}.")


@contextmanager
def lane_progress() -> Iterator[ProgressCallback]:
    """Bars per lane on a terminal; otherwise a plain line per lane at most every few seconds."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    console = stderr()
    if console.is_terminal:
        bars = Progress(
            TextColumn("{task.description:<14}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[failed]} failed"),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        )
        tasks: dict[str, Any] = {}

        def on_bar(update: LaneProgress) -> None:
            if update.lane not in tasks:
                tasks[update.lane] = bars.add_task(update.lane, total=update.total, failed=0)
            bars.update(
                tasks[update.lane], completed=update.done, total=max(update.total, update.done), failed=update.failed
            )

        with bars:
            yield on_bar
        return
    last: dict[str, float] = {}

    def on_line(update: LaneProgress) -> None:
        now = time.monotonic()
        finished = update.done >= update.total
        if finished or now - last.get(update.lane, 0) >= 5:
            last[update.lane] = now
            sys.stderr.write(f"sync lane={update.lane} done={update.done}/{update.total} failed={update.failed}\n")

    yield on_line


def print_summary(summary: RunSummary, as_json: bool) -> None:
    data = summary.to_json()
    if as_json:
        print_json(data)
        return
    console = stdout()
    console.print(
        f"Run {data['run_id']} {data['status']}: sent {data['sent']}, deduplicated {data['deduplicated']}, "
        f"failed {data['failed']}, waiting {data['waiting']} (held {data['held']})"
    )
    for metric, n in sorted(data["sent_by_metric"].items()):
        console.print(f"  sent    {n:>7}  {escape(metric)}")
    for klass, n in sorted(data["failed_by_class"].items()):
        console.print(f"  failed  {n:>7}  {klass}  (cogent exceptions list --class {klass})")
    if data["mapping_exceptions"]:
        console.print(
            f"  parked  {data['mapping_exceptions']:>7}  events the mapping could not use (cogent exceptions list)"
        )
    for reason, n in sorted(data["skipped"].items()):
        console.print(f"  skipped {n:>7}  {escape(reason)}")
    if data["coalesced"]:
        console.print(f"  coalesced {data['coalesced']} older stock levels into newer ones")
    if data["error"]:
        console.print(f"  error: {escape(data['error'])}")


def sync(
    ctx: typer.Context,
    source: Annotated[str | None, typer.Option("--source", help="Deliver only this source's operations.")] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what would be sent, field by field; send nothing.")
    ] = False,
    backfill: Annotated[bool, typer.Option("--backfill", help="Queue past events as history (no flows fire).")] = False,
    since: Annotated[
        str | None, typer.Option("--since", help="With --backfill: events from this date (YYYY-MM-DD).")
    ] = None,
    limit: Annotated[int | None, typer.Option("--limit", min=1, help="Deliver at most N operations.")] = None,
    max_minutes: Annotated[
        float | None,
        typer.Option(
            "--max-minutes",
            min=0.01,
            help=(
                "Stop taking new work after M minutes; import jobs still running then are left for the next"
                " run, which asks Klaviyo how they ended before sending their profiles again."
            ),
        ),
    ] = None,
    fmt: FormatOption = OutputFormat.table,
) -> None:
    """Deliver new events to Klaviyo: transactional first, then profiles and catalog, history last.

    Exits 4 when another run holds the workspace lock, 7 when Klaviyo stayed unavailable. Afterwards,
    status-threshold breaches are alerted to their owners per [alerts] in cogent.toml, once per incident.

    Example: cogent sync --source peoplevox --max-minutes 4
    """
    from cogent_cli.sync.engine import SyncOptions, plan_sync, run_sync

    check_source(source)
    if backfill != (since is not None):
        raise UsageError("--backfill and --since go together", hint="e.g. cogent sync --backfill --since 2026-01-01")
    workspace = workspace_from(ctx)
    options = SyncOptions(
        source=source,
        dry_run=dry_run,
        backfill_since=parse_since(since),
        limit=limit,
        max_minutes=max_minutes,
        command=" ".join(["sync", *sys.argv[sys.argv.index("sync") + 1 :]]) if "sync" in sys.argv else "sync",
    )
    if dry_run:
        print_plan(plan_sync(workspace, options), fmt == "json")
        return
    with lane_progress() as progress:
        summary = run_sync(workspace, options, progress=progress)
    print_summary(summary, fmt == "json")
    alert(workspace)
    if summary.exit_status:
        raise typer.Exit(summary.exit_status)
    if summary.deferred and not sum(summary.sent.values()):
        raise typer.Exit(int(ExitStatus.UNAVAILABLE))


def print_plan(plan: Any, as_json: bool) -> None:
    from cogent_cli.sync.engine import flatten

    if as_json:
        print_json(
            {
                "operations": [op.__dict__ for op in plan.ops],
                "problems": [{"event_id": e, "class": c, "message": m} for e, c, m in plan.problems],
                "skipped": dict(plan.skipped),
                "unread_events": plan.unread,
            }
        )
        return
    console = stdout()
    for op in plan.ops:
        flag = " backfill" if op.backfill else ""
        console.print(
            f"[bold]{op.lane}[/] {op.kind} {escape(op.metric)}  event {op.event_id} ({op.system}, {op.status}{flag})"
        )
        for path, value in flatten(op.payload):
            if value is None:
                continue
            console.print(f"    {escape(path)}: {escape(json.dumps(value, default=str))}")
    for event_id, klass, message in plan.problems:
        console.print(f"[red]would park[/] event {event_id}: {klass}: {escape(message)}")
    for reason, n in plan.skipped.items():
        console.print(f"would skip {n} event(s): {escape(reason)}")
    stderr().print(f"Dry run: {len(plan.ops)} operation(s) would be sent; nothing was sent or changed.")


def replay_command(
    ctx: typer.Context,
    ids: Annotated[list[int] | None, typer.Argument(help="Exception ids (see `cogent exceptions list`).")] = None,
    exception_class: Annotated[str | None, typer.Option("--class", help="Every open exception of this class.")] = None,
    source: Annotated[str | None, typer.Option("--source", help="Every open exception of this source.")] = None,
    since: Annotated[str | None, typer.Option("--since", help="Exceptions raised since this date.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would be re-sent; change nothing.")] = False,
    fmt: FormatOption = OutputFormat.table,
) -> None:
    """Map quarantined events again under the current cogent.toml and deliver them; safe to repeat.

    Example: cogent replay --class unmapped_ship_method
    """
    from cogent_cli.sync.engine import flatten, replay
    from cogent_cli.sync.exceptions import list_exceptions

    check_source(source)
    if not ids and not exception_class and not source and not since:
        raise UsageError(
            "Say which exceptions to replay",
            hint="Give ids, or --class, --source or --since (see `cogent exceptions list`).",
        )
    workspace = workspace_from(ctx)
    with workspace.store() as store:
        records = list_exceptions(
            store,
            exception_class=exception_class,
            source=source,
            since=parse_since(since),
            ids=ids or None,
            status=None,
        )
    if ids:
        missing = sorted(set(ids) - {r.id for r in records})
        if missing:
            raise UsageError(
                f"No exception with id {', '.join(map(str, missing))}", hint="See `cogent exceptions list`."
            )
    else:
        records = [r for r in records if r.status == "open"]
    if dry_run:
        items, summary = replay(workspace, records, dry_run=True)
    else:
        with lane_progress() as progress:
            items, summary = replay(workspace, records, progress=progress)
    if fmt == "json":
        print_json({"items": [i.__dict__ for i in items], "run": summary.to_json() if summary else None})
    else:
        console = stdout()
        for item in items:
            console.print(
                f"exception {item.exception_id} ({item.exception_class}): {item.outcome}: {escape(item.detail)}"
            )
            if dry_run:
                for payload in item.payloads:
                    for path, value in flatten(payload):
                        console.print(f"    {escape(path)}: {escape(json.dumps(value, default=str))}")
        if not items:
            console.print("Nothing to replay.")
        if summary:
            print_summary(summary, False)
    if summary and summary.exit_status:
        raise typer.Exit(summary.exit_status)


def register(app: typer.Typer) -> None:
    app.command()(sync)
    app.command("replay")(replay_command)
