"""`cogent config show|check`."""

from __future__ import annotations

import typer

from cogent_cli.cli.common import new_typer, print_json, stderr, workspace_from

app = new_typer("Inspect and validate cogent.toml.")


@app.command()
def show(ctx: typer.Context) -> None:
    """Print the effective configuration (defaults filled in) as JSON; secrets are never shown.

    Example: cogent config show | jq .klaviyo
    """
    from cogent_cli.config import effective_config

    print_json(effective_config(workspace_from(ctx).config))


@app.command()
def check(ctx: typer.Context) -> None:
    """Validate cogent.toml without running anything; every problem is listed with its key.

    Example: cogent config check && cogent sync
    """
    workspace = workspace_from(ctx)
    config = workspace.config
    enabled = ", ".join(config.sources.enabled()) or "none"
    stderr().print(f"{workspace.config_path} is valid (sources enabled: {enabled}).")
