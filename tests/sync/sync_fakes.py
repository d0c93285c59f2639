"""Helpers of the sync tests: normalised event builders, an events-table writer, a small in-memory
stand-in for the Klaviyo client (the HTTP tests use the real client and the sandbox), and sandbox
workspaces. The fixtures built on them are in conftest.py."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from itertools import count
from typing import Any

from cogent_cli.events import NormalisedEvent, Source, dump_event, make_event
from cogent_cli.klaviyo.client import ClientStats
from cogent_cli.klaviyo.errors import BulkDeliveryError, KlaviyoValidationError, TransientError
from cogent_cli.klaviyo.models import BatchFailure, BulkJob, BulkOutcome, Profile, ProfileImportFailure
from cogent_cli.state import Store

NOW = datetime.now(UTC).replace(microsecond=0)
_keys = count(1)


def event(
    event_type: str,
    data: dict[str, Any],
    *,
    order: str | None = "1001",
    email: str | None = "jane@shop.test",
    phone: str | None = None,
    system: str = "peoplevox",
    at: datetime | None = None,
    key: str | None = None,
    transport: str = "poll",
) -> NormalisedEvent:
    customer = {k: v for k, v in (("email", email), ("phone", phone)) if v}
    return make_event(
        event_type,  # type: ignore[arg-type]
        source=Source(system=system, tenant="acme", transport=transport, dedupe_key=key or f"k{next(_keys)}"),  # type: ignore[arg-type]
        occurred_at=at or NOW - timedelta(minutes=5),
        data=data,
        customer=customer or None,
        order_ref={"order_number": order} if order else None,
    )


def shipment(shipment_id: str, parcels: list[tuple[str, list[tuple[str, int]]]], **kw: Any) -> NormalisedEvent:
    final = kw.pop("final", True)
    method = kw.pop("method", {"carrier_name": "DPD", "service_code": "DPD-NEXT", "service_name": "Next Day"})
    return event(
        "shipment.despatched",
        {
            "shipment_id": shipment_id,
            "despatched_at": (kw.get("at") or NOW).isoformat(),
            "is_partial": not final,
            "is_final": final,
            "parcels": [
                {
                    "parcel_id": tracking,
                    "tracking_number": tracking,
                    "tracking_url": f"https://track.test/{tracking}",
                    "ship_method": method,
                    "items": [{"sku": sku, "quantity": qty} for sku, qty in items],
                }
                for tracking, items in parcels
            ],
        },
        **kw,
    )


def money(amount: str, currency: str = "GBP") -> dict[str, str]:
    return {"amount": amount, "currency": currency}


def refund(refund_id: str, total: str, lines: list[tuple[str, int, str]], **kw: Any) -> NormalisedEvent:
    return_id = kw.pop("return_id", None)
    return event(
        "refund.processed",
        {
            "refund_id": refund_id,
            "return_id": return_id,
            "total": money(total),
            "lines": [{"sku": s, "quantity": q, "amount": money(a)} for s, q, a in lines],
        },
        **kw,
    )


def cancellation(value: str, **kw: Any) -> NormalisedEvent:
    return event("order.cancelled", {"scope": "full", "reason": "customer request", "value": money(value)}, **kw)


def placed(total: str, **kw: Any) -> NormalisedEvent:
    return event(
        "order.placed",
        {
            "currency": "GBP",
            "totals": {"total": money(total)},
            "lines": [{"sku": "SKU-1", "quantity": 1, "line_total": money(total)}],
        },
        **kw,
    )


def return_event(event_type: str, return_id: str, status: str, **kw: Any) -> NormalisedEvent:
    return event(
        event_type,
        {
            "return_id": return_id,
            "status": status,
            "lines": [
                {
                    "sku": "SKU-1",
                    "quantity": 1,
                    "reason_text": "Too small",
                    "condition": "as new",
                    "disposition": "restock",
                }
            ],
        },
        **kw,
    )


def stock(sku: str, site: str, available: int, **kw: Any) -> NormalisedEvent:
    non_sellable = kw.pop("non_sellable", None)
    at = kw.pop("at", NOW)
    data: dict[str, Any] = {
        "sku": sku,
        "location": {"site": site},
        "as_of": at.isoformat(),
        "mode": "snapshot",
        "sellable": {"available": available},
    }
    if non_sellable:
        data["non_sellable"] = non_sellable
    return event("stock.level_changed", data, order=None, email=None, at=at, **kw)


def add_events(store: Store, events: list[NormalisedEvent]) -> None:
    """Write events the way the sources part does (contract 1): one row each, read in rowid order."""
    with store.transaction() as db:
        for e in events:
            db["events"].insert(
                {
                    "event_id": e.event_id,
                    "event_type": e.event_type,
                    "system": e.source.system,
                    "tenant": e.source.tenant,
                    "occurred_at": dump_event(e)["occurred_at"],
                    "received_at": NOW.isoformat(),
                    "order_number": e.order_number,
                    "email": e.customer.email if e.customer else None,
                    "body": json.dumps(dump_event(e)),
                },
                ignore=True,
            )


class FakeKlaviyo:
    """Records what each endpoint received and keeps profiles the way Klaviyo does: identified by any
    of email / phone / external id, events deduplicated per (profile, metric, unique_id)."""

    def __init__(self) -> None:
        self.profiles: dict[str, dict[str, Any]] = {}
        self.events: list[dict[str, Any]] = []
        self.calls: list[tuple[str, int]] = []
        self.variants: dict[str, float] = {}
        self.subscriptions: list[tuple[str, Any, bool]] = []
        self.reject_metric: str | None = None
        self.unavailable_calls = 0
        # Profile import jobs: profiles (by email) the job reports as failed, and how jobs end.
        self.import_errors: dict[str, str] = {}
        self.import_status = "complete"
        self._jobs: dict[str, list[str]] = {}
        self._ends: dict[str, str] = {}  # how each job ends: import_status when it was submitted
        # Seconds an import job reads `processing` before it ends; the jobs not reported ended yet
        # (start, emails); the most of them at once; emails sent while an unended job held them.
        self.job_seconds = 0.0
        self.running: dict[str, tuple[float, set[str]]] = {}
        self.running_peak = 0
        self.raced: list[str] = []
        self.log: list[tuple[str, tuple[str, ...]]] = []
        self.catalog_delays: list[float] = []
        self._ids = count(1)
        self.stats = ClientStats()

    @asynccontextmanager
    async def session(self, _config: Any) -> AsyncIterator[FakeKlaviyo]:
        yield self

    def add_profile(self, **attributes: Any) -> str:
        profile_id = f"P{next(self._ids)}"
        self.profiles[profile_id] = {"properties": {}, **attributes}
        return profile_id

    def _find(self, attributes: dict[str, Any]) -> str:
        if attributes.get("profile_id"):
            return attributes["profile_id"]
        for field_name in ("external_id", "email", "phone_number"):
            value = attributes.get(field_name)
            for profile_id, profile in self.profiles.items():
                if value and profile.get(field_name) == value:
                    return profile_id
        return self.add_profile(
            **{k: attributes[k] for k in ("external_id", "email", "phone_number") if attributes.get(k)}
        )

    async def get_profiles(self, filter: str, **_: Any) -> AsyncIterator[Profile]:
        self.calls.append(("get_profiles", 1))
        field_name, raw = re.match(r"any\((\w+),\[(.*)\]\)", filter).groups()  # type: ignore[union-attr]
        values = set(json.loads(f"[{raw}]"))
        for profile_id, profile in list(self.profiles.items()):
            if profile.get(field_name) in values:
                yield Profile(id=profile_id, **{k: v for k, v in profile.items() if k != "properties"})

    async def bulk_create_events(self, events: list[Any]) -> BulkOutcome[Any]:
        self.calls.append(("bulk_create_events", len(events)))
        if self.unavailable_calls:
            self.unavailable_calls -= 1
            raise TransientError("bulk_create_events: Klaviyo failed with HTTP 503", status=503)
        bad = [e for e in events if e.metric == self.reject_metric]
        if bad:
            error = KlaviyoValidationError("rejected", pointer="/data/attributes/properties", status=400)
            if len(events) == 1:
                raise error
            raise BulkDeliveryError(
                BulkOutcome(requests=1, accepted=0, failures=[BatchFailure(list(events), error)]), "bulk_create_events"
            )
        for e in events:
            profile_id = self._find(e.model_dump())
            key = (profile_id, e.metric, e.unique_id)
            if not any((x["profile_id"], x["metric"], x["unique_id"]) == key for x in self.events):
                self.events.append(
                    {
                        "profile_id": profile_id,
                        "metric": e.metric,
                        "unique_id": e.unique_id,
                        "value": e.value,
                        "properties": e.properties,
                        "backfill": e.backfill,
                        "time": e.time,
                    }
                )
        return BulkOutcome(requests=1, accepted=len(events))

    async def _apply_profile(self, profile: Any) -> Profile:
        profile_id = profile.id or self._find(profile.model_dump())
        stored = self.profiles[profile_id]
        stored["properties"].update(profile.properties or {})
        if profile.patch_properties and profile.patch_properties.unset:
            for name in profile.patch_properties.unset:
                stored["properties"].pop(name, None)
        return Profile(id=profile_id)

    async def bulk_import_profiles(self, profiles: list[Any]) -> BulkJob:
        """Answered `queued`, as Klaviyo does; the job's outcome is read with get_bulk_import_job."""
        self.calls.append(("bulk_import_profiles", len(profiles)))
        job_id, failed = f"job{next(self._ids)}", []
        emails = self._sending([p.email for p in profiles], "import")
        self.running[job_id] = (time.monotonic(), emails)
        self.running_peak = max(self.running_peak, len(self.running))
        for p in profiles:
            if p.email in self.import_errors:
                failed.append(p.email)
            elif self.import_status == "complete":
                await self._apply_profile(p)
        self._jobs[job_id] = failed
        self._ends[job_id] = self.import_status
        return BulkJob(id=job_id, type="profile-bulk-import-job", status="queued")

    async def get_bulk_import_job(self, job_id: str) -> BulkJob:
        self.calls.append(("get_bulk_import_job", 1))
        failed = len(self._jobs[job_id])
        started, emails = self.running.get(job_id, (0.0, set()))
        if job_id in self.running and time.monotonic() - started < self.job_seconds:
            return BulkJob(id=job_id, type="profile-bulk-import-job", status="processing")
        if self.running.pop(job_id, None):
            self.log.append(("ended", tuple(sorted(emails))))
        return BulkJob(id=job_id, type="profile-bulk-import-job", status=self._ends[job_id], failed_count=failed)

    def _sending(self, emails: list[str | None], what: str) -> set[str]:
        sent = {e for e in emails if e}
        for _started, held in self.running.values():
            self.raced.extend(sorted(sent & held))
        self.log.append((what, tuple(sorted(sent))))
        return sent

    async def get_bulk_import_errors(self, job_id: str) -> AsyncIterator[ProfileImportFailure]:
        self.calls.append(("get_bulk_import_errors", 1))
        for email in self._jobs[job_id]:
            yield ProfileImportFailure(
                id=f"err-{email}",
                code="invalid",
                title="Invalid input.",
                detail=self.import_errors[email],
                source={"pointer": "/data/attributes/email"},
                original_payload={"email": email},
            )

    async def upsert_profile(self, profile: Any) -> Profile:
        self.calls.append(("upsert_profile", 1))
        self._sending([profile.email], "upsert")
        return await self._apply_profile(profile)

    async def subscribe_profiles(self, items: list[Any], historical_import: bool = False, **_: Any) -> None:
        self.calls.append(("subscribe_profiles", len(items)))
        self.subscriptions.extend(("subscribe", i, historical_import) for i in items)

    async def unsubscribe_profiles(self, items: list[Any], **_: Any) -> None:
        self.calls.append(("unsubscribe_profiles", len(items)))
        self.subscriptions.extend(("unsubscribe", i, False) for i in items)

    async def get_catalog_variants(self, filter: str | None = None) -> AsyncIterator[Any]:
        from cogent_cli.klaviyo.models import CatalogVariant

        raw = re.match(r"any\(ids,\[(.*)\]\)", filter or "").group(1)  # type: ignore[union-attr]
        for variant_id in json.loads(f"[{raw}]"):
            if variant_id in self.variants:
                yield CatalogVariant(id=variant_id, inventory_quantity=self.variants[variant_id])

    async def bulk_update_catalog_variants(self, variants: list[Any]) -> None:
        self.calls.append(("bulk_update_catalog_variants", len(variants)))
        if self.catalog_delays:
            await asyncio.sleep(self.catalog_delays.pop(0))
        for v in variants:
            self.variants[v.id] = float(v.inventory_quantity)


API_KEY = "pk_sandbox_sync_tests"


def sandbox_workspace(root: Any, base_url: str, extra: str = "", rate_scale: float = 100.0) -> Any:
    """A workspace whose Klaviyo is the sandbox at `base_url`; `extra` adds TOML sections."""
    from cogent_cli.workspace import Workspace

    root.mkdir(parents=True, exist_ok=True)
    (root / "cogent.toml").write_text(
        f'[workspace]\nname = "Sync test"\nid = "sync-test-01"\n\n'
        f'[klaviyo]\nbase_url = "{base_url}"\nrate_scale = {rate_scale}\nmax_in_flight = 16\n\n{extra}',
        encoding="utf-8",
    )
    workspace = Workspace(root)
    workspace.store().close()
    return workspace


def sandbox_events(sandbox: Any) -> list[dict[str, Any]]:
    return [
        {**row, "properties": json.loads(row["properties"] or "{}")}
        for row in sandbox.db.query(
            "select rowid, metric_name, profile_id, unique_id, value, backfill, properties from events order by rowid"
        )
    ]
