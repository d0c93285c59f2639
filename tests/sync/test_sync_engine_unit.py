"""The engine against an in-memory Klaviyo: ordering, holds, CLV claims, identity, stock, consent."""

from __future__ import annotations

from datetime import timedelta

from conftest import (
    NOW,
    FakeKlaviyo,
    add_events,
    cancellation,
    event,
    placed,
    refund,
    return_event,
    shipment,
    stock,
)

from cogent_cli.sync.engine import SyncOptions, run_sync
from cogent_cli.sync.exceptions import list_exceptions
from cogent_cli.workspace import Workspace


def sync(workspace: Workspace, fake: FakeKlaviyo, **options: object):
    return run_sync(workspace, SyncOptions(**options), client_factory=fake.session)  # type: ignore[arg-type]


def test_split_shipment_sends_one_event_per_shipment_with_its_parcels(workspace: Workspace, fake: FakeKlaviyo) -> None:
    with workspace.store() as store:
        add_events(
            store,
            [
                shipment("S1", [("T1", [("SKU-1", 1)])], final=False),
                shipment("S2", [("T2", [("SKU-2", 1)]), ("T3", [("SKU-3", 2)])]),
            ],
        )
    summary = sync(workspace, fake)
    shipped = [e for e in fake.events if e["metric"] == "Fulfilled Shipment"]
    assert [e["properties"]["TrackingNumbers"] for e in shipped] == [["T1"], ["T2", "T3"]]
    assert [e["properties"]["IsPartial"] for e in shipped] == [True, False]
    assert summary.sent["Fulfilled Shipment"] == 2
    assert len({e["unique_id"] for e in shipped}) == 2


def test_second_partial_refund_is_not_deduplicated_and_only_the_first_nets_clv(
    workspace: Workspace, fake: FakeKlaviyo
) -> None:
    with workspace.store() as store:
        add_events(
            store,
            [
                refund("R1", "10.00", [("SKU-1", 1, "10.00")]),
                refund("R2", "5.00", [("SKU-2", 1, "5.00")]),
                cancellation("20.00", order="1002"),
            ],
        )
    sync(workspace, fake)
    refunds = [e for e in fake.events if e["metric"] == "Refunded Order"]
    assert [(e["unique_id"], e["value"], e["properties"]["ClvNetted"]) for e in refunds][0] == ("1001", 10.0, True)
    assert refunds[1]["unique_id"] != "1001" and refunds[1]["value"] == 5.0
    cancelled = [e for e in fake.events if e["metric"] == "Cancelled Order"]
    assert [(e["unique_id"], e["value"]) for e in cancelled] == [("1002", 20.0)]


def test_out_of_order_events_are_held_and_delivered_in_business_order(workspace: Workspace, fake: FakeKlaviyo) -> None:
    with workspace.store() as store:
        add_events(
            store,
            [
                refund("R1", "10.00", [("SKU-1", 1, "10.00")]),
                return_event("return.received", "RET1", "received"),
                shipment("S1", [("T1", [("SKU-1", 1)])]),
            ],
        )
    sync(workspace, fake)
    assert [e["metric"] for e in fake.events] == ["Fulfilled Shipment", "Return Received", "Refunded Order"]


def test_held_event_waits_for_its_predecessor_only_up_to_the_hold_time(workspace: Workspace, fake: FakeKlaviyo) -> None:
    with workspace.store() as store:
        add_events(store, [shipment("S1", [("T1", [("SKU-1", 1)])]), refund("R1", "10.00", [("SKU-1", 1, "10.00")])])
    # Klaviyo rejects every shipment: the refund waits behind it while the hold lasts.
    fake.reject_metric = "Fulfilled Shipment"
    summary = sync(workspace, fake)
    assert [e["metric"] for e in fake.events] == []
    assert summary.held == 1
    with workspace.store() as store:
        store.db.execute("update outbox set enqueued_at = ?", [(NOW - timedelta(hours=2)).isoformat()])
    sync(workspace, fake)
    assert [e["metric"] for e in fake.events] == ["Refunded Order"]


def test_duplicate_profiles_produce_an_identity_exception_not_a_second_profile(
    workspace: Workspace, fake: FakeKlaviyo
) -> None:
    by_email = fake.add_profile(email="jane@shop.test")
    by_phone = fake.add_profile(phone_number="+447911123456")
    with workspace.store() as store:
        add_events(store, [shipment("S1", [("T1", [("SKU-1", 1)])], phone="07911 123456")])
    sync(workspace, fake)
    assert len(fake.profiles) == 2
    assert [e["profile_id"] for e in fake.events] == [by_email]
    with workspace.store() as store:
        [conflict] = list_exceptions(store, exception_class="identity_conflict")
    assert conflict.details["profile_ids"] == sorted([by_email, by_phone])


