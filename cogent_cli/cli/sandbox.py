"""`cogent sandbox serve|events|profiles`: the built-in Klaviyo stand-in and what it received."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from cogent_cli.cli.common import FormatOption, OutputFormat, new_typer, print_json, stderr, stdout
from cogent_cli.errors import UsageError

app = new_typer("A local stand-in for Klaviyo to rehearse, test and benchmark against.")

DEFAULT_DATA = Path(".cogent-sandbox")
DataOption = Annotated[
    Path | None,
    typer.Option(
        "--data", help="Folder holding the sandbox's data (default: $COGENT_SANDBOX_DATA, else ./.cogent-sandbox)."
    ),
]


def _data_dir(data: Path | None) -> Path:
    return data or Path(os.environ.get("COGENT_SANDBOX_DATA") or DEFAULT_DATA)


@app.command("serve")
def serve_command(
    host: Annotated[str, typer.Option("--host", help="Address to listen on (keep it on loopback).")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port to listen on (0 = any free port).")] = 8765,
    data: DataOption = None,
    rate_scale: Annotated[
        float, typer.Option("--rate-scale", help="Multiply every Klaviyo rate limit (10 = ten times faster).")
    ] = 1.0,
    faults: Annotated[
        str | None,
        typer.Option(
            "--faults", help="Inject failures, e.g. 5xx=0.05,429=0.02,timeout=0.01,reset=0.01,seed=7,delay=35."
        ),
    ] = None,
    access_log: Annotated[bool, typer.Option("--access-log", help="Log each request line (never headers).")] = False,
    job_seconds: Annotated[
        float,
        typer.Option(
            "--job-seconds", help="Seconds a bulk job (profile import, catalog, suppression) reads processing."
        ),
    ] = 0.0,
) -> None:
    """Serve the Klaviyo sandbox until Ctrl-C; point a workspace at it with the base_url line printed.

    Example: cogent sandbox serve --port 8765 --rate-scale 10 --faults 5xx=0.05,seed=7
    Example: cogent sandbox serve --job-seconds 30
    """
    from cogent_cli.sandbox import parse_faults, serve
    from cogent_cli.sandbox.sources import SourceStandIns

    if rate_scale <= 0:
        raise UsageError(f"--rate-scale must be positive, not {rate_scale}.", hint="Use e.g. --rate-scale 10.")
    if job_seconds < 0:
        raise UsageError(f"--job-seconds cannot be negative, not {job_seconds}.", hint="Use e.g. --job-seconds 30.")
    spec = parse_faults(faults) if faults else None
    data_dir = _data_dir(data)

    def ready(base_url: str) -> None:
        err = stderr()
        err.print(f"Klaviyo sandbox listening on {base_url} (data in {data_dir}, rate limits x{rate_scale:g}).")
        if spec:
            err.print(f"Injecting faults: {spec}")
        err.print(
            f"Peoplevox, Clarus, Swap and Marketplacer stand-ins under {base_url}/sources/ (`cogent sandbox seed`)."
        )
        err.print("Put this under \\[klaviyo] in cogent.toml (any API key is accepted):")
        typer.echo(f'base_url = "{base_url}"')

    routes = SourceStandIns(data_dir).routes()
    serve(
        data_dir,
        host,
        port,
        rate_scale,
        spec,
        access_log=access_log,
        extra_routes=routes,
        on_ready=ready,
        job_seconds=job_seconds,
    )


@app.command("seed")
def seed_command(
    orders: Annotated[int, typer.Option("--orders", min=1, help="How many marketplace orders to create.")] = 200,
    seed: Annotated[int, typer.Option("--seed", help="Random seed: the same seed writes the same data set.")] = 1,
    data: DataOption = None,
    base_url: Annotated[
        str, typer.Option("--base-url", help="Where `cogent sandbox serve` listens, for the printed config.")
    ] = "http://127.0.0.1:8765",
    fmt: FormatOption = OutputFormat.table,
) -> None:
    """Write a synthetic retailer for the source stand-ins, with planted messiness listed in a manifest.

    Orders on Marketplacer, despatches in Peoplevox, Clarus and Scend (split shipments included),
    returns in Swap, stock per site with quarantine and goods-in. Prints the cogent.toml sections
    that point a workspace at the sandbox; the manifest is <data>/sources/manifest.json.

    Example: cogent sandbox seed --orders 500 --seed 7 >> cogent.toml
    """
    from cogent_cli.sandbox.seed import seed_sources
    from cogent_cli.sandbox.sources import sources_config

    result = seed_sources(_data_dir(data), orders=orders, seed=seed)
    manifest = result.manifest
    if fmt == "json":
        keys = ("seed", "orders", "counts", "planted_counts", "ship_methods")
        print_json({"manifest": str(result.manifest_path), **{key: manifest[key] for key in keys}})
        return
    err = stderr()
    err.print(f"Seeded {orders} orders (seed {seed}) in {result.data_dir}; manifest: {result.manifest_path}")
    err.print("Planted: " + ", ".join(f"{kind} {count}" for kind, count in manifest["planted_counts"].items()))
    err.print(
        "Credentials for the stand-ins: "
        + " ".join(f"{k}={v}" for k, v in manifest["credentials"]["environment"].items())
    )
    typer.echo(sources_config(base_url, result.drop_dir))
    # The workspace template already has [mapping.ship_methods]: these lines go under it.
    typer.echo("# Under [mapping.ship_methods] (the seed's unmapped methods are left out on purpose):")
    for raw, canonical in manifest["ship_methods"]["mapping"].items():
        typer.echo(f'# "{raw}" = "{canonical}"')


def _table(rows: list[dict[str, Any]], columns: list[str]) -> Table:
    table = Table(show_edge=False, pad_edge=False)
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*["" if row.get(column) is None else str(row[column]) for column in columns])
    return table


@app.command("events")
def events_command(
    data: DataOption = None,
    metric: Annotated[str | None, typer.Option("--metric", help="Only events of this metric name.")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="How many of the most recent events.")] = 50,
    fmt: FormatOption = OutputFormat.table,
) -> None:
    """List the most recent events the sandbox received, newest first.

    Example: cogent sandbox events --metric "Placed Order" --limit 20 --format json
    """
    from cogent_cli.sandbox.inspection import list_events, open_data

    db = open_data(_data_dir(data))
    rows = list_events(db, metric, limit)
    if fmt == "json":
        print_json(rows)
        return
    for row in rows:
        row["profile"] = row["email"] or row["phone_number"] or row["external_id"] or row["profile_id"]
        row["properties"] = json.dumps(row["properties"], ensure_ascii=False)[:60]
    stdout().print(_table(rows, ["time", "metric", "profile", "unique_id", "value", "value_currency", "properties"]))
    stderr().print(f"{len(rows)} event(s) shown.")


@app.command("profiles")
def profiles_command(
    data: DataOption = None,
    search: Annotated[
        str | None, typer.Option("--search", help="Part of an email, phone number or external id, or a profile id.")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="How many of the most recently updated profiles.")] = 50,
    fmt: FormatOption = OutputFormat.table,
) -> None:
    """List profiles the sandbox holds, with their consent, suppressions and event count.

    Example: cogent sandbox profiles --search @example.com --format json
    """
    from cogent_cli.sandbox.inspection import list_profiles, open_data

    db = open_data(_data_dir(data))
    rows = list_profiles(db, search, limit)
    if fmt == "json":
        print_json(rows)
        return
    columns = ["id", "email", "phone_number", "external_id", "email_consent", "sms_consent", "suppressed", "events"]
    stdout().print(_table(rows, columns))
    stderr().print(f"{len(rows)} profile(s) shown.")
