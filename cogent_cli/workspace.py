"""A client workspace: a folder holding `cogent.toml` and the state file `.cogent/state.db`."""

from __future__ import annotations

import logging
import os
import re
import secrets
from dataclasses import dataclass, field
from functools import cached_property
from importlib import resources
from pathlib import Path
from string import Template

from cogent_cli.config import Config, load_config, parse_config
from cogent_cli.errors import WorkspaceExistsError, WorkspaceNotFoundError

CONFIG_NAME = "cogent.toml"
STATE_DIR = ".cogent"
STATE_NAME = "state.db"
WORKSPACE_ENV = "COGENT_WORKSPACE"

log = logging.getLogger(__name__)


@dataclass
class Workspace:
    root: Path
    _config: Config | None = field(default=None, repr=False)

    @property
    def config_path(self) -> Path:
        return self.root / CONFIG_NAME

    @property
    def state_path(self) -> Path:
        return self.root / STATE_DIR / STATE_NAME

    @cached_property
    def config(self) -> Config:
        return self._config or load_config(self.config_path)

    def store(self):  # -> Store; imported lazily to keep start-up light
        from cogent_cli.state import Store

        return Store.open(self.state_path)


def find_workspace(explicit: Path | None = None, start: Path | None = None) -> Workspace:
    """The workspace named by `--workspace`, else $COGENT_WORKSPACE, else the nearest one upwards."""
    named = explicit or (Path(os.environ[WORKSPACE_ENV]) if os.environ.get(WORKSPACE_ENV) else None)
    if named is not None:
        root = named.expanduser().resolve()
        if not (root / CONFIG_NAME).is_file():
            origin = "--workspace" if explicit else WORKSPACE_ENV
            raise WorkspaceNotFoundError(
                f"{root} is not a cogent workspace (no {CONFIG_NAME}); it was named by {origin}",
                hint=f"Run `cogent init {root}` to create one, or point {origin} at an existing workspace.",
            )
        log.info("workspace %s (named by %s)", root, "--workspace" if explicit else WORKSPACE_ENV)
        return Workspace(root)
    here = (start or Path.cwd()).resolve()
    for candidate in (here, *here.parents):
        if (candidate / CONFIG_NAME).is_file():
            log.info("workspace %s (found from %s)", candidate, here)
            return Workspace(candidate)
    raise WorkspaceNotFoundError(
        f"Not inside a cogent workspace (no {CONFIG_NAME} in {here} or any folder above it)",
        hint="Run `cogent init` to create one here, or pass --workspace PATH / set COGENT_WORKSPACE.",
    )


def _slug(name: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:40]
    return slug or "workspace"


def render_template(name: str) -> str:
    template = resources.files("cogent_cli.templates").joinpath("cogent.toml").read_text(encoding="utf-8")
    workspace_id = f"{_slug(name)}-{secrets.token_hex(3)}"
    return Template(template).substitute(name=name.replace('"', "'"), id=workspace_id)


def init_workspace(directory: Path, name: str | None = None) -> Workspace:
    """Create cogent.toml (commented) and a migrated, private state file in `directory`."""
    root = directory.expanduser().resolve()
    config_path = root / CONFIG_NAME
    if config_path.exists():
        raise WorkspaceExistsError(
            f"{config_path} already exists",
            hint="This folder is already a workspace; `cogent doctor` checks it.",
        )
    root.mkdir(parents=True, exist_ok=True)
    text = render_template(name or root.name)
    config = parse_config(text, config_path)
    config_path.write_text(text, encoding="utf-8")
    workspace = Workspace(root, _config=config)
    workspace.store().close()
    return workspace
