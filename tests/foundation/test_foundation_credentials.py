"""Credentials: lookup order, `auth set|status|remove`, and a machine without a keyring."""

from __future__ import annotations

import keyring
import keyring.backends.fail
import pytest
from typer.testing import CliRunner

from cogent_cli.cli import app
from cogent_cli.credentials import Credentials
from cogent_cli.errors import CredentialError
from cogent_cli.workspace import Workspace

SECRET = "pk_live_7f3a9c1e5b2d4f6a8c0e"


def with_reference(
    workspace: Workspace, section: str = "klaviyo", line: str = 'api_key = {env = "ACME_KEY"}'
) -> Workspace:
    text = workspace.config_path.read_text().replace(f"[{section}]\n", f"[{section}]\n{line}\n", 1)
    workspace.config_path.write_text(text)
    return Workspace(workspace.root)


def test_keyring_comes_before_the_environment(workspace: Workspace, monkeypatch):
    credentials = Credentials(workspace.config)
    monkeypatch.setenv("COGENT_KLAVIYO_API_KEY", "from-the-environment")
    assert credentials.lookup("klaviyo") == ("from-the-environment", "environment")

    credentials.set("klaviyo", "from-the-keyring")

    assert credentials.lookup("klaviyo") == ("from-the-keyring", "keyring")
    assert credentials.get("klaviyo") == "from-the-keyring"


def test_a_config_reference_is_authoritative(workspace: Workspace, monkeypatch):
    credentials = Credentials(with_reference(workspace).config)
    credentials.set("klaviyo", "from-the-keyring")
    monkeypatch.setenv("COGENT_KLAVIYO_API_KEY", "from-the-environment")
    monkeypatch.setenv("ACME_KEY", "from-the-reference")

    assert credentials.lookup("klaviyo") == ("from-the-reference", "config")

    monkeypatch.delenv("ACME_KEY")
    with pytest.raises(CredentialError) as caught:
        credentials.get("klaviyo")
    assert caught.value.message == "cogent.toml reads the klaviyo api_key from $ACME_KEY, which is not set"
    assert caught.value.hint == (
        "Export ACME_KEY in this environment, or remove the reference and run `cogent auth set klaviyo`."
    )


def test_a_missing_secret_says_both_ways_to_provide_it(workspace: Workspace):
    credentials = Credentials(workspace.config)

    with pytest.raises(CredentialError) as caught:
        credentials.get("swap", "webhook_secret")

    assert str(caught.value) == (
        "No swap webhook_secret found\n"
        "Run `cogent auth set swap --name webhook_secret` or set COGENT_SWAP_WEBHOOK_SECRET."
    )
    assert caught.value.exit_status == 6


def test_keys_are_namespaced_per_workspace(tmp_path):
    from cogent_cli.workspace import init_workspace

    acme = Credentials(init_workspace(tmp_path / "acme").config)
    bergson = Credentials(init_workspace(tmp_path / "bergson").config)

    acme.set("klaviyo", SECRET)

    assert acme.lookup("klaviyo") == (SECRET, "keyring")
    assert bergson.lookup("klaviyo") is None


def test_auth_set_reads_a_hidden_prompt_and_never_echoes_it(runner: CliRunner, workspace: Workspace, isolated):
    result = runner.invoke(app, ["--workspace", str(workspace.root), "auth", "set", "klaviyo"], input=f"{SECRET}\n")

    assert result.exit_code == 0, result.output
    assert SECRET not in result.output
    service = f"cogent:{workspace.config.workspace.id}"
    assert isolated.passwords == {(service, "klaviyo.api_key"): SECRET}
    assert result.stderr.strip().endswith(f"Stored klaviyo api_key in the keyring service {service}.")


def test_auth_set_from_stdin_stores_the_trimmed_value(runner: CliRunner, workspace: Workspace, isolated):
    result = runner.invoke(
        app,
        ["--workspace", str(workspace.root), "auth", "set", "swap", "--name", "webhook_secret", "--from-stdin"],
        input=f"  {SECRET}\n",
    )

    assert result.exit_code == 0, result.output
    assert list(isolated.passwords.values()) == [SECRET]
    assert SECRET not in result.output


def test_auth_set_refuses_an_empty_value(runner: CliRunner, workspace: Workspace, isolated):
    result = runner.invoke(
        app, ["--workspace", str(workspace.root), "auth", "set", "klaviyo", "--from-stdin"], input="\n"
    )

    assert result.exit_code == 2
    assert result.stderr.splitlines() == ["Error: Refusing to store an empty klaviyo api_key", "Paste the value again."]
    assert isolated.passwords == {}


