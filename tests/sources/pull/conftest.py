"""Pull tests: the sandbox with its source stand-ins over HTTP, and a workspace pointed at them."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from cogent_cli.sandbox import run_sandbox
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
    """The sandbox (Klaviyo stand-in) with the source stand-ins mounted, as `cogent sandbox serve` runs it."""
    standins = SourceStandIns(data_dir)
    with run_sandbox(data_dir, extra_routes=standins.routes()) as sandbox:
        yield sandbox.base_url, standins


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> SeedResult:
    """One seeded data set per test module (the tests never write to it)."""
    return seed_sources(tmp_path_factory.mktemp("sandbox"), orders=60, seed=7)


@pytest.fixture
def served(seeded: SeedResult) -> Iterator[Served]:
    """Fresh stand-ins (own sessions, tokens, faults and added records) over the module's data set."""
    with serve(seeded.data_dir) as (base_url, standins):
        yield Served(base_url, standins, seeded)


Pointer = Callable[..., Workspace]


@pytest.fixture
def point(workspace: Workspace, served: Served, monkeypatch: pytest.MonkeyPatch) -> Pointer:
    """`point({"peoplevox": {"items_per_page": 5}})`: the workspace with the sandbox [sources.*]
    sections (plus those settings) appended to its config, and the sandbox secrets exported."""

    def pointed(settings: dict[str, dict[str, Any]] | None = None, drop_dir: Path | None = None) -> Workspace:
        text = sources_config(served.base_url, drop_dir or served.seed.drop_dir)
        for system, values in (settings or {}).items():
            lines = "".join(f"{key} = {json.dumps(value)}\n" for key, value in values.items())
            text = text.replace(f"[sources.{system}]\n", f"[sources.{system}]\n{lines}", 1)
        with workspace.config_path.open("a", encoding="utf-8") as handle:
            handle.write("\n" + text)
        for name, value in SANDBOX_CREDENTIALS.environment().items():
            monkeypatch.setenv(name, value)
        return Workspace(workspace.root)

    return pointed
