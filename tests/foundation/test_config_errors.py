"""Every way cogent.toml can be wrong: exact messages, exit status 2, and secrets never echoed."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from cogent_cli.cli import app
from cogent_cli.workspace import Workspace

HEAD = '[workspace]\nname = "Acme"\nid = "acme-01"\n'
FOOTER = "Fix them and run `cogent config check`."


def check(runner: CliRunner, workspace: Workspace, text: str) -> list[str]:
    workspace.config_path.write_text(text)
    result = runner.invoke(app, ["--workspace", str(workspace.root), "config", "check"])
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    return result.stderr.splitlines()


def test_toml_syntax_error_names_the_line_and_column(runner: CliRunner, workspace: Workspace):
    lines = check(runner, workspace, HEAD + "[klaviyo\nbase_url = 'x'\n")

    assert lines == [
        f"Error: {workspace.config_path} is not valid TOML: Expected ']' at the end of a table declaration "
        "(at line 4, column 9)",
        "Fix the syntax at that line; `cogent config check` re-validates without running anything.",
    ]


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (
            "[klaviyo]\nbase_urll = 'https://a.klaviyo.com'\n",
            "klaviyo.base_urll: Extra inputs are not permitted: remove it or check its spelling "
            "(see the commented template from `cogent init`)",
        ),
        (
            "[klavyio]\nrevision = '2026-07-15'\n",
            "klavyio: Extra inputs are not permitted: remove it or check its spelling "
            "(see the commented template from `cogent init`)",
        ),
        (
            "[klaviyo]\nmax_in_flight = 'many'\n",
            "klaviyo.max_in_flight: Input should be a valid integer, unable to parse string as an integer "
            "(got 'many'): change the value",
        ),
        (
            "[klaviyo]\nmax_in_flight = 0\n",
            "klaviyo.max_in_flight: Input should be greater than or equal to 1 (got 0): use a value inside that range",
        ),
        (
            "[sources.swap]\nitems_per_page = 51\n",
            "sources.swap.items_per_page: Input should be less than or equal to 50 (got 51): "
            "use a value inside that range",
        ),
        (
            "[mapping.status.peoplevox]\nShipped = 'shipped'\n",
            "mapping.status.peoplevox.Shipped: Input should be 'received', 'allocated', 'picking', 'packed', "
            "'partially_despatched', 'despatched', 'cancelled', 'on_hold' or 'ignore' (got 'shipped'): use one of: "
            "'received', 'allocated', 'picking', 'packed', 'partially_despatched', 'despatched', 'cancelled', "
            "'on_hold' or 'ignore'",
        ),
        (
            "[klaviyo]\napi_key = {env = 'HAS SPACE'}\n",
            "klaviyo.api_key.env: String should match pattern '^[A-Za-z_][A-Za-z0-9_]*$': "
            "it must match ^[A-Za-z_][A-Za-z0-9_]*$",
        ),
    ],
    ids=["unknown-key", "unknown-section", "wrong-type", "below-range", "above-range", "not-allowed", "bad-env-name"],
)
def test_one_problem_is_reported_with_its_key_path_and_fix(runner: CliRunner, workspace: Workspace, body, problem):
    lines = check(runner, workspace, HEAD + body)

    assert lines == [f"Error: {workspace.config_path} has 1 problem:", f"  - {problem}", FOOTER]


def test_missing_key_says_what_to_add_and_where(runner: CliRunner, workspace: Workspace):
    lines = check(runner, workspace, '[workspace]\nname = "Acme"\n')

    assert lines[1] == "  - workspace.id: Field required: add `id = ...` under [workspace]"


def test_missing_section_says_to_add_it(runner: CliRunner, workspace: Workspace):
    lines = check(runner, workspace, "[klaviyo]\nmax_in_flight = 8\n")

    assert (
        lines[1]
        == "  - workspace: Field required: add a [workspace] section (see the commented template from `cogent init`)"
    )


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (
            "[klaviyo]\napi_key = 'pk_live_d41d8cd98f00b204e980'\n",
            "klaviyo.api_key: secrets are never written in cogent.toml (value not shown): run `cogent auth set "
            'klaviyo`, or reference an environment variable: api_key = {env = "NAME"}',
        ),
        (
            "[sources.swap]\nwebhook_secret = 'pk_live_d41d8cd98f00b204e980'\n",
            "sources.swap.webhook_secret: secrets are never written in cogent.toml (value not shown): run `cogent "
            'auth set swap --name webhook_secret`, or reference an environment variable: webhook_secret = {env = "NAME"}',
        ),
        (
            "[sources.peoplevox]\npassword = 4815162342\n",
            "sources.peoplevox.password: secrets are never written in cogent.toml (value not shown): run `cogent "
            'auth set peoplevox`, or reference an environment variable: password = {env = "NAME"}',
        ),
        (
            "[klaviyo]\napikey = 'pk_live_d41d8cd98f00b204e980'\n",
            "klaviyo.apikey: Extra inputs are not permitted: remove it or check its spelling "
            "(see the commented template from `cogent init`)",
        ),
        (
            "[klaviyo]\napi_key = {env = 'KEY', value = 'pk_live_d41d8cd98f00b204e980'}\n",
            "klaviyo.api_key.value: Extra inputs are not permitted: remove it or check its spelling "
            "(see the commented template from `cogent init`)",
        ),
    ],
    ids=["klaviyo-key", "source-secret", "number", "misspelt-key", "inside-reference"],
)
def test_a_literal_secret_is_refused_without_echoing_it(runner: CliRunner, workspace: Workspace, body, problem):
    lines = check(runner, workspace, HEAD + body)

    assert lines == [f"Error: {workspace.config_path} has 1 problem:", f"  - {problem}", FOOTER]
    assert not any("d41d8cd98f00b204e980" in line or "4815162342" in line for line in lines)


def test_every_problem_is_listed_at_once(runner: CliRunner, workspace: Workspace):
    text = (
        '[workspace]\nname = ""\nid = "Acme!"\ntimezone = "UTC"\n'
        "[klaviyo]\nmax_in_flight = 0\ntimeout = 5\n"
        "[identity]\ndefault_region = 'gb'\n"
    )

    lines = check(runner, workspace, text)

    assert lines == [
        f"Error: {workspace.config_path} has 5 problems:",
        "  - workspace.name: String should have at least 1 character (got ''): change the value",
        "  - workspace.id: String should match pattern '^[a-z0-9][a-z0-9-]{2,63}$' (got 'Acme!'): "
        "it must match ^[a-z0-9][a-z0-9-]{2,63}$",
        "  - klaviyo.max_in_flight: Input should be greater than or equal to 1 (got 0): use a value inside that range",
        "  - klaviyo.timeout: Extra inputs are not permitted: remove it or check its spelling "
        "(see the commented template from `cogent init`)",
        "  - identity.default_region: String should match pattern '^[A-Z]{2}$' (got 'gb'): it must match ^[A-Z]{2}$",
        FOOTER,
    ]


def test_a_missing_config_file_suggests_init(runner: CliRunner, workspace: Workspace):
    workspace.config_path.unlink()
    (workspace.root / "sub").mkdir()

    result = runner.invoke(app, ["--workspace", str(workspace.root), "config", "show"])

    assert result.exit_code == 2
    assert f"{workspace.root} is not a cogent workspace (no cogent.toml)" in result.stderr


@pytest.mark.parametrize("command", [["doctor"], ["config", "show"], ["db", "info"], ["auth", "status"]])
def test_commands_that_need_the_config_refuse_a_bad_one_with_exit_2(runner: CliRunner, workspace: Workspace, command):
    workspace.config_path.write_text(HEAD + "[klaviyo]\nmax_in_flight = -1\n")

    result = runner.invoke(app, ["--workspace", str(workspace.root), *command])

    if command == ["doctor"]:
        # doctor reports the config as one failing check among its others.
        assert result.exit_code == 1
        assert "FAIL  config:" in result.stdout
    elif command == ["db", "info"]:
        # the state file can be inspected whatever the config says.
        assert result.exit_code == 0, result.output
    else:
        assert result.exit_code == 2
        assert "klaviyo.max_in_flight: Input should be greater than or equal to 1 (got -1)" in result.stderr
