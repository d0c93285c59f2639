"""Shared fixtures: every test runs with its own workspace folder and an in-memory keyring."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import keyring
import pytest
import typer
import typer.testing
from keyring.backend import KeyringBackend
from typer.testing import CliRunner

from cogent_cli.logs import setup_logging
from cogent_cli.workspace import Workspace, init_workspace

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference"

_build_command = typer.testing._get_command
_built: dict[int, tuple[typer.Typer, object]] = {}


def _cached_command(app: typer.Typer) -> object:
    # CliRunner rebuilds the whole click tree on every invoke (slow with many commands); build it once per app.
    if id(app) not in _built:
        _built[id(app)] = (app, _build_command(app))
    return _built[id(app)][1]


typer.testing._get_command = _cached_command


class MemoryKeyring(KeyringBackend):
    priority = 1  # type: ignore[assignment]

    def __init__(self) -> None:
        super().__init__()
        self.passwords: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.passwords.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.passwords[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        if (service, username) not in self.passwords:
            raise keyring.errors.PasswordDeleteError(username)
        del self.passwords[(service, username)]


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[MemoryKeyring]:
    """No test sees the developer's keyring, workspace or COGENT_* variables."""
    backend = MemoryKeyring()
    previous = keyring.get_keyring()
    keyring.set_keyring(backend)
    for name in list(__import__("os").environ):
        if name.startswith("COGENT_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    yield backend
    keyring.set_keyring(previous)
    # A test that ran `cogent -vv --log-format json` must not change how the next one logs.
    setup_logging(0, "text")


@pytest.fixture
def workspace(tmp_path: Path) -> Workspace:
    return init_workspace(tmp_path / "acme", name="Acme Outdoor")


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def reference() -> Path:
    """The shared reference folder (official Klaviyo spec, source system examples)."""
    if not REFERENCE.is_dir():
        pytest.skip(f"reference material not found at {REFERENCE}")
    return REFERENCE
