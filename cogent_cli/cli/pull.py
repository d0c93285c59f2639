"""`cogent pull SYSTEM`: read a source system (or mirror Klaviyo) into the workspace."""

from __future__ import annotations

import importlib.util
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated

import typer

from cogent_cli.cli.common import FormatOption, OutputFormat, print_json, stderr, stdout, workspace_from
from cogent_cli.cli.inbox import report
from cogent_cli.errors import UsageError

if TYPE_CHECKING:
    from cogent_cli.pull import PullResult


def parse_since(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not an ISO date or time such as 2026-11-01T08:00Z") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def pull(
    ctx: typer.Context,
    system: Annotated[
        str, typer.Argument(help="peoplevox, clarus, swap, marketplacer, scend, or klaviyo (the audit mirror).")
    ],
    since: Annotated[
        str | None,
        typer.Option("--since", help="Start from this ISO time instead of where the last pull stopped."),
    ] = None,
    stream: Annotated[
        list[str] | None, typer.Option("--stream", "-s", help="Only this stream (repeatable), e.g. despatches.")
    ] = None,
    no_normalise: Annotated[
        bool, typer.Option("--no-normalise", help="Only store the raw records; normalise later.")
    ] = False,
    fmt: FormatOption = OutputFormat.table,
) -> None:
    """Read a source system's new records into the inbox, then normalise them into events.

    Each stream keeps a cursor in the state file, advanced only after a page is stored, so the
    next pull (or a rerun after an interruption) continues where this one stopped. Scend exports
    are read from [sources.scend] drop_dir and moved to processed/ once stored. `klaviyo` mirrors
    the Klaviyo account for audits.

    Example: cogent pull peoplevox --since 2026-11-01T00:00Z
    """
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from cogent_cli.pull import PULL_SYSTEMS, StreamResult
    from cogent_cli.pull import pull as pull_source

    workspace = workspace_from(ctx)
    moment = parse_since(since)
    if system == "klaviyo":
        _pull_klaviyo(workspace, moment, fmt == "json")
        return
    if system not in PULL_SYSTEMS:
        raise UsageError(f"Cannot pull from {system!r}", hint=f"Use one of: {', '.join(_systems())}.")
    columns = (SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn())
    with Progress(*columns, console=stderr(), transient=True) as progress:
        tasks: dict[str, int] = {}

        def advance(name: str, totals: StreamResult) -> None:
            if name not in tasks:
                tasks[name] = progress.add_task("")
            total = f" of {totals.total:,}" if totals.total is not None else ""
            progress.update(
                tasks[name],
                description=f"{system}/{name}: {totals.records:,}{total} read, {totals.stored:,} new "
                f"({totals.pages} page{'s' if totals.pages != 1 else ''})",
            )

        result = pull_source(
            workspace, system, since=moment, streams=tuple(stream or ()) or None, progress=advance,
            normalise=not no_normalise,
        )  # fmt: skip
    _show(result, fmt == "json")


def _systems() -> tuple[str, ...]:
    from cogent_cli.pull import PULL_SYSTEMS

    return (*PULL_SYSTEMS, "klaviyo") if importlib.util.find_spec("cogent_cli.mirror") else PULL_SYSTEMS


def _pull_klaviyo(workspace: object, since: datetime | None, as_json: bool) -> None:
    from rich.progress import Progress, SpinnerColumn, TextColumn

    from cogent_cli.pull import PULL_SYSTEMS

    if importlib.util.find_spec("cogent_cli.mirror") is None:
        raise UsageError("Cannot pull from 'klaviyo' in this build", hint=f"Use one of: {', '.join(PULL_SYSTEMS)}.")
    from cogent_cli.mirror import pull_klaviyo

    with Progress(SpinnerColumn(), TextColumn("{task.description}"), console=stderr(), transient=True) as progress:
        task = progress.add_task("klaviyo")
        counts: dict[str, int] = {}

        def advance(stream: str, count: int) -> None:
            counts[stream] = counts.get(stream, 0) + count
            progress.update(task, description="klaviyo: " + ", ".join(f"{k} {v:,}" for k, v in counts.items()))

        summary = pull_klaviyo(workspace, since=since, progress=advance)  # type: ignore[arg-type]
    if as_json:
        print_json({"system": "klaviyo", "counts": summary.counts})
    else:
        stdout().print("klaviyo: " + (", ".join(f"{k} {v:,}" for k, v in summary.counts.items()) or "nothing new"))


def _show(result: PullResult, as_json: bool) -> None:
    if as_json:
        print_json(result.as_dict())
        return
    out = stdout()
    for stream in result.streams:
        out.print(
            f"{result.system}/{stream.stream}: {stream.records:,} read in {stream.pages} page(s), "
            f"{stream.stored:,} new, {stream.duplicates:,} already in the inbox"
        )
    for name in result.processed_files:
        out.print(f"  moved {name} to processed/")
    for name, problem in result.skipped_files.items():
        stderr().print(f"Left {name} in the drop folder: {problem}")
    if result.normalised is not None:
        report(result.normalised)
        if result.normalised.quarantined:
            stderr().print("See them with: cogent inbox list --status quarantined")
