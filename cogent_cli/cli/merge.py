"""`cogent merge apply`: merge duplicate Klaviyo profiles from a reviewed proposal file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from cogent_cli.cli.common import new_typer, stderr, stdout, workspace_from

app = new_typer("Merge duplicate Klaviyo profiles found by `cogent audit klaviyo-profiles`.")


@app.command()
def apply(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="A proposal file from `cogent audit klaviyo-profiles --export-merges`.")],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show and record what would be merged; call nothing.")
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask before each batch (for scripts).")] = False,
) -> None:
    """Merge the approved proposals' profiles into their survivors, asking once per batch.

    Klaviyo deletes each merged source profile, so only proposals marked `"approved": true` are applied,
    every merge is recorded in the state file, and a re-run skips the ones already done.

    Example: cogent merge apply merges.json --dry-run
    """
    import asyncio

    from cogent_cli.audits.merges import MergeStep, apply_merges, load_proposals, proposals_summary

    workspace = workspace_from(ctx)
    proposals = load_proposals(file)
    counts = proposals_summary(proposals)
    err = stderr()
    err.print(
        f"{counts['proposals']} proposal(s), {counts['approved']} approved: "
        f"{counts['source_profiles']} profile(s) to merge into their survivors."
    )

    def confirm(batch: list[MergeStep]) -> bool:
        table = Table(title=f"{'Would merge' if dry_run else 'Merge'} {len(batch)} profile(s)")
        table.add_column("source (deleted)")
        table.add_column("into survivor")
        table.add_column("cluster", overflow="fold")
        for step in batch:
            table.add_row(step.source_id, step.destination_id, step.cluster)
        stdout().print(table)
        return yes or dry_run or typer.confirm("Merge this batch?", default=False)

    async def run():
        with workspace.store() as store:
            if dry_run:
                return await apply_merges(store, None, proposals, dry_run=True, confirm=confirm)
            from cogent_cli.sync.engine import default_client_factory

            async with default_client_factory(workspace.config) as client:
                return await apply_merges(store, client, proposals, dry_run=False, confirm=confirm)

    summary = asyncio.run(run())
    if dry_run:
        err.print(
            f"Dry run: {summary.planned} merge(s) would be made; {summary.already_done} already done. Nothing was sent."
        )
        return
    err.print(
        f"Merged {summary.merged}, failed {summary.failed}, already done {summary.already_done}, "
        f"batches skipped {summary.skipped_batches}."
    )
    if summary.failed:
        raise typer.Exit(1)