@pytest.mark.parametrize(
    ("args", "lines"),
    [
        (
            ["shopify"],
            ["Error: Unknown system 'shopify'", "Use one of: klaviyo, peoplevox, clarus, scend, swap, marketplacer."],
        ),
        (
            ["klaviyo", "--name", "password"],
            ["Error: klaviyo has no secret called 'password'", "klaviyo secrets: api_key."],
        ),
    ],
)
def test_auth_set_refuses_unknown_systems_and_names_before_asking(runner: CliRunner, workspace: Workspace, args, lines):
    result = runner.invoke(app, ["--workspace", str(workspace.root), "auth", "set", *args])

    assert result.exit_code == 2
    assert result.stderr.splitlines() == lines


def test_without_a_keyring_auth_set_explains_the_environment_route(runner: CliRunner, workspace: Workspace):
    keyring.set_keyring(keyring.backends.fail.Keyring())

    result = runner.invoke(app, ["--workspace", str(workspace.root), "auth", "set", "klaviyo"])

    assert result.exit_code == 6
    assert result.stderr.splitlines() == [
        "Error: No system keyring is available on this machine to store the klaviyo api_key",
        "On a headless machine or under cron, export COGENT_KLAVIYO_API_KEY instead "
        '(or reference your own variable in cogent.toml: api_key = {env = "NAME"}).',
    ]
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_without_a_keyring_lookups_still_use_the_environment(workspace: Workspace, monkeypatch, runner: CliRunner):
    keyring.set_keyring(keyring.backends.fail.Keyring())
    monkeypatch.setenv("COGENT_KLAVIYO_API_KEY", SECRET)

    assert Credentials(workspace.config).lookup("klaviyo") == (SECRET, "environment")
    result = runner.invoke(app, ["--workspace", str(workspace.root), "auth", "status"])
    assert result.exit_code == 0, result.output


def test_auth_status_says_where_each_secret_comes_from_and_never_its_value(
    runner: CliRunner, workspace: Workspace, monkeypatch
):
    workspace = with_reference(workspace, "klaviyo", 'api_key = {env = "ACME_KEY"}')
    monkeypatch.setenv("ACME_KEY", SECRET)
    monkeypatch.setenv("COGENT_SWAP_API_KEY", SECRET + "-swap")
    Credentials(workspace.config).set("marketplacer", SECRET + "-mp")

    result = runner.invoke(app, ["--workspace", str(workspace.root), "auth", "status"], env={"COLUMNS": "200"})

    assert result.exit_code == 0, result.output
    assert SECRET not in result.output
    rows = {tuple(line.split("│")[1:3]): line for line in result.stdout.splitlines() if line.count("│") == 5}
    row = {(s.strip(), n.strip()): line for (s, n), line in rows.items()}
    assert "config" in row[("klaviyo", "api_key")] and "cogent.toml -> $ACME_KEY" in row[("klaviyo", "api_key")]
    assert "environment" in row[("swap", "api_key")] and "$COGENT_SWAP_API_KEY" in row[("swap", "api_key")]
    assert "keyring" in row[("marketplacer", "api_key")]
    assert "missing" in row[("clarus", "client_secret")]


def test_auth_remove_deletes_the_keyring_entry(runner: CliRunner, workspace: Workspace, isolated):
    Credentials(workspace.config).set("klaviyo", SECRET)

    removed = runner.invoke(app, ["--workspace", str(workspace.root), "auth", "remove", "klaviyo"])
    again = runner.invoke(app, ["--workspace", str(workspace.root), "auth", "remove", "klaviyo"])

    assert removed.exit_code == 0, removed.output
    assert removed.stderr.strip() == "Removed klaviyo api_key from the keyring."
    assert isolated.passwords == {}
    assert again.exit_code == 6
    assert again.stderr.splitlines() == [
        "Error: No klaviyo api_key is stored in the keyring for this workspace",
        "`cogent auth status` shows where each credential comes from.",
    ]


def test_doctor_checks_credentials_for_klaviyo_and_each_enabled_source(
    runner: CliRunner, workspace: Workspace, monkeypatch
):
    workspace = with_reference(workspace, "klaviyo", "")
    text = workspace.config_path.read_text() + '\n[sources.swap]\nstore_id = "store_1"\n'
    workspace.config_path.write_text(text)
    monkeypatch.setenv("COGENT_KLAVIYO_API_KEY", SECRET)

    result = runner.invoke(app, ["--workspace", str(workspace.root), "doctor"])

    assert result.exit_code == 1
    assert "pass  klaviyo credentials: api_key from environment" in result.stdout
    assert "FAIL  swap credentials: No swap api_key found" in result.stdout
    assert "      fix: Run `cogent auth set swap` or set COGENT_SWAP_API_KEY." in result.stdout
    assert SECRET not in result.output
