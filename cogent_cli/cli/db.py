"""`cogent db migrate|info`."""

from __future__ import annotations

import typer

from cogent_cli.cli.common import FormatOption, OutputFormat, new_typer, print_json, stderr, stdout, workspace_from

app = new_typer("The workspace state file (.cogent/state.db).")


@app.command()
def migrate(ctx: typer.Context) -> None:
    """Bring the state file's schema up to date; safe to run any number of times.

    Example: cogent db migrate
    """
    from cogent_cli.state import Store

    workspace = workspace_from(ctx)
    with Store.open(workspace.state_path, migrate=False) as store:
        applied = store.migrate()
    if applied:
        stderr().print(f"Applied {len(applied)} migration(s): {', '.join(applied)}")
    else:
        stderr().print("Schema already up to date.")


@app.command()
def info(
    ctx: typer.Context,
    fmt: FormatOption = OutputFormat.table,
) -> None:
    """Show the schema version, row counts per table and the file size.

    Example: cogent db info --format json
    """
    from cogent_cli.state import Store

    workspace = workspace_from(ctx)
    with Store.open(workspace.state_path, migrate=False) as store:
        state = store.info()
    if fmt == "json":
        print_json(
            {
                "path": str(state.path),
                "schema_version": state.schema_version,
                "migrations_applied": state.applied,
                "migrations_pending": state.pending,
                "size_bytes": state.size_bytes,
                "tables": state.tables,
            }
        )
        return
    console = stdout()
    console.print(f"path:           {state.path}")
    console.print(f"schema version: {state.schema_version} ({state.applied} applied, {state.pending} pending)")
    console.print(f"size:           {state.size_bytes:,} bytes")
    for name, count in state.tables.items():
        console.print(f"  {name:<28} {count:>12,} rows")
