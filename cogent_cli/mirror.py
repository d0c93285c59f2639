"""The Klaviyo mirror: what audits need from Klaviyo, copied into the state file.

`pull_klaviyo` copies metrics, profiles (identifiers, location, properties, subscriptions), catalog
variants with inventory, and the events of the metrics cogent writes plus the storefront's own order
metrics. Profiles and events are read oldest first and committed in chunks together with a cursor,
so an interrupted pull resumes where it stopped; upserts make the overlap harmless.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from cogent_cli.audits.context import order_number_of
from cogent_cli.config import Config
from cogent_cli.klaviyo.models import CatalogVariant, KlaviyoEvent, Metric, Profile
from cogent_cli.state import Store
from cogent_cli.workspace import Workspace

# The storefront's native integration sends these; audits compare them with cogent's own events.
NATIVE_ORDER_METRICS = ("Placed Order", "Fulfilled Order", "Cancelled Order", "Canceled Order", "Refunded Order")
DEFAULT_WINDOW = timedelta(days=90)
CHUNK = 200
# Klaviyo's `updated` filter is strictly greater-than; step back so equal timestamps are not skipped.
OVERLAP = timedelta(seconds=1)

Progress = Callable[[str, int], None]
ClientFactory = Callable[[Config], AbstractAsyncContextManager[Any]]


@dataclass
class MirrorSummary:
    counts: dict[str, int] = field(default_factory=dict)

    def add(self, stream: str, count: int) -> None:
        self.counts[stream] = self.counts.get(stream, 0) + count


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if value else None


def _parse(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


def mirrored_metric_names(config: Config) -> set[str]:
    metrics = config.metrics.model_dump()
    return {value for value in metrics.values() if isinstance(value, str) and value} | set(NATIVE_ORDER_METRICS)


def _consent(subscriptions: dict[str, Any] | None, channel: str) -> tuple[str | None, str | None]:
    marketing = ((subscriptions or {}).get(channel) or {}).get("marketing") or {}
    return marketing.get("consent"), marketing.get("consent_timestamp") or marketing.get("last_updated")


def profile_row(profile: Profile, stamp: str) -> dict[str, Any]:
    location = profile.location or {}
    email_consent, email_at = _consent(profile.subscriptions, "email")
    sms_consent, sms_at = _consent(profile.subscriptions, "sms")
    return {
        "id": profile.id,
        "email": profile.email,
        "phone_number": profile.phone_number,
        "external_id": profile.external_id,
        "first_name": profile.first_name,
        "last_name": profile.last_name,
        "organization": profile.organization,
        "address1": location.get("address1"),
        "address2": location.get("address2"),
        "city": location.get("city"),
        "region": location.get("region"),
        "zip": location.get("zip"),
        "country": location.get("country"),
        "properties": json.dumps(profile.properties, default=str),
        "subscriptions": json.dumps(profile.subscriptions or {}, default=str),
        "email_consent": email_consent,
        "email_consent_at": email_at,
        "sms_consent": sms_consent,
        "sms_consent_at": sms_at,
        "created": _iso(profile.created),
        "updated": _iso(profile.updated),
        "last_event_date": _iso(profile.last_event_date),
        "mirrored_at": stamp,
    }


def event_row(event: KlaviyoEvent, metric: Metric) -> dict[str, Any]:
    properties = event.event_properties
    value = properties.get("$value")
    return {
        "id": event.id,
        "metric_id": metric.id,
        "metric_name": metric.name,
        "integration_name": (metric.integration or {}).get("name"),
        "profile_id": event.profile_id,
        "datetime": _iso(event.datetime),
        "unique_id": properties.get("$event_id"),
        "value": float(value) if isinstance(value, int | float | str) and str(value) else None,
        "order_number": order_number_of(properties),
        "source_event_id": properties.get("SourceEventId"),
        "properties": json.dumps(properties, default=str),
    }


def variant_row(variant: CatalogVariant, stamp: str) -> dict[str, Any]:
    return {
        "id": variant.id,
        "sku": variant.sku,
        "external_id": variant.external_id,
        "item_id": None,
        "title": variant.title,
        "inventory_quantity": int(variant.inventory_quantity) if variant.inventory_quantity is not None else None,
        "inventory_policy": variant.inventory_policy,
        "published": None if variant.published is None else int(variant.published),
        "updated": _iso(variant.updated),
        "mirrored_at": stamp,
    }


class Mirror:
    def __init__(self, store: Store, config: Config, progress: Progress | None = None) -> None:
        self.store = store
        self.config = config
        self.progress = progress or (lambda stream, count: None)
        self.summary = MirrorSummary()
        self.stamp = _iso(datetime.now(UTC)) or ""

    def cursor(self, stream: str) -> dict[str, Any] | None:
        rows = list(self.store.db.query("select * from mirror_cursors where stream = ?", [stream]))
        return rows[0] if rows else None

    def _save(self, table: str, rows: list[dict[str, Any]], stream: str, cursor: dict[str, Any]) -> None:
        """Rows and the cursor that covers them, in one transaction: a crash keeps both or neither."""
        with self.store.transaction() as db:
            if rows:
                db[table].upsert_all(rows, pk="id")
            db["mirror_cursors"].upsert({"stream": stream, **cursor, "updated_at": self.stamp}, pk="stream")
        kind = stream.split(":")[0]
        self.summary.add(kind, len(rows))
        self.progress(kind, len(rows))

    async def metrics(self, client: Any) -> list[Metric]:
        metrics = [metric async for metric in client.get_metrics()]
        rows = [
            {
                "id": m.id,
                "name": m.name,
                "integration_name": (m.integration or {}).get("name"),
                "integration_category": (m.integration or {}).get("category"),
                "created": _iso(m.created),
                "updated": _iso(m.updated),
            }
            for m in metrics
        ]
        self._save("klaviyo_metrics", rows, "metrics", {"done": 1, "high_water": self.stamp})
        return metrics

    async def profiles(self, client: Any, since: datetime | None) -> None:
        previous = self.cursor("profiles")
        start = since or _parse(previous["high_water"] if previous else None)
        query = f"greater-than(updated,{_iso(start - OVERLAP)})" if start else None
        chunk: list[dict[str, Any]] = []
        high_water = _iso(start)
        async for profile in client.get_profiles(filter=query, additional_fields=("subscriptions",), sort="updated"):
            chunk.append(profile_row(profile, self.stamp))
            high_water = _iso(profile.updated) or high_water
            if len(chunk) >= CHUNK:
                self._save("klaviyo_profiles", chunk, "profiles", {"high_water": high_water, "done": 0})
                chunk = []
        self._save("klaviyo_profiles", chunk, "profiles", {"high_water": high_water, "done": 1})

    async def variants(self, client: Any) -> None:
        chunk: list[dict[str, Any]] = []
        async for variant in client.get_catalog_variants():
            chunk.append(variant_row(variant, self.stamp))
            if len(chunk) >= CHUNK:
                self._save("klaviyo_variants", chunk, "variants", {"done": 0})
                chunk = []
        self._save("klaviyo_variants", chunk, "variants", {"done": 1})
        # A complete sweep saw every variant that still exists; the rest were deleted in Klaviyo.
        with self.store.transaction() as db:
            db.execute("delete from klaviyo_variants where mirrored_at != ?", [self.stamp])

    async def events(self, client: Any, metric: Metric, since: datetime | None, until: datetime) -> None:
        stream = f"events:{metric.id}"
        previous = self.cursor(stream)
        start = since or _parse(previous["high_water"] if previous else None) or until - DEFAULT_WINDOW
        # The earliest time this metric is mirrored from; audits judge no fact older than that.
        window_start = min(filter(None, [_iso(start), previous["window_start"] if previous else None]))
        chunk: list[dict[str, Any]] = []
        high_water = _iso(start)
        async for event in client.get_events(metric_id=metric.id, since=start, until=until, sort="datetime"):
            chunk.append(event_row(event, metric))
            high_water = _iso(event.datetime) or high_water
            if len(chunk) >= CHUNK:
                cursor = {"window_start": window_start, "high_water": high_water, "done": 0}
                self._save("klaviyo_events", chunk, stream, cursor)
                chunk = []
        cursor = {"window_start": window_start, "window_end": _iso(until), "high_water": _iso(until), "done": 1}
        self._save("klaviyo_events", chunk, stream, cursor)

    async def pull(self, client: Any, since: datetime | None) -> MirrorSummary:
        until = datetime.now(UTC)
        metrics = await self.metrics(client)
        wanted = mirrored_metric_names(self.config)
        await asyncio.gather(
            self.profiles(client, since),
            self.variants(client),
            *(self.events(client, metric, since, until) for metric in metrics if metric.name in wanted),
        )
        return self.summary


def pull_klaviyo(
    workspace: Workspace,
    since: datetime | None = None,
    progress: Progress | None = None,
    client_factory: ClientFactory | None = None,
) -> MirrorSummary:
    """Copy what audits need from Klaviyo into the workspace's state file; safe to interrupt and re-run."""
    if client_factory is None:
        from cogent_cli.sync.engine import default_client_factory

        client_factory = default_client_factory

    async def run() -> MirrorSummary:
        with workspace.store() as store:
            async with client_factory(workspace.config) as client:
                return await Mirror(store, workspace.config, progress).pull(client, since)

    return asyncio.run(run())
