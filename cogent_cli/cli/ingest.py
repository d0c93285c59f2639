"""`cogent ingest SYSTEM PATH...`: report exports and captured webhook bodies into the inbox."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from cogent_cli.cli.common import FormatOption, OutputFormat, print_json, stderr, stdout, workspace_from
from cogent_cli.cli.inbox import report

if TYPE_CHECKING:
    from cogent_cli.ingest import IngestSummary


def ingest(
    ctx: typer.Context,
    system: Annotated[str, typer.Argument(help="peoplevox, clarus, scend, swap or marketplacer.")],
    paths: Annotated[list[Path], typer.Argument(metavar="PATH...", help="CSV, JSON or JSON Lines files.")],
    kind: Annotated[
        str | None, typer.Option("--kind", "-k", help="The kind of payload, when it cannot be detected.")
    ] = None,
    no_normalise: Annotated[
        bool, typer.Option("--no-normalise", help="Only store the raw records; normalise later.")
    ] = False,
    fmt: FormatOption = OutputFormat.table,
) -> None:
    """Store every record of the files in the inbox, then normalise what is pending into events.

    The kind is detected from a CSV header or a JSON record's fields; --kind names it. Files are
    streamed; ingesting the same file again stores nothing new. Quarantined records are listed by
    `cogent inbox list --status quarantined`.

    Example: cogent ingest peoplevox despatch-summary-2026-11-01.csv
    """
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from cogent_cli.ingest import ingest_paths

    workspace = workspace_from(ctx)
    total_bytes = sum(p.stat().st_size for p in paths if p.is_file())
    columns = (TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed:,.0f}"), TimeElapsedColumn())
    with workspace.store() as store, Progress(*columns, console=stderr(), transient=True) as progress:
        reading = progress.add_task("Reading", total=total_bytes)
        normalising = None

        def advance(phase: str, amount: int) -> None:
            nonlocal normalising
            if phase == "bytes":
                progress.advance(reading, amount)
                return
            if normalising is None:
                progress.update(reading, visible=False)
                normalising = progress.add_task("Normalising", total=None)
            progress.advance(normalising, amount)

        summary = ingest_paths(
            store, workspace.config, system, paths, kind=kind, normalise=not no_normalise, progress=advance
        )
    _show(summary, fmt == "json")


def _show(summary: IngestSummary, as_json: bool) -> None:
    if as_json:
        normalised = summary.normalised
        print_json(
            {
                "files": summary.files,
                "records": summary.records,
                "stored": summary.stored,
                "duplicates": summary.duplicates,
                "kinds": summary.kinds,
                "normalised": normalised.normalised if normalised else None,
                "quarantined": normalised.quarantined if normalised else None,
                "events_written": normalised.events_written if normalised else None,
                "events_duplicate": normalised.events_duplicate if normalised else None,
            }
        )
        return
    kinds = ", ".join(f"{kind} {count}" for kind, count in summary.kinds.items()) or "none"
    stdout().print(
        f"{summary.records} record(s) in {summary.files} file(s) ({kinds}): "
        f"{summary.stored} stored, {summary.duplicates} already in the inbox."
    )
    if summary.normalised is not None:
        report(summary.normalised)
        if summary.normalised.quarantined:
            stderr().print("See them with: cogent inbox list --status quarantined")
