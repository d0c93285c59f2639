"""`cogent auth set|status|remove`: credentials in the system keyring, per workspace."""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.table import Table

from cogent_cli.cli.common import new_typer, stderr, stdout, workspace_from

app = new_typer("Store and inspect credentials (system keyring, or COGENT_<SYSTEM>_<NAME> variables).")

SystemArg = Annotated[
    str, typer.Argument(help="klaviyo, or a source system: peoplevox, clarus, scend, swap, marketplacer.")
]
NameOpt = Annotated[
    str | None, typer.Option("--name", help="Which secret (default: the system's main key, e.g. api_key).")
]


@app.command("set")
def set_(
    ctx: typer.Context,
    system: SystemArg,
    name: NameOpt = None,
    from_stdin: Annotated[bool, typer.Option("--from-stdin", help="Read the value from standard input.")] = False,
) -> None:
    """Store a secret in the system keyring for this workspace (hidden prompt, or --from-stdin).

    Example: cogent auth set klaviyo

    Example: printf %s "$KEY" | cogent auth set swap --name webhook_secret --from-stdin
    """
    from cogent_cli.credentials import Credentials

    credentials = Credentials(workspace_from(ctx).config)
    # Validate the name and the keyring before asking for the secret.
    name = credentials.check_writable(system, name)
    value = sys.stdin.read() if from_stdin else typer.prompt(f"{system} {name}", hide_input=True)
    stored = credentials.set(system, value, name)
    stderr().print(f"Stored {system} {stored} in the keyring service {credentials.service}.")


@app.command()
def status(ctx: typer.Context) -> None:
    """Show which secrets are present and where each comes from; never their values.

    Example: cogent auth status
    """
    from cogent_cli.credentials import Credentials

    credentials = Credentials(workspace_from(ctx).config)
    table = Table("system", "secret", "source", "detail")
    for row in credentials.status():
        table.add_row(row.system, row.name, row.origin or "[red]missing[/]", row.detail)
    stdout().print(table)


@app.command()
def remove(ctx: typer.Context, system: SystemArg, name: NameOpt = None) -> None:
    """Delete a secret from the keyring for this workspace.

    Example: cogent auth remove marketplacer --name webhook_secret
    """
    from cogent_cli.credentials import Credentials

    credentials = Credentials(workspace_from(ctx).config)
    removed = credentials.remove(system, name)
    stderr().print(f"Removed {system} {removed} from the keyring.")
