"""`cogent init` and `cogent doctor`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cogent_cli.cli.common import stderr, stdout, workspace_from
from cogent_cli.errors import ExitStatus


def init(
    directory: Annotated[Path, typer.Argument(help="Folder for the workspace (created if needed).")] = Path("."),
    name: Annotated[str | None, typer.Option("--name", help="Client name (default: the folder's name).")] = None,
) -> None:
    """Create a client workspace: a commented cogent.toml and a private state file.

    Example: cogent init ~/clients/acme --name "Acme Outdoor"
    """
    from cogent_cli.workspace import init_workspace

    workspace = init_workspace(directory, name)
    console = stderr()
    console.print(f"Created workspace [bold]{workspace.config.workspace.name}[/] in {workspace.root}")
    console.print(f"  config: {workspace.config_path}\n  state:  {workspace.state_path}")
    console.print("Next: edit cogent.toml, then `cogent auth set klaviyo` and `cogent doctor`.")


def doctor(ctx: typer.Context) -> None:
    """Check the workspace: config valid, state migrated, credentials present for each enabled system.

    Example: cogent doctor
    """
    from cogent_cli.doctor import run_doctor

    checks = run_doctor(workspace_from(ctx))
    console = stdout()
    for check in checks:
        mark = "[green]pass[/]" if check.ok else "[red]FAIL[/]"
        console.print(f"{mark}  {check.name}: {check.detail}")
        if not check.ok and check.hint:
            console.print(f"      fix: {check.hint}")
    failed = sum(not c.ok for c in checks)
    if failed:
        stderr().print(f"{failed} check(s) failed.")
        raise typer.Exit(int(ExitStatus.ERROR))


def register(app: typer.Typer) -> None:
    app.command()(init)
    app.command()(doctor)