def test_non_sellable_stock_never_reaches_the_catalog(workspace: Workspace, fake: FakeKlaviyo) -> None:
    fake.variants = {"$custom:::$default:::SKU-1": 0.0}
    with workspace.store() as store:
        add_events(
            store,
            [
                stock("SKU-1", "MAIN", 7, non_sellable={"quarantine": 50, "damaged": 3}),
                event(
                    "stock.level_changed",
                    {
                        "sku": "SKU-1",
                        "location": {"site": "MAIN"},
                        "as_of": NOW.isoformat(),
                        "mode": "delta",
                        "delta": {"quantity": 40, "bucket": "quarantine"},
                    },
                    order=None,
                    email=None,
                ),
            ],
        )
    summary = sync(workspace, fake)
    assert fake.variants == {"$custom:::$default:::SKU-1": 7.0}
    assert summary.enqueued.skipped == {"stock bucket quarantine is not sellable": 1}
    assert not [e for e in fake.events]


def test_unknown_sku_becomes_an_exception_owned_by_ecommerce(workspace: Workspace, fake: FakeKlaviyo) -> None:
    with workspace.store() as store:
        add_events(store, [stock("NOPE", "MAIN", 3)])
    summary = sync(workspace, fake)
    assert summary.failed == {"unknown_sku": 1}
    with workspace.store() as store:
        [record] = list_exceptions(store, exception_class="unknown_sku")
    assert record.owner == "ecommerce" and "NOPE" in (record.last_error or "")


def test_return_lifecycle_sets_then_clears_profile_properties(workspace: Workspace, fake: FakeKlaviyo) -> None:
    with workspace.store() as store:
        add_events(store, [return_event("return.lodged", "RET1", "lodged")])
    sync(workspace, fake)
    [profile] = fake.profiles.values()
    assert profile["properties"] == {"open_return": True, "last_return_reason": "Too small", "returned_skus": ["SKU-1"]}
    with workspace.store() as store:
        add_events(store, [return_event("return.restocked", "RET1", "restocked")])
    sync(workspace, fake)
    assert profile["properties"] == {}
    assert [e["metric"] for e in fake.events] == ["Return Lodged", "Return Restocked"]


def test_placed_orders_are_sent_only_for_sources_switched_on(workspace: Workspace, fake: FakeKlaviyo) -> None:
    with workspace.store() as store:
        add_events(store, [placed("30.00")])
    summary = sync(workspace, fake)
    assert fake.events == [] and sum(summary.enqueued.skipped.values()) == 1


def test_consent_becomes_a_subscription_job_and_orders_never_subscribe(workspace: Workspace, fake: FakeKlaviyo) -> None:
    with workspace.store() as store:
        add_events(
            store,
            [
                shipment("S1", [("T1", [("SKU-1", 1)])]),
                event(
                    "consent.changed",
                    {"channel": "email", "status": "subscribed", "captured_at": (NOW - timedelta(days=3)).isoformat()},
                    order=None,
                ),
                event(
                    "consent.changed", {"channel": "email", "status": "unsubscribed"}, order=None, email="bob@shop.test"
                ),
            ],
        )
    sync(workspace, fake)
    kinds = [(kind, item.email, historical) for kind, item, historical in fake.subscriptions]
    assert kinds == [("subscribe", "jane@shop.test", True), ("unsubscribe", "bob@shop.test", False)]
    assert fake.subscriptions[0][1].consented_at is not None


def test_old_events_carry_the_backfill_flag_so_no_flow_fires(workspace: Workspace, fake: FakeKlaviyo) -> None:
    with workspace.store() as store:
        add_events(
            store,
            [
                shipment("S1", [("T1", [("SKU-1", 1)])], at=NOW - timedelta(days=30)),
                shipment("S2", [("T2", [("SKU-1", 1)])]),
            ],
        )
    sync(workspace, fake)
    assert [(e["properties"]["ShipmentId"], e["backfill"]) for e in fake.events] == [("S2", False), ("S1", True)]


def test_rerunning_sends_nothing_twice(workspace: Workspace, fake: FakeKlaviyo) -> None:
    with workspace.store() as store:
        add_events(store, [shipment("S1", [("T1", [("SKU-1", 1)])])])
    first = sync(workspace, fake)
    second = sync(workspace, fake)
    assert sum(first.sent.values()) == 1 and sum(second.sent.values()) == 0
    assert [c for c in fake.calls if c[0] == "bulk_create_events"] == [("bulk_create_events", 1)]
