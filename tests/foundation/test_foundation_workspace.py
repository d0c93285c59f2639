"""`cogent init` and how every other command finds its workspace."""

from __future__ import annotations

import sqlite3
import stat
import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cogent_cli.cli import app
from cogent_cli.config import parse_config
from cogent_cli.workspace import Workspace, find_workspace


def test_init_writes_a_commented_config_that_validates_and_a_private_wal_state_file(runner: CliRunner, tmp_path):
    result = runner.invoke(app, ["init", str(tmp_path / "acme"), "--name", "Acme Outdoor"])

    assert result.exit_code == 0, result.output
    config_path = tmp_path / "acme" / "cogent.toml"
    text = config_path.read_text()
    assert sum(line.lstrip().startswith("#") for line in text.splitlines()) >= 20
    config = parse_config(text, config_path)
    assert config.workspace.name == "Acme Outdoor"
    assert config.workspace.id.startswith("acme-outdoor-")
    assert config.klaviyo.base_url == "https://a.klaviyo.com"
    assert config.klaviyo.revision == "2026-07-15"
    state = tmp_path / "acme" / ".cogent" / "state.db"
    assert stat.S_IMODE(state.stat().st_mode) == 0o600
    with sqlite3.connect(state) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert f"Created workspace Acme Outdoor in {tmp_path / 'acme'}" in result.stderr


def test_init_defaults_the_name_to_the_folder_and_the_folder_to_cwd(runner: CliRunner, tmp_path, monkeypatch):
    (tmp_path / "bergson-bikes").mkdir()
    monkeypatch.chdir(tmp_path / "bergson-bikes")

    result = runner.invoke(app, ["init"])

    assert result.exit_code == 0, result.output
    raw = tomllib.loads((tmp_path / "bergson-bikes" / "cogent.toml").read_text())
    assert raw["workspace"]["name"] == "bergson-bikes"


def test_every_section_the_template_shows_commented_out_is_valid_when_uncommented(workspace: Workspace):
    text = workspace.config_path.read_text()
    uncommented = "\n".join(
        line.removeprefix("# ") if line.startswith(("# [", "# base_url", "# subdomain", "# drop_dir")) else line
        for line in text.splitlines()
    )
    assert "[sources.peoplevox]" in uncommented
    parse_config(uncommented, workspace.config_path)


def test_init_refuses_an_existing_workspace_with_exit_2(runner: CliRunner, workspace: Workspace):
    before = workspace.config_path.read_text()

    result = runner.invoke(app, ["init", str(workspace.root)])

    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        f"Error: {workspace.config_path} already exists",
        "This folder is already a workspace; `cogent doctor` checks it.",
    ]
    assert workspace.config_path.read_text() == before


def test_commands_find_the_workspace_from_a_folder_below_it(runner: CliRunner, workspace: Workspace, monkeypatch):
    deep = workspace.root / "exports" / "2026"
    deep.mkdir(parents=True)
    monkeypatch.chdir(deep)

    result = runner.invoke(app, ["config", "check"])

    assert result.exit_code == 0, result.output
    assert result.stderr.strip() == f"{workspace.config_path} is valid (sources enabled: none)."
    assert find_workspace().root == workspace.root


def test_workspace_option_names_the_workspace_from_anywhere(runner: CliRunner, workspace: Workspace):
    result = runner.invoke(app, ["--workspace", str(workspace.root), "config", "check"])

    assert result.exit_code == 0, result.output
    assert str(workspace.config_path) in result.stderr


def test_cogent_workspace_variable_names_the_workspace(runner: CliRunner, workspace: Workspace, monkeypatch):
    monkeypatch.setenv("COGENT_WORKSPACE", str(workspace.root))

    result = runner.invoke(app, ["config", "check"])

    assert result.exit_code == 0, result.output
    assert str(workspace.config_path) in result.stderr


def test_workspace_option_wins_over_the_variable_and_the_cwd(runner: CliRunner, tmp_path, monkeypatch):
    for name in ("one", "two", "three"):
        runner.invoke(app, ["init", str(tmp_path / name)])
    monkeypatch.chdir(tmp_path / "one")
    monkeypatch.setenv("COGENT_WORKSPACE", str(tmp_path / "two"))

    assert find_workspace().root == tmp_path / "two"
    assert find_workspace(tmp_path / "three").root == tmp_path / "three"


def test_outside_a_workspace_commands_say_so_and_suggest_init(runner: CliRunner, tmp_path):
    result = runner.invoke(app, ["config", "check"])

    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"Error: Not inside a cogent workspace (no cogent.toml in {tmp_path} or any folder above it)",
        "Run `cogent init` to create one here, or pass --workspace PATH / set COGENT_WORKSPACE.",
    ]


@pytest.mark.parametrize(
    ("args", "env", "origin"),
    [(["--workspace", "{path}"], {}, "--workspace"), ([], {"COGENT_WORKSPACE": "{path}"}, "COGENT_WORKSPACE")],
)
def test_a_named_folder_without_cogent_toml_is_refused_naming_where_it_came_from(
    runner: CliRunner, tmp_path: Path, monkeypatch, args, env, origin
):
    empty = tmp_path / "not-a-workspace"
    empty.mkdir()
    for key, value in env.items():
        monkeypatch.setenv(key, value.format(path=empty))

    result = runner.invoke(app, [*(a.format(path=empty) for a in args), "doctor"])

    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        f"Error: {empty} is not a cogent workspace (no cogent.toml); it was named by {origin}",
        f"Run `cogent init {empty}` to create one, or point {origin} at an existing workspace.",
    ]
