"""`cogent doctor`: is this workspace ready to run? One pass/fail line per check, each with a fix."""

from __future__ import annotations

import stat
from dataclasses import dataclass

from cogent_cli.credentials import SECRETS, Credentials
from cogent_cli.errors import CogentError
from cogent_cli.state.migrations import migrations
from cogent_cli.workspace import Workspace


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    hint: str = ""


def run_doctor(workspace: Workspace) -> list[Check]:
    checks: list[Check] = []
    try:
        config = workspace.config
    except CogentError as exc:
        return [Check("config", False, str(exc).splitlines()[0], "Fix cogent.toml and run `cogent config check`.")]
    checks.append(Check("config", True, f"{workspace.config_path} is valid"))

    if not workspace.state_path.exists():
        checks.append(Check("state", False, "no state file", "Run `cogent db migrate`."))
    else:
        from cogent_cli.state import Store

        try:
            with Store.open(workspace.state_path, migrate=False) as store:
                pending = migrations.pending(store.db)
        except CogentError as exc:
            checks.append(Check("state", False, exc.message, exc.hint or ""))
        else:
            checks.append(
                Check("state", False, f"{len(pending)} migration(s) pending", "Run `cogent db migrate`.")
                if pending
                else Check("state", True, "schema up to date")
            )
        mode = stat.S_IMODE(workspace.state_path.stat().st_mode)
        checks.append(
            Check("state permissions", True, "0600")
            if mode & 0o077 == 0
            else Check(
                "state permissions",
                False,
                f"{oct(mode)} lets other users read client data",
                f"Run `chmod 600 {workspace.state_path}`.",
            )
        )

    credentials = Credentials(config)
    for system in ("klaviyo", *config.sources.enabled()):
        name = SECRETS[system][0]
        found = credentials.lookup(system, name)
        if found:
            checks.append(Check(f"{system} credentials", True, f"{name} from {found[1]}"))
        else:
            missing = credentials.missing(system, name)
            checks.append(Check(f"{system} credentials", False, missing.message, missing.hint or ""))
    return checks
