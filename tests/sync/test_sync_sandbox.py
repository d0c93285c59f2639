"""The sync engine through the real Klaviyo client against the sandbox over HTTP."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

from sync_fakes import (
    API_KEY,
    add_events,
    cancellation,
    placed,
    refund,
    return_event,
    sandbox_events,
    sandbox_workspace,
    shipment,
    stock,
)

from cogent_cli.health import collect_health
from cogent_cli.klaviyo.client import KlaviyoClient
from cogent_cli.klaviyo.models import CatalogItemIn, CatalogVariantIn, ProfileIn
from cogent_cli.sync.engine import SyncOptions, replay, run_sync
from cogent_cli.sync.exceptions import list_exceptions


def sync(workspace: Any, **options: Any) -> Any:
    return run_sync(workspace, SyncOptions(**options))


def klaviyo(sandbox: Any, action: Any) -> Any:
    async def go() -> Any:
        async with KlaviyoClient(API_KEY, base_url=sandbox.base_url, rate_scale=100) as client:
            return await action(client)

    return asyncio.run(go())


def test_split_shipment_sends_one_event_per_parcel(tmp_path: Any, sandbox: Any) -> None:
    workspace = sandbox_workspace(tmp_path / "ws", sandbox.base_url, '[sync]\nshipment_events = "parcel"\n')
    with workspace.store() as store:
        add_events(
            store,
            [
                shipment("S1", [("T1", [("SKU-1", 1)]), ("T2", [("SKU-2", 2)])], final=False),
                shipment("S2", [("T3", [("SKU-3", 1)])]),
            ],
        )
    summary = sync(workspace)
    received = sandbox_events(sandbox)
    assert [(e["metric_name"], e["properties"]["TrackingNumbers"]) for e in received] == [
        ("Fulfilled Shipment", ["T1"]),
        ("Fulfilled Shipment", ["T2"]),
        ("Fulfilled Shipment", ["T3"]),
    ]
    assert [e["properties"]["Items"] for e in received][:2] == [
        [{"SKU": "SKU-1", "Quantity": 1}],
        [{"SKU": "SKU-2", "Quantity": 2}],
    ]
    assert summary.sent == {"Fulfilled Shipment": 3}


def test_a_run_records_its_klaviyo_requests_and_status_counts_them_against_the_rate_budget(
    tmp_path: Any, sandbox: Any
) -> None:
    workspace = sandbox_workspace(tmp_path / "ws", sandbox.base_url)
    with workspace.store() as store:
        add_events(store, [shipment("S1", [("T1", [("SKU-1", 1)])]), shipment("S2", [("T2", [("SKU-2", 1)])])])
    summary = sync(workspace)
    assert summary.klaviyo_requests.get("bulk_create_events", 0) >= 1
    with workspace.store() as store:
        budget = collect_health(store, workspace.config).rate_budget
    assert budget["by_operation"] == summary.klaviyo_requests
    assert budget["requests_last_hour"] == sum(summary.klaviyo_requests.values()) > 0
    assert budget["busiest_operation"] in summary.klaviyo_requests
    assert budget["share_used"] > 0


def test_cancelled_and_refunded_events_net_off_clv_by_unique_id(tmp_path: Any, sandbox: Any) -> None:
    workspace = sandbox_workspace(tmp_path / "ws", sandbox.base_url, "[sources.peoplevox]\nsend_order_placed = true\n")
    with workspace.store() as store:
        add_events(
            store,
            [
                placed("100.00", order="A1"),
                refund("R1", "30.00", [("SKU-1", 1, "30.00")], order="A1"),
                refund("R2", "20.00", [("SKU-2", 1, "20.00")], order="A1"),
                placed("50.00", order="A2"),
                cancellation("50.00", order="A2"),
            ],
        )
    sync(workspace)
    received = sandbox_events(sandbox)
    placed_ids = {e["unique_id"]: e["value"] for e in received if e["metric_name"] == "Placed Order"}
    assert placed_ids == {"A1": 100.0, "A2": 50.0}
    netting = [e for e in received if e["metric_name"] in ("Refunded Order", "Cancelled Order")]
    netted = {(e["metric_name"], e["unique_id"], e["value"]) for e in netting if e["unique_id"] in placed_ids}
    assert netted == {("Refunded Order", "A1", 30.0), ("Cancelled Order", "A2", 50.0)}
    # The second partial refund is recorded too (its own unique_id), flagged as not netted.
    second = [e for e in netting if e["unique_id"] not in placed_ids]
    assert [(e["value"], e["properties"]["ClvNetted"]) for e in second] == [(20.0, False)]
    clv = sum(placed_ids.values()) - sum(value for _m, _u, value in netted)
    assert clv == 70.0


def test_out_of_order_events_are_held_and_delivered_in_order(tmp_path: Any, sandbox: Any) -> None:
    workspace = sandbox_workspace(tmp_path / "ws", sandbox.base_url)
    with workspace.store() as store:
        add_events(
            store,
            [
                refund("R1", "10.00", [("SKU-1", 1, "10.00")], order="B1", return_id="RET1"),
                return_event("return.received", "RET1", "received", order="B1"),
                return_event("return.lodged", "RET1", "lodged", order="B1"),
                shipment("S1", [("T1", [("SKU-1", 1)])], order="B1"),
            ],
        )
    sync(workspace)
    assert [e["metric_name"] for e in sandbox_events(sandbox)] == [
        "Fulfilled Shipment",
        "Return Lodged",
        "Return Received",
        "Refunded Order",
    ]
    [profile] = list(sandbox.db.query("select properties from profiles"))
    assert profile["properties"] is None  # the refund closed the return: properties cleared


def test_duplicate_profiles_produce_an_identity_exception_not_a_second_profile(tmp_path: Any, sandbox: Any) -> None:
    async def two_profiles(client: KlaviyoClient) -> tuple[str, str]:
        a = await client.create_profile(ProfileIn(email="jane@shop.test"))
        b = await client.create_profile(ProfileIn(phone_number="+447911123456"))
        return a.id, b.id

    by_email, by_phone = klaviyo(sandbox, two_profiles)
    workspace = sandbox_workspace(tmp_path / "ws", sandbox.base_url)
    with workspace.store() as store:
        add_events(store, [shipment("S1", [("T1", [("SKU-1", 1)])], phone="+44 7911 123456")])
    sync(workspace)
    assert sandbox.db["profiles"].count == 2
    assert [e["profile_id"] for e in sandbox_events(sandbox)] == [by_email]
    with workspace.store() as store:
        [conflict] = list_exceptions(store, exception_class="identity_conflict")
    assert conflict.details["profile_ids"] == sorted([by_email, by_phone])
    assert conflict.owner == "ecommerce"


def test_non_sellable_stock_never_reaches_the_catalog(tmp_path: Any, sandbox: Any) -> None:
    async def catalog(client: KlaviyoClient) -> None:
        await client.create_catalog_item(
            CatalogItemIn(external_id="SKU-1", title="Tent", description="Tent", url="https://shop.test/tent")
        )
        await client.create_catalog_variant(
            CatalogVariantIn(
                item_id="SKU-1",
                external_id="SKU-1",
                title="Tent",
                description="Tent",
                sku="SKU-1",
                inventory_quantity=0,
                price=100,
                url="https://shop.test/tent",
            )
        )

    klaviyo(sandbox, catalog)
    workspace = sandbox_workspace(tmp_path / "ws", sandbox.base_url, '[stock]\nsellable_sites = ["MAIN"]\n')
    with workspace.store() as store:
        add_events(
            store,
            [
                stock("SKU-1", "MAIN", 4, non_sellable={"quarantine": 30, "damaged": 2}),
                stock("SKU-1", "RETURNS", 25),
            ],
        )
    summary = sync(workspace)
    [variant] = list(sandbox.db.query("select inventory_quantity from catalog_variants"))
    assert variant["inventory_quantity"] == 4
    assert summary.enqueued.skipped == {"site RETURNS is not in stock.sellable_sites": 1}
    assert sandbox_events(sandbox) == []


def test_faults_lose_nothing(tmp_path: Any, monkeypatch: Any) -> None:
    from cogent_cli.sandbox.server import run_sandbox

    monkeypatch.setenv("COGENT_KLAVIYO_API_KEY", API_KEY)
    with run_sandbox(tmp_path / "faulty", rate_scale=100.0, faults="5xx=0.1,429=0.05,timeout=0.02") as faulty:
        workspace = sandbox_workspace(tmp_path / "ws", faulty.base_url, "[sync]\nwave_size = 7\n")
        events = [
            shipment(f"S{i}", [(f"T{i}", [("SKU-1", 1)])], order=f"F{i}", email=f"c{i % 9}@shop.test")
            for i in range(60)
        ]
        with workspace.store() as store:
            add_events(store, events)
        for _ in range(10):
            sync(workspace)
            with workspace.store() as store:
                if not store.db.execute("select count(*) from outbox where status != 'sent'").fetchone()[0]:
                    break
        received = Counter(e["unique_id"] for e in sandbox_events(faulty))
    assert received == Counter({e.event_id: 1 for e in events})


def test_replay_after_a_mapping_fix_delivers_the_quarantined_events(tmp_path: Any, sandbox: Any) -> None:
    mapping = '[mapping.ship_methods]\n"DPD-NEXT" = "next-day"\n'
    workspace = sandbox_workspace(tmp_path / "ws", sandbox.base_url, mapping)
    courier = {"carrier_name": "Evri", "service_code": "EVRI-48", "service_name": "Evri 48"}
    with workspace.store() as store:
        add_events(
            store,
            [
                shipment("S1", [("T1", [("SKU-1", 1)])]),
                shipment("S2", [("T2", [("SKU-1", 1)])], method=courier, order="1002"),
            ],
        )
    summary = sync(workspace)
    assert summary.sent == {"Fulfilled Shipment": 1} and summary.enqueued.exceptions == 1
    with workspace.store() as store:
        [parked] = list_exceptions(store, exception_class="unmapped_ship_method")
    assert parked.owner == "ops" and parked.pointer == "/data/parcels/0/ship_method"

    fixed = sandbox_workspace(tmp_path / "ws", sandbox.base_url, mapping + '"EVRI-48" = "standard"\n')
    items, run = replay(fixed, [parked])
    assert [i.outcome for i in items] == ["requeued"] and run is not None and run.sent == {"Fulfilled Shipment": 1}
    assert [e["properties"]["ShipMethod"] for e in sandbox_events(sandbox)] == ["next-day", "standard"]
    again, second_run = replay(fixed, [parked])
    assert [i.outcome for i in again] == ["not replayable"] and second_run is None
    assert len(sandbox_events(sandbox)) == 2


def test_an_event_klaviyo_rejects_becomes_a_validation_exception_with_its_pointer_and_the_rest_is_delivered(
    tmp_path: Any, sandbox: Any
) -> None:
    from datetime import UTC, datetime

    workspace = sandbox_workspace(tmp_path / "ws", sandbox.base_url)
    good = [shipment(f"S{i}", [(f"T{i}", [("SKU-1", 1)])], order=f"V{i}") for i in range(5)]
    ancient = shipment("S-old", [("T-old", [("SKU-1", 1)])], order="V-old", at=datetime(1985, 1, 1, tzinfo=UTC))
    with workspace.store() as store:
        add_events(store, [*good[:2], ancient, *good[2:]])
    summary = sync(workspace)
    assert summary.sent == {"Fulfilled Shipment": 5} and summary.failed == {"validation_error": 1}
    assert sorted(e["unique_id"] for e in sandbox_events(sandbox)) == sorted(e.event_id for e in good)
    with workspace.store() as store:
        [record] = list_exceptions(store, exception_class="validation_error")
    assert record.event_id == ancient.event_id and record.pointer and record.pointer.endswith("/time")


def test_a_profile_the_import_job_rejects_becomes_a_validation_exception_and_the_others_are_imported(
    tmp_path: Any, sandbox: Any
) -> None:
    workspace = sandbox_workspace(tmp_path / "ws", sandbox.base_url)
    with workspace.store() as store, store.transaction() as db:
        # A profile merged away in Klaviyo since its id was cached: the import job fails that row only.
        db["identity_cache"].insert(
            {"key": "email:gone@shop.test", "profile_id": "01GONE0000000000000000000", "updated_at": ""}
        )
    with workspace.store() as store:
        add_events(
            store,
            [
                return_event("return.received", "RT1", "received", order="B1", email="jane@shop.test"),
                return_event("return.received", "RT2", "received", order="B2", email="gone@shop.test"),
            ],
        )
    summary = sync(workspace)
    assert summary.failed["validation_error"] >= 1
    with workspace.store() as store:
        rejected = [
            r for r in list_exceptions(store, exception_class="validation_error") if r.metric.startswith("profile")
        ]
        profile_ops = {r["status"] for r in store.db.query("select status from outbox where kind = 'profile'")}
    [record] = rejected
    assert record.pointer == "/data/id" and "does not exist" in (record.last_error or "")
    assert record.payload["profile"] == {"email": "gone@shop.test"}
    assert profile_ops == {"sent", "exception"}
    [jane] = list(sandbox.db.query("select properties from profiles where email = 'jane@shop.test'"))
    assert '"open_return": true' in jane["properties"]


def test_import_jobs_klaviyo_takes_its_time_over_run_side_by_side_and_deliver_every_update(
    tmp_path: Any, monkeypatch: Any
) -> None:
    from cogent_cli.sandbox.server import run_sandbox

    monkeypatch.setenv("COGENT_KLAVIYO_API_KEY", API_KEY)
    with run_sandbox(tmp_path / "sandbox", rate_scale=100.0, job_seconds=1.0) as sandbox:
        workspace = sandbox_workspace(tmp_path / "ws", sandbox.base_url, "[sync]\nwave_size = 3\n")
        with workspace.store() as store:
            add_events(
                store,
                [
                    return_event("return.lodged", f"RT{n}", "lodged", order=f"B{n}", email=f"c{n}@shop.test")
                    for n in range(9)
                ],
            )
        summary = sync(workspace)
        jobs = [row["ready_at"] for row in sandbox.db.query("select ready_at from jobs order by ready_at")]
        opened = sandbox.db.execute(
            "select count(*) from profiles where properties like '%\"open_return\": true%'"
        ).fetchone()[0]
    assert (
        summary.sent["Return Lodged"] == 9 and sum(v for k, v in summary.sent.items() if k.startswith("profile")) == 9
    )
    assert opened == 9
    # Three waves of three profile updates: each job was created while the one before still ran.
    assert len(jobs) == 3 and jobs[2] - jobs[0] < 1.0


def test_a_run_asks_klaviyo_how_an_import_job_an_earlier_run_left_ended_instead_of_sending_it_again(
    tmp_path: Any, monkeypatch: Any
) -> None:
    from cogent_cli.sandbox.server import run_sandbox

    monkeypatch.setenv("COGENT_KLAVIYO_API_KEY", API_KEY)
    with run_sandbox(tmp_path / "sandbox", rate_scale=100.0, job_seconds=3.0) as sandbox:
        workspace = sandbox_workspace(tmp_path / "ws", sandbox.base_url)
        with workspace.store() as store:
            add_events(
                store,
                [
                    return_event("return.lodged", f"RT{n}", "lodged", order=f"B{n}", email=f"c{n}@shop.test")
                    for n in range(3)
                ],
            )
        first = sync(workspace, max_minutes=0.01)  # out of time while Klaviyo runs the job
        [(ready_at,)] = sandbox.db.execute("select ready_at from jobs").fetchall()
        time.sleep(max(ready_at - time.time(), 0) + 0.1)
        second = sync(workspace)
        jobs = sandbox.db.execute("select count(*) from jobs").fetchone()[0]
        opened = sandbox.db.execute(
            "select count(*) from profiles where properties like '%\"open_return\": true%'"
        ).fetchone()[0]
    assert first.deferred == 3 and sum(v for k, v in second.sent.items() if k.startswith("profile")) == 3
    assert (jobs, opened) == (1, 3)
