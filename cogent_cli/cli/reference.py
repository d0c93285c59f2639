"""The CLI reference, rendered from the command tree so it never drifts from `--help`.

Run `python -m cogent_cli.cli.reference > docs/cli.md`; a test fails when the checked-in file differs.
The output depends only on the commands, never on the terminal it is rendered in.
"""

from __future__ import annotations

import inspect
import re
import sys
from collections.abc import Iterator

import typer
from typer.core import TyperArgument, TyperGroup

from cogent_cli.cli.common import EXAMPLE, group_examples

REGENERATE = "python -m cogent_cli.cli.reference > docs/cli.md"
# Help records are laid out by click; a fixed width keeps them identical on every machine.
WIDTH = 100


def command_tree(app: typer.Typer) -> Iterator[tuple[typer.Context, int]]:
    """Every visible command and group, depth first in `--help` order, with its depth (root = 0)."""
    root = typer.main.get_command(app)

    def walk(ctx: typer.Context, depth: int) -> Iterator[tuple[typer.Context, int]]:
        yield ctx, depth
        command = ctx.command
        if isinstance(command, TyperGroup):
            for name in command.list_commands(ctx):
                sub = command.get_command(ctx, name)
                if sub is not None and not sub.hidden:
                    yield from walk(_context(sub, name, ctx), depth + 1)

    yield from walk(_context(root, "cogent", None), 0)


def _context(command: typer.core.TyperCommand | TyperGroup, name: str, parent: typer.Context | None) -> typer.Context:
    return command.make_context(
        name, [], parent=parent, resilient_parsing=True, terminal_width=WIDTH, max_content_width=WIDTH
    )


def _description(help_text: str | None) -> str:
    text = inspect.cleandoc(help_text or "").replace("\b\n", "")
    return EXAMPLE.sub(lambda m: f"Example: `{m.group(1)}`", text)


def _definitions(title: str, records: list[tuple[str, str]]) -> list[str]:
    if not records:
        return []
    lines = [f"**{title}**", ""]
    for term, help_text in records:
        detail = re.sub(r"\s+", " ", help_text).strip()
        lines.append(f"- `{term}`" + (f": {detail}" if detail else ""))
    return [*lines, ""]


def _section(ctx: typer.Context, depth: int) -> list[str]:
    command = ctx.command
    usage = " ".join([ctx.command_path, *command.collect_usage_pieces(ctx)])
    lines = [f"{'#' * min(depth + 2, 4)} `{ctx.command_path}`", "", "```text", usage, "```", ""]
    if description := _description(command.help):
        lines += [description, ""]
    arguments, options = [], []
    for param in command.get_params(ctx):
        record = param.get_help_record(ctx)
        if isinstance(param, TyperArgument):
            arguments.append(record or (param.make_metavar(ctx), ""))
        elif record is not None:
            options.append(record)
    lines += _definitions("Arguments", arguments)
    lines += _definitions("Options", options)
    if isinstance(command, TyperGroup):
        if depth > 0:
            lines += _definitions("Examples", [(example, "") for example in group_examples(command, ctx)])
        subcommands = [
            (name, sub.get_short_help_str(limit=WIDTH))
            for name in command.list_commands(ctx)
            if (sub := command.get_command(ctx, name)) is not None and not sub.hidden
        ]
        lines += _definitions("Commands", subcommands)
    return lines


def render(app: typer.Typer | None = None) -> str:
    """docs/cli.md for `app` (default: the `cogent` application)."""
    if app is None:
        from cogent_cli.cli import app
    lines = ["# CLI reference", "", f"Generated from the commands' `--help`; regenerate with `{REGENERATE}`.", ""]
    for ctx, depth in command_tree(app):
        lines += _section(ctx, depth)
    return "\n".join(lines).rstrip("\n") + "\n"


if __name__ == "__main__":
    sys.stdout.write(render())
