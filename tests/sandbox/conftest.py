"""A running sandbox per test (real HTTP on loopback) and builders for Klaviyo request bodies."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from cogent_cli.sandbox import Sandbox, run_sandbox

HEADERS = {
    "Authorization": "Klaviyo-API-Key pk_sandbox_test_key",
    "revision": "2026-07-15",
    "Accept": "application/vnd.api+json",
    "Content-Type": "application/vnd.api+json",
}


@pytest.fixture
def headers() -> dict[str, str]:
    return dict(HEADERS)


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[Sandbox]:
    with run_sandbox(tmp_path / "sandbox") as running:
        yield running


@pytest.fixture
def api(sandbox: Sandbox) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sandbox.base_url, headers=HEADERS, timeout=10) as client:
        yield client


def event_body(
    metric: str = "Placed Order",
    unique_id: str | None = "order-1",
    profile: dict[str, Any] | None = None,
    time: str | None = "2026-07-20T12:00:00+00:00",
    **attributes: Any,
) -> dict[str, Any]:
    data: dict[str, Any] = {
        "properties": attributes.pop("properties", {"OrderId": "1"}),
        "metric": {"data": {"type": "metric", "attributes": {"name": metric}}},
        "profile": {"data": {"type": "profile", "attributes": profile or {"email": "sarah@example.com"}}},
        **attributes,
    }
    if unique_id is not None:
        data["unique_id"] = unique_id
    if time is not None:
        data["time"] = time
    return {"data": {"type": "event", "attributes": data}}


def bulk_events_body(entries: list[tuple[dict[str, Any], list[dict[str, Any]]]]) -> dict[str, Any]:
    """[(profile attributes, [event attributes...]), ...] -> an event-bulk-create-job body."""
    return {
        "data": {
            "type": "event-bulk-create-job",
            "attributes": {
                "events-bulk-create": {
                    "data": [
                        {
                            "type": "event-bulk-create",
                            "attributes": {
                                "profile": {"data": {"type": "profile", "attributes": profile}},
                                "events": {"data": [{"type": "event", "attributes": event} for event in events]},
                            },
                        }
                        for profile, events in entries
                    ]
                }
            },
        }
    }


def bulk_event(metric: str, unique_id: str, **attributes: Any) -> dict[str, Any]:
    return {
        "properties": attributes.pop("properties", {}),
        "metric": {"data": {"type": "metric", "attributes": {"name": metric}}},
        "unique_id": unique_id,
        "time": attributes.pop("time", "2026-07-20T12:00:00+00:00"),
        **attributes,
    }


def profile_body(**attributes: Any) -> dict[str, Any]:
    return {"data": {"type": "profile", "attributes": attributes}}


@pytest.fixture
def events() -> Callable[..., dict[str, Any]]:
    return event_body


@pytest.fixture
def bulk() -> Callable[..., dict[str, Any]]:
    return bulk_events_body


@pytest.fixture
def bulk_entry() -> Callable[..., dict[str, Any]]:
    return bulk_event


@pytest.fixture
def profile() -> Callable[..., dict[str, Any]]:
    return profile_body
