"""The command line as a whole: version, module entry point, help with examples, the generated reference."""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from cogent_cli import __version__
from cogent_cli.cli import app
from cogent_cli.cli.reference import REGENERATE, command_tree, render
from cogent_cli.config import SOURCE_SYSTEMS, Config
from cogent_cli.errors import ExitStatus

ROOT = Path(__file__).resolve().parents[2]


def test_version(runner: CliRunner):
    result = runner.invoke(app, ["--version"])

    assert result.exit_code == 0
    assert result.stdout == f"cogent {__version__}\n"


def test_python_m_cogent_cli_runs_the_cli():
    result = subprocess.run(
        [sys.executable, "-m", "cogent_cli", "--help"], capture_output=True, text=True, timeout=120, check=False
    )

    assert result.returncode == 0, result.stderr
    assert "Usage:" in result.stdout
    assert "Example: cogent init acme" in result.stdout


def test_every_command_and_group_help_has_a_description_and_an_example(runner: CliRunner):
    paths = [ctx.command_path.split()[1:] for ctx, _ in command_tree(app)]
    assert ["auth", "set"] in paths and ["db", "migrate"] in paths

    missing = []
    for path in paths:
        result = runner.invoke(app, [*path, "--help"])
        assert result.exit_code == 0, (path, result.output)
        description = result.stdout.split("\n\n")[1].strip()
        if not description or "Example" not in result.stdout:
            missing.append(" ".join(["cogent", *path]))
    assert missing == [], f"add an `Example:` line to the docstring of: {', '.join(missing)}"


def test_h_is_help_everywhere(runner: CliRunner):
    assert runner.invoke(app, ["-h"]).stdout == runner.invoke(app, ["--help"]).stdout
    assert runner.invoke(app, ["auth", "set", "-h"]).stdout == runner.invoke(app, ["auth", "set", "--help"]).stdout


def test_checked_in_cli_reference_matches_the_commands():
    checked_in = (ROOT / "docs" / "cli.md").read_text()

    assert checked_in == render(), f"docs/cli.md is out of date: run `{REGENERATE}`"


def test_cli_reference_does_not_depend_on_the_terminal_width():
    def render_with(columns: str) -> str:
        return subprocess.run(
            [sys.executable, "-m", "cogent_cli.cli.reference"],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
            env={"COLUMNS": columns, "PATH": "/usr/bin:/bin"},
        ).stdout

    assert render_with("40") == render_with("250") == render()


def test_readme_test_command_is_exactly_what_ci_runs():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    setup_block = readme.split("```bash\n", 1)[1].split("```", 1)[0].strip().splitlines()

    assert len(setup_block) == 2
    test_command = setup_block[1].split(" && ")
    ci_lines = [line for line in ci.splitlines() if line and not line.startswith(("#", " "))]
    assert test_command[0] == "python3 -m venv .venv" and "python3 -m venv .venv" in ci_lines
    assert shlex.split(test_command[-1]) == shlex.split(ci_lines[-1])
    assert f"pip install -q {test_command[2].removeprefix('pip install ')}" in ci_lines


def test_readme_documents_every_exit_status():
    readme = (ROOT / "README.md").read_text()

    for status in ExitStatus:
        assert f"| {status.value} | `{status.name}` |" in readme, status


def test_configuration_doc_has_a_section_for_every_part_of_cogent_toml():
    doc = (ROOT / "docs" / "configuration.md").read_text()
    headings = {line.split("`")[1] for line in doc.splitlines() if line.startswith("### `")}
    # Sections holding one table per source, alert target or audit are documented as a pattern.
    patterns = {"sources": "[sources.<system>]", "alerts": "[alerts.<name>]", "audits": "[audits.<name>]"}
    expected = {patterns.get(name, f"[{name}]") for name in Config.model_fields}

    assert expected - headings == set(), "document these sections in docs/configuration.md"
    for system in SOURCE_SYSTEMS:
        assert f"[sources.{system}]" in doc
