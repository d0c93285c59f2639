"""Planting facts (the `events` table) and a Klaviyo mirror into a workspace's state file."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from itertools import count
from typing import Any

import pytest

from cogent_cli.config import Config
from cogent_cli.events import Source, dump_event, make_event
from cogent_cli.state import Store
from cogent_cli.workspace import Workspace

NOW = datetime.now(UTC).replace(microsecond=0)
_ids = count(1)


def iso(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Plant:
    """Writes facts and mirrored Klaviyo data the way the sources part and `cogent pull klaviyo` do."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.db = store.db

    def fact(
        self,
        event_type: str,
        data: dict[str, Any],
        *,
        order: str | None = None,
        email: str | None = None,
        hours_ago: float = 48,
        system: str = "peoplevox",
    ) -> str:
        occurred = NOW - timedelta(hours=hours_ago)
        event = make_event(
            event_type,  # type: ignore[arg-type]
            source=Source(system=system, tenant="acme", transport="poll", dedupe_key=f"k{next(_ids)}"),
            occurred_at=occurred,
            data=data,
            customer={"email": email} if email else None,
            order_ref={"order_number": order} if order else None,
        )
        self.db["events"].insert(
            {
                "event_id": event.event_id,
                "event_type": event_type,
                "system": system,
                "tenant": "acme",
                "occurred_at": iso(occurred),
                "received_at": iso(occurred),
                "order_number": order,
                "email": email,
                "inbox_id": None,
                "body": json.dumps(dump_event(event)),
            },
            pk="event_id",
        )
        return event.event_id

    def mirrored(self, window_days: int = 90) -> None:
        """Record a completed pull, as `cogent pull klaviyo` does."""
        self.db["mirror_cursors"].upsert_all(
            [
                {"stream": "metrics", "high_water": iso(NOW), "done": 1, "updated_at": iso(NOW)},
                {
                    "stream": "events:any",
                    "window_start": iso(NOW - timedelta(days=window_days)),
                    "high_water": iso(NOW),
                    "done": 1,
                    "updated_at": iso(NOW),
                },
            ],
            pk="stream",
        )

    def profile(self, id: str, **fields: Any) -> None:
        row = {"id": id, "properties": "{}", "subscriptions": "{}", **fields}
        if isinstance(row["properties"], dict):
            row["properties"] = json.dumps(row["properties"])
        self.db["klaviyo_profiles"].insert(row, pk="id")

    def klaviyo_event(
        self,
        metric: str,
        *,
        order: str | None = None,
        profile: str = "P1",
        unique_id: str | None = None,
        source_event_id: str | None = None,
        value: float | None = None,
        integration: str | None = "API",
        metric_id: str | None = None,
        hours_ago: float = 24,
    ) -> str:
        event_id = f"KE{next(_ids)}"
        properties = {"OrderId": order, "SourceEventId": source_event_id, "$event_id": unique_id}
        self.db["klaviyo_events"].insert(
            {
                "id": event_id,
                "metric_id": metric_id or f"{metric}:{integration}",
                "metric_name": metric,
                "integration_name": integration,
                "profile_id": profile,
                "datetime": iso(NOW - timedelta(hours=hours_ago)),
                "unique_id": unique_id,
                "value": value,
                "order_number": order,
                "source_event_id": source_event_id,
                "properties": json.dumps({k: v for k, v in properties.items() if v is not None}),
            },
            pk="id",
        )
        return event_id

    def variant(self, sku: str, quantity: int) -> None:
        self.db["klaviyo_variants"].insert(
            {"id": f"$custom:::$default:::{sku}", "sku": sku, "inventory_quantity": quantity}, pk="id"
        )


@pytest.fixture
def store(workspace: Workspace) -> Iterator[Store]:
    with workspace.store() as opened:
        yield opened


@pytest.fixture
def plant(store: Store) -> Plant:
    return Plant(store)


def money(amount: str, currency: str = "GBP") -> dict[str, str]:
    return {"amount": amount, "currency": currency}


def configured(workspace: Workspace, **sections: dict[str, Any]) -> Config:
    """The workspace's configuration with these sections replaced."""
    data = workspace.config.model_dump(exclude_unset=True)
    return Config.model_validate({**data, **sections})


def run_audit(store: Store, workspace: Workspace, name: str, config: Any = None):
    from cogent_cli.audits import AuditRunner, load_registry

    runner = AuditRunner(store, config or workspace.config, load_registry(workspace.root))
    [result] = runner.run([name])
    assert result.ok, result.error
    return result
