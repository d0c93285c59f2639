"""`cogent report`: the HTML health report."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path
from typing import Annotated

import typer

from cogent_cli.cli.common import stderr, workspace_from


def report(
    ctx: typer.Context,
    output: Annotated[Path, typer.Option("--output", "-o", help="Where to write the HTML file.")] = Path("report.html"),
    since: Annotated[
        datetime | None, typer.Option("--since", formats=["%Y-%m-%d"], help="First day covered (default: 30 days ago).")
    ] = None,
) -> None:
    """Write a self-contained HTML health report: volumes, latency, exceptions, audit findings, setup.

    It needs no network to open: CSS and SVG charts are inline, so it can be mailed or archived.

    Example: cogent report --output acme-health.html --since 2026-11-01
    """
    from cogent_cli.report import render_report

    workspace = workspace_from(ctx)
    since_day: date | None = since.date() if since else None
    with workspace.store() as store:
        html = render_report(store, workspace.config, since_day)
    output.write_text(html, encoding="utf-8")
    stderr().print(f"Wrote {output} ({len(html) // 1024} KiB)")


def register(app: typer.Typer) -> None:
    app.command()(report)
