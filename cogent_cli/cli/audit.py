"""`cogent audit NAME|all|list`: run audits and report their findings."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from cogent_cli.cli.common import alert, stderr, stdout, workspace_from
from cogent_cli.errors import ExitStatus, UsageError

if TYPE_CHECKING:
    from cogent_cli.audits import AuditResult, Registry

FORMATS = ("table", "json", "csv", "md", "html")
SEVERITY_STYLE = {"error": "bold red", "warning": "yellow", "info": "cyan"}


def _since(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = (
            datetime.fromisoformat(value)
            if "T" in value
            else datetime.combine(date.fromisoformat(value), datetime.min.time())
        )
    except ValueError:
        raise typer.BadParameter("use a date like 2026-11-01 or 2026-11-01T08:00:00Z", param_hint="--since") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def audit(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="An audit name, `all` to run every enabled audit, or `list`.")],
    fmt: Annotated[str, typer.Option("--format", "-f", help="table, json, csv, md or html.")] = "table",
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write the report to this file.")] = None,
    fail_on: Annotated[
        str,
        typer.Option(
            "--fail-on", help="Exit with status 3 when a finding reaches this severity: info, warning or error."
        ),
    ] = "error",
    since: Annotated[
        str | None, typer.Option("--since", help="Only facts and Klaviyo events from this date on.")
    ] = None,
    export_merges_to: Annotated[
        Path | None,
        typer.Option("--export-merges", help="klaviyo-profiles: write merge proposals to this JSON file."),
    ] = None,
) -> None:
    """Run an audit (or `all`), show a summary by severity and owner, then the findings.

    Every run is stored, so findings are marked new, persisting, or fixed since the previous run.
    Exit status 3 when a finding reaches --fail-on, 1 when an audit could not run. New error-level
    findings (and status-threshold breaches) are alerted to their owners once, per [alerts] in cogent.toml.

    Example: cogent audit ship-methods --format md --output ship-methods.md --fail-on warning
    """
    if fmt not in FORMATS:
        raise typer.BadParameter(f"use one of {', '.join(FORMATS)}", param_hint="--format")
    if fail_on not in ("info", "warning", "error"):
        raise typer.BadParameter("use info, warning or error", param_hint="--fail-on")
    from cogent_cli.audits import AuditRunner, load_registry, reached
    from cogent_cli.audits.merges import export_merges
    from cogent_cli.audits.render import render

    workspace = workspace_from(ctx)
    registry = load_registry(workspace.root)
    if name == "list":
        _list(registry)
        return
    err = stderr()
    with workspace.store() as store:
        runner = AuditRunner(store, workspace.config, registry)
        names = runner.enabled() if name == "all" else [registry.get(name).name]
        with err.status("Auditing...") as status:
            results = runner.run(names, since=_since(since), progress=lambda n: status.update(f"Auditing {n}..."))
    alert(workspace, results)
    for failure in registry.failures:
        err.print(f"[bold red]Broken audit:[/] {failure.message}", soft_wrap=True, markup=True, highlight=False)
    if export_merges_to is not None:
        profiles = next((r for r in results if r.audit.name == "klaviyo-profiles" and r.ok), None)
        if profiles is None:
            raise UsageError(
                "--export-merges needs the klaviyo-profiles audit",
                hint="Run `cogent audit klaviyo-profiles --export-merges FILE`.",
            )
        count = export_merges(profiles.findings, export_merges_to)
        err.print(
            f"Wrote {count} merge proposal(s) to {export_merges_to}; review them, then `cogent merge apply {export_merges_to}`."
        )
    label = workspace.config.workspace.name
    if fmt == "table" and output is None:
        _table(results, stdout())
    elif fmt == "table":
        with output.open("w", encoding="utf-8") as handle:
            _table(results, Console(file=handle, width=160, highlight=False))
    else:
        document = render(results, fmt, label)  # type: ignore[arg-type]
        if output is None:
            typer.echo(document, nl=False)
        else:
            output.write_text(document, encoding="utf-8")
    if output is not None:
        err.print(f"Wrote {output}")
    broken = registry.failures or any(not r.ok for r in results)
    for result in results:
        if not result.ok:
            err.print(f"[bold red]Audit {result.audit.name} failed:[/] {result.error}", soft_wrap=True)
    if broken:
        raise typer.Exit(int(ExitStatus.ERROR))
    if reached(results, fail_on):  # type: ignore[arg-type]
        raise typer.Exit(int(ExitStatus.FINDINGS))


def _list(registry: Registry) -> None:
    table = Table(title="Audits")
    table.add_column("name", no_wrap=True)
    for column in ("kind", "owner", "thresholds", "description"):
        table.add_column(column, overflow="fold")
    for name, item in sorted(registry.audits.items()):
        owner = item.owner or (f"[{item.owner_class}]" if item.owner_class else "ecommerce")
        thresholds = f"warning>={item.warning_from or '-'} error>={item.error_from or '-'}"
        table.add_row(name, item.kind, owner, thresholds, item.description)
    stdout().print(table)
    for failure in registry.failures:
        stderr().print(f"[bold red]Broken audit:[/] {failure.message}", soft_wrap=True)
    if registry.failures:
        raise typer.Exit(int(ExitStatus.ERROR))


def _table(results: list[AuditResult], console: Console) -> None:
    from cogent_cli.audits.render import business_keys, summary

    totals = summary(results)
    table = Table(title=f"Findings: {totals['new']} new, {totals['persisting']} persisting, {totals['fixed']} fixed")
    table.add_column("owner")
    for severity in ("error", "warning", "info"):
        table.add_column(severity, justify="right", style=SEVERITY_STYLE[severity])
    for owner, counts in totals["by_owner"].items():
        table.add_row(owner, str(counts["error"]), str(counts["warning"]), str(counts["info"]))
    bs = totals["by_severity"]
    table.add_row("all", str(bs["error"]), str(bs["warning"]), str(bs["info"]), style="bold")
    console.print(table)
    for result in results:
        if not result.ok:
            continue
        if not result.findings and not result.fixed:
            console.print(f"[green]{result.audit.name}: no findings[/]")
            continue
        detail = Table(title=f"{result.audit.name}: {result.audit.description}", show_lines=False)
        for column in ("severity", "state", "finding", "keys", "count", "owner", "fix"):
            detail.add_column(column, overflow="fold")
        for f in (*result.findings, *result.fixed):
            style = SEVERITY_STYLE[f.severity] if f.state != "fixed" else "dim"
            detail.add_row(f.severity, f.state, f.title, business_keys(f), str(f.count), f.owner, f.fix, style=style)
        console.print(detail)
