"""Helpers for the pull tests: the source stand-ins served over HTTP and a workspace pointed at them."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from starlette.applications import Starlette

from cogent_cli.sandbox.seed import SeedResult, seed_sources
from cogent_cli.sandbox.sources import SANDBOX_CREDENTIALS, SourceStandIns, sources_config
from cogent_cli.workspace import Workspace


@dataclass
class Served:
    base_url: str
    standins: SourceStandIns
    seed: SeedResult


@contextmanager
def serve(data_dir: Path) -> Iterator[tuple[str, SourceStandIns]]:
    standins = SourceStandIns(data_dir)
    server = uvicorn.Server(
        uvicorn.Config(Starlette(routes=standins.routes()), host="127.0.0.1", port=0, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("stand-in server did not start")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", standins
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> SeedResult:
    """One seeded data set per test module (the tests never write to it)."""
    return seed_sources(tmp_path_factory.mktemp("sandbox"), orders=60, seed=7)


@pytest.fixture
def served(seeded: SeedResult) -> Iterator[Served]:
    """Fresh stand-ins (own sessions, tokens, faults and added records) over the module's data set."""
    with serve(seeded.data_dir) as (base_url, standins):
        yield Served(base_url, standins, seeded)


def point_at(
    workspace: Workspace,
    served: Served,
    monkeypatch: pytest.MonkeyPatch,
    settings: dict[str, dict[str, Any]] | None = None,
    drop_dir: Path | None = None,
) -> Workspace:
    """Append the sandbox [sources.*] sections (plus `settings` per system) to the workspace config
    and export the sandbox secrets."""
    text = sources_config(served.base_url, drop_dir or served.seed.drop_dir)
    for system, values in (settings or {}).items():
        lines = "".join(f"{key} = {json.dumps(value)}\n" for key, value in values.items())
        text = text.replace(f"[sources.{system}]\n", f"[sources.{system}]\n{lines}", 1)
    with workspace.config_path.open("a", encoding="utf-8") as handle:
        handle.write("\n" + text)
    for name, value in SANDBOX_CREDENTIALS.environment().items():
        monkeypatch.setenv(name, value)
    return Workspace(workspace.root)
