"""`cogent demo [DIR]`: pull, ingest and sync end to end against a sandbox started on the spot."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from cogent_cli.cli.common import FormatOption, OutputFormat, print_json, stderr, stdout
from cogent_cli.cli.status import show_status
from cogent_cli.cli.sync import lane_progress, print_summary


def demo(
    directory: Annotated[Path, typer.Argument(help="Folder for the demo workspace (must not exist yet).")] = Path(
        "cogent-demo"
    ),
    orders: Annotated[int, typer.Option("--orders", min=1, max=5000, help="Orders in the synthetic retailer.")] = 40,
    seed: Annotated[int, typer.Option("--seed", help="Random seed of the synthetic retailer.")] = 1,
    fmt: FormatOption = OutputFormat.table,
) -> None:
    """Run the whole job on this machine: a sandbox Klaviyo and source systems, seeded, pulled, synced.

    Creates a workspace in DIR pointed at a sandbox it starts itself, seeds a synthetic retailer,
    pulls and normalises every source, syncs to the sandbox's Klaviyo, mirrors that account and runs
    every audit, then reports what Klaviyo received, which exceptions were raised and why, what the
    audits found, and `cogent status`; it writes the HTML health report to DIR/report.html.
    Nothing leaves this machine.

    Example: cogent demo ./acme-demo --orders 100
    """
    from cogent_cli.demo import audit_summary, exception_summary, report_json, run_demo

    err = stderr()
    with lane_progress() as progress:
        report = run_demo(
            directory, orders=orders, seed=seed, step=lambda m: err.print(f"[bold]>[/] {escape(m)}"), progress=progress
        )
    if fmt == "json":
        print_json(report_json(report))
        return
    console = stdout()
    console.print(
        "Pulled: "
        + ", ".join(f"{system} {n}" for system, n in report.pulled.items())
        + f"; {report.events} normalised events"
    )
    if report.sync:
        print_summary(report.sync, False)
    console.print("Klaviyo (sandbox) received:")
    for metric, n in report.received.items():
        console.print(f"  {n:>6}  {escape(metric)}")
    console.print(
        f"  {report.profiles:>6}  profiles, {report.subscriptions} consent records, {report.catalog_variants_updated} variants in stock"
    )
    console.print("Exceptions raised (cogent exceptions list -w " + escape(str(report.workspace)) + "):")
    for name, count, examples in exception_summary(report):
        console.print(f"  {count:>6}  {escape(name)}")
        for example in examples:
            console.print(f"          e.g. {escape(example)}")
    if not report.exceptions:
        console.print("  none")
    console.print(
        f"Audit findings (cogent audit NAME -w {escape(str(report.workspace))}); planted by the seed: "
        + ", ".join(f"{kind} {n}" for kind, n in sorted(report.planted.items()))
    )
    for audit in audit_summary(report):
        if audit["error"]:
            console.print(f"  {audit['audit']}: could not run: {escape(audit['error'])}")
            continue
        counts = ", ".join(f"{n} {severity}" for severity, n in audit["counts"].items() if n) or "no findings"
        console.print(f"  {audit['audit']}: {counts}")
        for example in audit["examples"]:
            console.print(f"          {example['severity']}: {escape(example['title'])} (owner: {example['owner']})")
    console.print()
    console.print("[bold]cogent status[/]")
    if report.health:
        show_status(report.health)
    console.print(f"Health report: {escape(str(report.report_path))}")
    err.print(
        f"The workspace stays in {report.workspace}; its sandbox stopped with the demo (`cogent sandbox serve` restarts one)."
    )
