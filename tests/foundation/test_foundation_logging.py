"""Logging on stderr as text or JSON lines, and secrets kept out of logs, errors and `config show`."""

from __future__ import annotations

import json
import logging

import pytest
import typer
from typer.testing import CliRunner

from cogent_cli.cli import CogentGroup, app
from cogent_cli.credentials import Credentials
from cogent_cli.errors import CogentError
from cogent_cli.logs import register_secret, setup_logging
from cogent_cli.workspace import Workspace

SECRET = "pk_live_0c9b8a7d6e5f4a3b2c1d"


def referencing(workspace: Workspace, env: str = "ACME_KLAVIYO_KEY") -> Workspace:
    text = workspace.config_path.read_text().replace("[klaviyo]\n", f'[klaviyo]\napi_key = {{env = "{env}"}}\n', 1)
    workspace.config_path.write_text(text)
    return Workspace(workspace.root)


def json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_verbose_json_logging_writes_one_json_object_per_stderr_line(runner: CliRunner, workspace: Workspace):
    result = runner.invoke(app, ["-v", "--log-format", "json", "--workspace", str(workspace.root), "doctor"])

    assert result.exit_code == 1
    entries = json_lines(result.stderr)
    assert all({"ts", "level", "logger", "message"} <= set(entry) for entry in entries)
    assert {"level": "info", "logger": "cogent_cli.workspace"}.items() <= entries[0].items()
    assert entries[0]["message"] == f"workspace {workspace.root} (named by --workspace)"
    assert entries[-1]["message"] == "1 check(s) failed."
    assert "FAIL  klaviyo credentials" in result.stdout


def test_without_verbose_info_lines_are_not_logged(runner: CliRunner, workspace: Workspace):
    result = runner.invoke(app, ["--workspace", str(workspace.root), "config", "check"])

    assert result.stderr.strip() == f"{workspace.config_path} is valid (sources enabled: none)."


def test_errors_in_json_mode_are_one_object_with_hint_problems_and_exit_status(runner: CliRunner, workspace: Workspace):
    workspace.config_path.write_text('[workspace]\nname = "Acme"\nid = "acme-01"\nbogus = 1\n')

    result = runner.invoke(app, ["--log-format", "json", "--workspace", str(workspace.root), "config", "check"])

    assert result.exit_code == 2
    [entry] = json_lines(result.stderr)
    assert entry["level"] == "error"
    assert entry["message"] == f"{workspace.config_path} has 1 problem:"
    assert entry["problems"] == [
        "workspace.bogus: Extra inputs are not permitted: remove it or check its spelling "
        "(see the commented template from `cogent init`)"
    ]
    assert entry["hint"] == "Fix them and run `cogent config check`."
    assert entry["exit_status"] == 2


def test_an_unknown_log_format_is_a_usage_error(runner: CliRunner):
    result = runner.invoke(app, ["--log-format", "xml", "doctor"])

    assert result.exit_code == 2
    assert "use text or json" in result.stderr


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_a_secret_read_once_is_redacted_from_every_later_log_line(workspace: Workspace, monkeypatch, capsys, fmt):
    monkeypatch.setenv("COGENT_KLAVIYO_API_KEY", SECRET)
    setup_logging(2, fmt)
    Credentials(workspace.config).get("klaviyo")

    logging.getLogger("cogent_cli.klaviyo").warning("request failed with key %s", SECRET)
    try:
        raise RuntimeError(f"rejected {SECRET}")
    except RuntimeError:
        logging.getLogger("cogent_cli.klaviyo").exception("retrying")

    err = capsys.readouterr().err
    assert SECRET not in err
    assert "request failed with key ***" in err
    assert "rejected ***" in err
    if fmt == "json":
        assert all(entry["logger"].startswith("cogent_cli") for entry in json_lines(err))


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_no_secret_reaches_the_output_of_a_verbose_run(runner: CliRunner, workspace: Workspace, monkeypatch, fmt: str):
    workspace = referencing(workspace)
    monkeypatch.setenv("ACME_KLAVIYO_KEY", SECRET)
    Credentials(workspace.config).set("swap", SECRET + "-swap")

    for command in (["doctor"], ["auth", "status"], ["config", "show"], ["config", "check"]):
        result = runner.invoke(app, ["-vv", "--log-format", fmt, "--workspace", str(workspace.root), *command])
        assert SECRET not in result.output, command


def test_config_show_masks_secrets_and_fills_in_defaults(runner: CliRunner, workspace: Workspace, monkeypatch):
    workspace = referencing(workspace)
    monkeypatch.setenv("ACME_KLAVIYO_KEY", SECRET)
    Credentials(workspace.config).get("klaviyo")

    result = runner.invoke(app, ["--workspace", str(workspace.root), "config", "show"])

    assert result.exit_code == 0, result.output
    assert SECRET not in result.stdout
    shown = json.loads(result.stdout)
    assert shown["klaviyo"]["api_key"] == "<from environment variable ACME_KLAVIYO_KEY>"
    assert shown["klaviyo"]["base_url"] == "https://a.klaviyo.com"
    assert shown["klaviyo"]["revision"] == "2026-07-15"
    assert shown["workspace"]["name"] == "Acme Outdoor"
    assert shown["owners"]["unmapped_ship_method"] == "ops"


def test_error_messages_are_redacted_at_the_translation_point(runner: CliRunner):
    register_secret(SECRET)
    demo = typer.Typer(cls=CogentGroup)

    @demo.callback()
    def root() -> None:
        """Demo."""

    @demo.command()
    def call() -> None:
        """Fail with a message that quotes the key."""
        raise CogentError(f"Klaviyo rejected the key {SECRET}", hint="Run `cogent auth set klaviyo`.")

    result = runner.invoke(demo, ["call"])

    assert result.exit_code == 1
    assert result.stderr.splitlines() == ["Error: Klaviyo rejected the key ***", "Run `cogent auth set klaviyo`."]
