"""Fixtures of the sync tests; the helpers they use are in sync_fakes.py."""

from __future__ import annotations

from typing import Any

import pytest
from sync_fakes import API_KEY, FakeKlaviyo


@pytest.fixture
def fake() -> FakeKlaviyo:
    return FakeKlaviyo()


@pytest.fixture
def sandbox(tmp_path: Any, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> Any:
    """The sandbox; a test module's SANDBOX_JOB_SECONDS makes its bulk jobs read processing that long."""
    from cogent_cli.sandbox.server import run_sandbox

    monkeypatch.setenv("COGENT_KLAVIYO_API_KEY", API_KEY)
    job_seconds = getattr(request.module, "SANDBOX_JOB_SECONDS", 0.0)
    with run_sandbox(tmp_path / "sandbox", rate_scale=100.0, job_seconds=job_seconds) as running:
        yield running
