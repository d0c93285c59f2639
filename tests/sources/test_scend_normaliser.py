"""Scend exports and webhooks (proposed shapes from scend.md) into normalised events."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from pvx_scend_support import (
    SCEND_DESPATCH,
    SCEND_ORDER_STATUS,
    SCEND_RETURN,
    SCEND_STOCK,
    SCEND_WEBHOOK,
    events,
    ingest,
    jsonl,
    quarantined,
)

from cogent_cli.config import Config, ScendSettings
from cogent_cli.inbox import Inbox
from cogent_cli.state import Store
from cogent_cli.workspace import Workspace


@pytest.fixture
def store(workspace: Workspace) -> Store:
    return workspace.store()


@pytest.fixture
def config(workspace: Workspace) -> Config:
    return workspace.config.model_copy(deep=True)


def despatch(**changes: str) -> dict[str, str]:
    return {**SCEND_DESPATCH, **changes}


def test_documented_despatch_row_is_a_parcel_level_shipment(store: Store, config: Config, tmp_path: Path) -> None:
    ingest(store, config, "scend", tmp_path, "despatches_20250501140311.csv", [SCEND_DESPATCH])
    [event] = events(store)
    data = event.data
    assert (data.shipment_id, data.tracking_granularity, data.site) == ("DSP-778812", "parcel", "MK1")
    assert event.occurred_at == datetime(2025, 5, 1, 14, 3, 11, tzinfo=UTC)
    [parcel] = data.parcels
    assert (parcel.parcel_id, parcel.tracking_number) == ("PCL-1", "TT123456789GB")
    assert parcel.tracking_url.endswith("TT123456789GB")
    assert parcel.ship_method.model_dump() == {
        "carrier_code": "RM",
        "carrier_name": "Royal Mail",
        "service_code": "TPN24",
        "service_name": "Tracked 24",
    }
    assert [(i.sku, i.quantity) for i in parcel.items] == [("TSHIRT-M-BLK", 1)]
    # 1 of 2 ordered went, and Scend says it is not the final despatch.
    assert (data.is_partial, data.is_final) == (True, False)
    assert [(i.sku, i.quantity) for i in data.pending_items] == [("TSHIRT-M-BLK", 1)]
    assert (event.order_number, event.order_ref.channel, event.customer.email) == (
        "SO-100234",
        "#1001",
        "jane@example.com",
    )


def test_split_shipment_has_one_event_per_despatch_and_one_parcel_per_parcel_id(
    store: Store, config: Config, tmp_path: Path
) -> None:
    rows = [
        despatch(sku="A", qty_ordered="1"),
        despatch(sku="B", qty_ordered="3", qty_despatched="2", parcel_id="PCL-2", tracking_number="TT2"),
        despatch(despatch_id="DSP-2", sku="B", qty_ordered="3", qty_despatched="1", parcel_id="PCL-3",
                 tracking_number="TT3", despatched_at="2025-05-02T09:00:00Z", is_final_despatch="true"),
    ]  # fmt: skip
    rows[0]["sku"] = "A"
    ingest(store, config, "scend", tmp_path, "despatches_1.csv", rows)
    first, second = events(store)
    assert [(p.parcel_id, [(i.sku, i.quantity) for i in p.items]) for p in first.data.parcels] == [
        ("PCL-1", [("A", 1)]),
        ("PCL-2", [("B", 2)]),
    ]
    assert (first.data.is_partial, second.data.is_final) == (True, True)
    assert [p.tracking_number for p in second.data.parcels] == ["TT3"]


def test_ledger_decides_finality_when_the_source_does_not(store: Store, config: Config, tmp_path: Path) -> None:
    rows = [despatch(is_final_despatch="", qty_ordered="1")]
    ingest(store, config, "scend", tmp_path, "despatches_1.csv", rows)
    [event] = events(store)
    assert (event.data.is_partial, event.data.is_final) == (False, True)


def test_documented_return_is_received_and_restocked(store: Store, config: Config, tmp_path: Path) -> None:
    ingest(store, config, "scend", tmp_path, "returns_1.csv", [SCEND_RETURN])
    received, restocked = events(store)
    assert (received.event_type, restocked.event_type) == ("return.received", "return.restocked")
    assert (received.data.return_id, received.data.rma_number, received.data.site) == ("RET-5521", "1042", "MK1")
    [line] = received.data.lines
    assert (line.reason_code, line.reason_text, line.condition, line.disposition) == (
        "TOO_SMALL",
        "Too small",
        "sellable",
        "restock",
    )
    assert (line.quantity, line.quantity_received, line.quantity_restocked) == (1, 1, 1)


def test_quarantined_return_is_received_but_not_restocked(store: Store, config: Config, tmp_path: Path) -> None:
    damaged = {**SCEND_RETURN, "condition": "DAMAGED", "disposition": "QUARANTINE", "qty_restocked": "0",
               "qty_quarantined": "1"}  # fmt: skip
    ingest(store, config, "scend", tmp_path, "returns_1.csv", [damaged])
    [received] = events(store)
    assert (received.data.lines[0].condition, received.data.lines[0].disposition) == ("damaged", "quarantine")


def test_unknown_disposition_is_quarantined_until_mapped(store: Store, config: Config, tmp_path: Path) -> None:
    odd = {**SCEND_RETURN, "disposition": "DONATE"}
    ingest(store, config, "scend", tmp_path, "returns_1.csv", [odd])
    [(row_id, reason)] = quarantined(store)
    assert reason.startswith(
        "disposition = 'DONATE': unknown Scend disposition; map it under [sources.scend] dispositions"
    )
    config.sources.scend = ScendSettings(dispositions={"DONATE": "write_off"})
    inbox = Inbox(store)
    inbox.retry([row_id])
    inbox.normalise_pending(config, ids=[row_id])
    assert events(store)[0].data.lines[0].disposition == "write_off"


def test_restocked_beyond_received_is_refused(store: Store, config: Config, tmp_path: Path) -> None:
    ingest(store, config, "scend", tmp_path, "returns_1.csv", [{**SCEND_RETURN, "qty_quarantined": "1"}])
    assert quarantined(store)[0][1] == "qty_restocked = 1: restocked + quarantined (2) exceeds qty_received (1)"


def test_documented_stock_row_keeps_its_buckets(store: Store, config: Config, tmp_path: Path) -> None:
    ingest(store, config, "scend", tmp_path, "stock_1.csv", [SCEND_STOCK])
    [event] = events(store)
    data = event.data
    assert (data.sku, data.location.site, data.location.stock_owner) == ("TSHIRT-M-BLK", "MK1", "ACME")
    assert (data.sellable.on_hand, data.sellable.allocated, data.sellable.available) == (120, 8, 112)
    assert (data.non_sellable.quarantine, data.non_sellable.damaged, data.non_sellable.on_hold) == (2, 1, 0)
    assert (data.inbound.on_order, data.inbound.received_not_putaway) == (200, 0)


def test_stock_change_in_a_non_sellable_bucket_is_an_event_but_not_back_in_stock(
    store: Store, config: Config, tmp_path: Path
) -> None:
    empty = {**SCEND_STOCK, "available": "0", "on_hand": "3", "allocated": "0", "quarantine": "3"}
    ingest(store, config, "scend", tmp_path, "stock_1.csv", [empty])
    later = {**empty, "snapshot_at": "2025-05-10T23:00:00Z", "quarantine": "2", "damaged": "2"}
    ingest(store, config, "scend", tmp_path, "stock_2.csv", [later])
    restocked = {**later, "snapshot_at": "2025-05-11T23:00:00Z", "available": "5", "on_hand": "9"}
    ingest(store, config, "scend", tmp_path, "stock_3.csv", [restocked])
    stale = {**later, "snapshot_at": "2025-05-01T23:00:00Z"}
    ingest(store, config, "scend", tmp_path, "stock_0.csv", [stale])
    flags = [e.data.back_in_stock for e in events(store)]
    assert flags == [False, False, True]


def test_cancelled_order_status_is_a_cancellation(store: Store, config: Config, tmp_path: Path) -> None:
    rows = [SCEND_ORDER_STATUS, {**SCEND_ORDER_STATUS, "order_number": "SO-2", "status": "PACKED"}]
    ingest(store, config, "scend", tmp_path, "order_status_1.csv", rows)
    [event] = events(store)
    assert (event.event_type, event.order_number, event.data.reason) == (
        "order.cancelled",
        "SO-100234",
        "Customer request",
    )


def test_renamed_columns_are_read_through_config(store: Store, config: Config, tmp_path: Path) -> None:
    config.sources.scend = ScendSettings(
        columns={"despatches": {"despatch_id": "Consignment", "tracking_number": "Tracking No", "sku": "Product"}}
    )
    renamed = {("Consignment" if k == "despatch_id" else "Tracking No" if k == "tracking_number" else
                "Product" if k == "sku" else k): v for k, v in SCEND_DESPATCH.items()}  # fmt: skip
    summary = ingest(store, config, "scend", tmp_path, "export.csv", [renamed])
    assert summary.kinds == {"despatches": 1}
    [event] = events(store)
    assert (event.data.shipment_id, event.data.parcels[0].tracking_number) == ("DSP-778812", "TT123456789GB")


def test_documented_webhook_despatch_equals_the_file_despatch(
    workspace: Workspace, store: Store, config: Config, tmp_path: Path
) -> None:
    ingest(store, config, "scend", tmp_path, "hooks.jsonl", jsonl([SCEND_WEBHOOK]))
    [event] = events(store)
    assert (event.data.shipment_id, event.data.is_final, event.source.transport) == ("DSP-778812", False, "file")
    assert [(i.sku, i.quantity) for i in event.data.parcels[0].items] == [("TSHIRT-M-BLK", 1)]
    # The same despatch arriving as an export later announces nothing new...
    ingest(store, config, "scend", tmp_path, "despatches_1.csv", [despatch(qty_ordered="", tracking_url="")])
    assert len(events(store)) == 1
    # ...unless it tells more (a tracking link): then the shipment is upgraded, not duplicated.
    ingest(store, config, "scend", tmp_path, "despatches_2.csv", [despatch(qty_ordered="")])
    first, upgrade = events(store)
    assert (upgrade.data.shipment_id, upgrade.data.supersedes) == ("DSP-778812", first.event_id)
    assert upgrade.data.parcels[0].tracking_url.endswith("TT123456789GB")


def test_webhook_return_stock_and_status_events(store: Store, config: Config, tmp_path: Path) -> None:
    bodies = [
        {"event": "return.received", "event_id": "e1", "occurred_at": "2025-05-09T10:22:00Z", "return_id": "R1",
         "order_number": "SO-1", "lines": [{"sku": "A", "qty": 1, "condition": "SELLABLE", "disposition": "RESTOCK",
                                             "qty_restocked": 1}]},
        {"event": "stock.snapshot", "event_id": "e2", "occurred_at": "2025-05-09T23:00:00Z", "site_code": "MK1",
         "levels": [{"sku": "A", "available": 4, "on_hand": 4}]},
        {"event": "stock.adjusted", "event_id": "e3", "occurred_at": "2025-05-10T08:00:00Z", "site_code": "MK1",
         "sku": "A", "bucket": "damaged", "qty": 1, "reason": "Dropped"},
        {"event": "order.status_changed", "event_id": "e4", "occurred_at": "2025-05-01T09:00:00Z",
         "order_number": "SO-9", "status": "CANCELLED"},
    ]  # fmt: skip
    ingest(store, config, "scend", tmp_path, "hooks.jsonl", jsonl(bodies))
    assert [e.event_type for e in events(store)] == [
        "return.received",
        "return.restocked",
        "stock.level_changed",
        "stock.level_changed",
        "order.cancelled",
    ]
    delta = events(store)[3].data
    assert (delta.mode, delta.delta.bucket, delta.delta.quantity) == ("delta", "damaged", 1)


def test_unknown_webhook_event_is_quarantined_naming_the_setting(store: Store, config: Config, tmp_path: Path) -> None:
    ingest(store, config, "scend", tmp_path, "hooks.jsonl", jsonl([{**SCEND_WEBHOOK, "event": "parcel.lost"}]))
    assert quarantined(store)[0][1].startswith(
        "event = 'parcel.lost': unknown Scend webhook event; map it under [sources.scend] webhook_events"
    )


def test_every_item_of_a_webhook_parcel_is_read_and_a_bad_one_quarantines_the_body(
    store: Store, config: Config, tmp_path: Path
) -> None:
    items = [{"sku": "A", "qty": 1}, {"sku": "B", "qty": 2, "qty_ordered": 3}, {"sku": "A", "qty": 1}]
    second = {"parcel_id": "PCL-2", "tracking_number": "TT2", "items": [{"sku": "C", "qty": 1}]}
    good = {**SCEND_WEBHOOK, "parcels": [{**SCEND_WEBHOOK["parcels"][0], "items": items}, second]}
    bad = {
        **good,
        "event_id": "evt_bad",
        "despatch_id": "DSP-2",
        "parcels": [{**second, "items": [*items, {"sku": "D"}]}],
    }
    ingest(store, config, "scend", tmp_path, "hooks.jsonl", jsonl([good, bad]))
    [event] = events(store)
    parcels = [(p.parcel_id, p.tracking_number, [(i.sku, i.quantity) for i in p.items]) for p in event.data.parcels]
    assert parcels == [("PCL-1", "TT123456789GB", [("A", 2), ("B", 2)]), ("PCL-2", "TT2", [("C", 1)])]
    assert [reason for _, reason in quarantined(store)] == ["qty_despatched = None: is required"]
