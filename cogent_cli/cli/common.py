"""What every command module shares: consoles, the workspace from global options, output helpers."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from cogent_cli.workspace import Workspace, find_workspace

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"]}


@dataclass
class GlobalOptions:
    workspace: Path | None = None
    verbose: int = 0


def stdout() -> Console:
    return Console(soft_wrap=False, highlight=False)


def stderr() -> Console:
    return Console(stderr=True, highlight=False)


def workspace_from(ctx: typer.Context) -> Workspace:
    options: GlobalOptions = ctx.find_root().obj or GlobalOptions()
    return find_workspace(options.workspace)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str, ensure_ascii=False) + "\n")


def new_typer(help_text: str) -> typer.Typer:
    return typer.Typer(help=help_text, no_args_is_help=True, context_settings=CONTEXT_SETTINGS)
