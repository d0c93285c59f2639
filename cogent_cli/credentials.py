"""Credentials: the system keyring per workspace, with environment variables for cron.

Lookup order for each secret:
1. a reference in cogent.toml (`api_key = {env = "NAME"}`): authoritative when present;
2. the system keyring, service `cogent:<workspace id>`, user `<system>.<name>`;
3. the environment variable `COGENT_<SYSTEM>_<NAME>` (e.g. COGENT_KLAVIYO_API_KEY).
Values are registered with the log redactor the moment they are read.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Literal

import keyring
import keyring.errors

from cogent_cli.config import SECRETS, Config, EnvRef
from cogent_cli.errors import CredentialError, KeyringUnavailableError, UsageError
from cogent_cli.logs import register_secret

Origin = Literal["config", "keyring", "environment"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CredentialStatus:
    system: str
    name: str
    origin: Origin | None
    detail: str


def env_var_name(system: str, name: str) -> str:
    return f"COGENT_{system.upper()}_{name.upper()}"


def check_secret_name(system: str, name: str | None) -> str:
    if system not in SECRETS:
        raise UsageError(
            f"Unknown system {system!r}",
            hint=f"Use one of: {', '.join(SECRETS)}.",
        )
    names = SECRETS[system]
    chosen = name or names[0]
    if chosen not in names:
        raise UsageError(
            f"{system} has no secret called {chosen!r}",
            hint=f"{system} secrets: {', '.join(names)}.",
        )
    return chosen


class Credentials:
    """Reads and writes one workspace's secrets."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.service = f"cogent:{config.workspace.id}"

    def _config_ref(self, system: str, name: str) -> EnvRef | None:
        section = self.config.klaviyo if system == "klaviyo" else getattr(self.config.sources, system, None)
        ref = getattr(section, name, None) if section is not None else None
        return ref if isinstance(ref, EnvRef) else None

    def _from_keyring(self, system: str, name: str) -> str | None:
        try:
            return keyring.get_password(self.service, f"{system}.{name}")
        except (keyring.errors.KeyringError, RuntimeError):
            return None

    def lookup(self, system: str, name: str | None = None) -> tuple[str, Origin] | None:
        name = check_secret_name(system, name)
        ref = self._config_ref(system, name)
        if ref is not None:
            value = os.environ.get(ref.env)
            found: tuple[str, Origin] | None = (value, "config") if value else None
        elif value := self._from_keyring(system, name):
            found = (value, "keyring")
        elif value := os.environ.get(env_var_name(system, name)):
            found = (value, "environment")
        else:
            found = None
        if found:
            register_secret(found[0])
            log.info("%s %s read from %s", system, name, found[1])
        return found

    def get(self, system: str, name: str | None = None) -> str:
        """The secret's value, or a CredentialError saying how to provide it."""
        name = check_secret_name(system, name)
        found = self.lookup(system, name)
        if found:
            return found[0]
        raise self.missing(system, name)

    def missing(self, system: str, name: str) -> CredentialError:
        """The error that says how to provide a secret that was not found."""
        ref = self._config_ref(system, name)
        if ref is not None:
            return CredentialError(
                f"cogent.toml reads the {system} {name} from ${ref.env}, which is not set",
                hint=f"Export {ref.env} in this environment, or remove the reference and run "
                f"`cogent auth set {system}`.",
            )
        flag = "" if name == SECRETS[system][0] else f" --name {name}"
        return CredentialError(
            f"No {system} {name} found",
            hint=f"Run `cogent auth set {system}{flag}` or set {env_var_name(system, name)}.",
        )

    def status(self) -> list[CredentialStatus]:
        rows = []
        for system, names in SECRETS.items():
            for name in names:
                ref = self._config_ref(system, name)
                found = self.lookup(system, name)
                if found is None:
                    detail = f"${ref.env} is not set" if ref else "not set"
                    rows.append(CredentialStatus(system, name, None, detail))
                    continue
                origin = found[1]
                detail = {
                    "config": f"cogent.toml -> ${ref.env if ref else ''}",
                    "keyring": f"keyring service {self.service}",
                    "environment": f"${env_var_name(system, name)}",
                }[origin]
                rows.append(CredentialStatus(system, name, origin, detail))
        return rows

    def check_writable(self, system: str, name: str | None = None, action: str = "store") -> str:
        """Validate the secret's name and that a keyring can hold it; returns the name."""
        name = check_secret_name(system, name)
        backend = keyring.get_keyring()
        if backend.priority <= 0 or type(backend).__module__.startswith("keyring.backends.fail"):
            raise KeyringUnavailableError(
                f"No system keyring is available on this machine to {action} the {system} {name}",
                hint=f"On a headless machine or under cron, export {env_var_name(system, name)} instead "
                f'(or reference your own variable in cogent.toml: {name} = {{env = "NAME"}}).',
            )
        return name

    def set(self, system: str, value: str, name: str | None = None) -> str:
        name = self.check_writable(system, name)
        value = value.strip()
        if not value:
            raise UsageError(f"Refusing to store an empty {system} {name}", hint="Paste the value again.")
        register_secret(value)
        try:
            keyring.set_password(self.service, f"{system}.{name}", value)
        except keyring.errors.KeyringError as exc:
            raise KeyringUnavailableError(
                f"The system keyring refused to store the {system} {name}: {type(exc).__name__}",
                hint=f"Unlock the keyring and retry, or export {env_var_name(system, name)} instead.",
            ) from None
        return name

    def remove(self, system: str, name: str | None = None) -> str:
        name = self.check_writable(system, name, action="remove")
        try:
            keyring.delete_password(self.service, f"{system}.{name}")
        except keyring.errors.PasswordDeleteError:
            raise CredentialError(
                f"No {system} {name} is stored in the keyring for this workspace",
                hint="`cogent auth status` shows where each credential comes from.",
            ) from None
        return name
