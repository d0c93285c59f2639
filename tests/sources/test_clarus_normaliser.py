"""Clarus WMS payloads (the documented examples in clarus.md) become the right normalised events."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from marketplace_returns_support import (
    Pipeline,
    json_block,
    json_values,
    memory_store,
    mutated,
    payload_of,
    run_directly,
    with_sources,
)

from cogent_cli.normalise.base import NormaliseError
from cogent_cli.state import Store
from cogent_cli.workspace import Workspace


@pytest.fixture
def clarus_md(reference: Path) -> str:
    return (reference / "clarus.md").read_text(encoding="utf-8")


@pytest.fixture
def store(workspace: Workspace) -> Store:
    return workspace.store()


def pipeline(workspace: Workspace, store: Store, **clarus: Any) -> Pipeline:
    return Pipeline(store, with_sources(workspace.config, clarus={"subdomain": "acme", **clarus}))


def webhook_example(clarus_md: str) -> dict[str, Any]:
    return json_block(clarus_md, "Proposed expectation")


def shipments_example(clarus_md: str) -> dict[str, Any]:
    return payload_of(json_block(clarus_md, "`ListShipments`"))


def test_documented_webhook_body_becomes_one_despatch_with_package_tracking(
    workspace: Workspace, store: Store, clarus_md: str
) -> None:
    events = pipeline(workspace, store).feed("clarus", "clarus_webhook", webhook_example(clarus_md))

    assert [e.event_type for e in events] == ["shipment.despatched"]
    event = events[0]
    assert event.source.system == "clarus"
    assert event.source.tenant == "acme"
    assert event.source.transport == "webhook"
    assert event.occurred_at == datetime(2026, 3, 10, 14, 30, tzinfo=UTC)
    assert event.order_ref is not None
    assert event.order_ref.order_number == "EXT-001"
    assert event.order_ref.source_order_id == "SO-2026-008812"
    data = event.data
    assert data.shipment_id == "SH-001"
    assert data.despatched_at == datetime(2026, 3, 10, 14, 30, tzinfo=UTC)
    assert data.tracking_granularity == "parcel"
    assert len(data.parcels) == 1
    parcel = data.parcels[0]
    assert parcel.tracking_number == "1Z..."
    assert parcel.ship_method is not None
    assert (parcel.ship_method.carrier_code, parcel.ship_method.service_code) == ("DPD", "NEXT")
    assert [(i.sku, i.quantity) for i in data.items or []] == [("WIDGET-RED-500", 100)]
    assert (data.is_final, data.is_partial) == (True, False)
    assert not data.pending_items


def test_documented_shipment_node_uses_shipment_level_tracking_and_its_carrier(
    workspace: Workspace, store: Store, clarus_md: str
) -> None:
    events = pipeline(workspace, store).feed("clarus", "clarus_shipment", shipments_example(clarus_md), route="pull")

    assert len(events) == 1
    data = events[0].data
    assert events[0].source.transport == "poll"
    assert data.shipment_id == "SH-001"
    assert data.despatched_at == datetime(2026, 3, 10, 14, 0, tzinfo=UTC)
    assert data.site == "WH1"
    assert data.tracking_granularity == "shipment"
    method = data.parcels[0].ship_method
    assert method is not None
    assert method.model_dump() == {
        "carrier_code": "DPD",
        "carrier_name": "DPD",
        "service_code": "NEXT",
        "service_name": "Next Day",
    }


def test_shipment_not_yet_dispatched_announces_nothing(workspace: Workspace, store: Store, clarus_md: str) -> None:
    node = shipments_example(clarus_md)
    feed = pipeline(workspace, store)
    for status in ("packed", "picked", "allocated"):
        assert feed.feed("clarus", "clarus_shipment", {**node, "status": status}) == []


def test_each_package_is_one_parcel_and_upgrades_the_shipment_level_event(
    workspace: Workspace, store: Store, clarus_md: str
) -> None:
    feed = pipeline(workspace, store)
    node = shipments_example(clarus_md)
    first = feed.feed("clarus", "clarus_shipment", node)
    packages = {
        "edges": [
            {"node": {"id": "71", "tracking_number": "1ZAAA", "shipment": {"id": "1", "reference": "SH-001"}}},
            {"node": {"id": "72", "tracking_number": "1ZBBB", "shipment": {"id": "1", "reference": "SH-001"}}},
        ]
    }
    upgraded = feed.feed("clarus", "clarus_shipment", {**node, "packages": packages})

    assert len(upgraded) == 1
    data = upgraded[0].data
    assert data.tracking_granularity == "parcel"
    assert [(p.parcel_id, p.tracking_number) for p in data.parcels] == [("71", "1ZAAA"), ("72", "1ZBBB")]
    assert data.supersedes == first[0].event_id
    assert data.shipment_id == first[0].data.shipment_id
    # The same picture again is not announced a third time.
    assert feed.feed("clarus", "clarus_shipment", {**node, "packages": packages}) == []


def test_goods_out_lines_feed_the_ledger_so_a_short_despatch_is_partial(
    workspace: Workspace, store: Store, clarus_md: str
) -> None:
    feed = pipeline(workspace, store)
    line = payload_of(json_block(clarus_md, "`ListGoodsOutLines`"))
    assert feed.feed("clarus", "clarus_goods_out_line", line, route="pull") == []

    body = webhook_example(clarus_md)
    body = {**body, "external_system_reference1": None}
    body["lines"] = [{"product": {"code": "WIDGET-RED-500"}, "order_quantity": 100, "dispatch_quantity": 60}]
    [event] = feed.feed("clarus", "clarus_webhook", body)

    assert event.order_ref is not None and event.order_ref.order_number == "SO-2026-008812"
    assert (event.data.is_partial, event.data.is_final) == (True, False)
    assert [(i.sku, i.quantity) for i in event.data.pending_items or []] == [("WIDGET-RED-500", 40)]


def test_shorted_line_does_not_keep_the_order_open(workspace: Workspace, store: Store, clarus_md: str) -> None:
    body = webhook_example(clarus_md)
    body["lines"] = [
        {"product": {"code": "WIDGET-RED-500"}, "order_quantity": 100, "dispatch_quantity": 60, "short_status": "S"}
    ]
    [event] = pipeline(workspace, store).feed("clarus", "clarus_webhook", body)
    assert (event.data.is_partial, event.data.is_final) == (False, True)


def test_goods_out_still_being_picked_is_not_a_despatch(workspace: Workspace, store: Store, clarus_md: str) -> None:
    feed = pipeline(workspace, store)
    seen = []
    for code in ("PENDING", "ALLOCATED", "PICK", "PART_ALLOCATED"):
        body = {**webhook_example(clarus_md), "goods_out_status": {"code": code}}
        seen.extend(event.event_type for event in feed.feed("clarus", "clarus_webhook", body))
    # The warehouse received the order once; nothing was despatched.
    assert seen == ["order.placed"]


def test_unknown_status_is_quarantined_until_mapped(workspace: Workspace, store: Store, clarus_md: str) -> None:
    feed = pipeline(workspace, store)
    body = {**webhook_example(clarus_md), "goods_out_status": {"code": "SHIPPED_EXT"}}
    row_id = feed.receive("clarus", "clarus_webhook", body)
    row = feed.inbox.get(row_id)
    assert row.status == "quarantined"
    assert row.reason is not None
    assert row.reason.startswith("goods_out_status.code = 'SHIPPED_EXT': unknown clarus status")
    assert "[mapping.status.clarus]" in row.reason

    config = feed.config.model_copy(update={"mapping": feed.config.mapping.model_copy(
        update={"status": {"clarus": {"SHIPPED_EXT": "despatched"}}})})  # fmt: skip
    feed.inbox.retry([row_id])
    feed.inbox.normalise_pending(config, ids=[row_id])
    assert feed.inbox.get(row_id).status == "normalised"
    assert [e.event_type for e in feed.events(row_id)] == ["shipment.despatched"]


def test_order_number_field_is_configurable(workspace: Workspace, store: Store, clarus_md: str) -> None:
    feed = pipeline(workspace, store, order_number_field="reference")
    [event] = feed.feed("clarus", "clarus_webhook", webhook_example(clarus_md))
    assert event.order_ref is not None and event.order_ref.order_number == "SO-2026-008812"


def test_dispatched_goods_out_without_shipments_is_quarantined_unless_fallback_is_on(
    workspace: Workspace, store: Store, clarus_md: str
) -> None:
    body = {key: value for key, value in webhook_example(clarus_md).items() if key != "shipments"}
    strict = pipeline(workspace, store)
    row = strict.inbox.get(strict.receive("clarus", "clarus_webhook", body))
    assert row.status == "quarantined"
    assert row.reason is not None and "goods_out_shipment_fallback" in row.reason

    lenient = Pipeline(store, with_sources(workspace.config, clarus={"goods_out_shipment_fallback": True}))
    [event] = lenient.feed("clarus", "clarus_webhook", body, key="again")
    assert event.data.shipment_id == "SO-2026-008812"
    assert event.data.tracking_granularity == "shipment"
    assert [(i.sku, i.quantity) for i in event.data.items or []] == [("WIDGET-RED-500", 100)]


def test_cancelled_goods_out_is_an_order_cancellation(workspace: Workspace, store: Store, clarus_md: str) -> None:
    body = {**webhook_example(clarus_md), "goods_out_status": {"code": "CANCELLED"}, "shipments": []}
    [event] = pipeline(workspace, store).feed("clarus", "clarus_webhook", body)
    assert event.event_type == "order.cancelled"
    assert event.data.scope == "full"
    assert event.order_ref is not None and event.order_ref.order_number == "EXT-001"


def test_documented_stock_balance_is_a_snapshot_and_repeats_are_silent(
    workspace: Workspace, store: Store, clarus_md: str
) -> None:
    feed = pipeline(workspace, store)
    node = payload_of(json_block(clarus_md, "`ListStockBalances`"))
    [event] = feed.feed("clarus", "clarus_stock_balance", node, route="pull")

    data = event.data
    assert data.sku == "WIDGET-RED-500"
    assert data.location.site == "2"
    assert data.location.stock_owner == "ACME"
    assert data.mode == "snapshot"
    assert data.sellable is not None
    assert (data.sellable.available, data.sellable.allocated) == (1380, 120)
    assert data.inbound is not None and data.inbound.on_order == 500
    assert data.back_in_stock is False
    assert feed.feed("clarus", "clarus_stock_balance", node, route="pull") == []


def test_stock_balance_back_from_zero_is_flagged_back_in_stock(
    workspace: Workspace, store: Store, clarus_md: str
) -> None:
    feed = pipeline(workspace, store)
    node = payload_of(json_block(clarus_md, "`ListStockBalances`"))
    feed.feed("clarus", "clarus_stock_balance", {**node, "available": 0, "updated_at": "2026-03-10T10:00:00Z"})
    [event] = feed.feed(
        "clarus", "clarus_stock_balance", {**node, "available": 5, "updated_at": "2026-03-10T11:00:00Z"}
    )
    assert event.data.back_in_stock is True


def test_documented_stock_record_counts_as_sellable_at_its_location(
    workspace: Workspace, store: Store, clarus_md: str
) -> None:
    node = payload_of(json_block(clarus_md, "`ListStocks`"))
    [event] = pipeline(workspace, store).feed("clarus", "clarus_stock", node, route="pull")
    data = event.data
    assert data.location.bin == "AISLE-04-BAY-12"
    assert data.location.stock_owner == "ACME"
    assert data.sellable is not None and data.sellable.on_hand == 240
    assert not (data.non_sellable and data.non_sellable.quarantine)


@pytest.mark.parametrize(
    ("status", "bucket"),
    [("quarantined", "quarantine"), ("awaiting_qc", "returns_pending_qc"), ("on_hold_other", "on_hold")],
)
def test_stock_on_hold_is_never_sellable(
    workspace: Workspace, store: Store, clarus_md: str, status: str, bucket: str
) -> None:
    node = {**payload_of(json_block(clarus_md, "`ListStocks`")), "status": status}
    [event] = pipeline(workspace, store).feed("clarus", "clarus_stock", node)
    data = event.data
    assert data.sellable is not None and (data.sellable.on_hand, data.sellable.available) == (0, 0)
    assert data.non_sellable is not None
    assert getattr(data.non_sellable, bucket) == 240


def test_stock_webhook_record_is_read_by_its_type(workspace: Workspace, store: Store, clarus_md: str) -> None:
    node = {**payload_of(json_block(clarus_md, "`ListStocks`")), "type": "stocks", "status": "quarantined"}
    [event] = pipeline(workspace, store).feed("clarus", "clarus_webhook", node)
    assert event.event_type == "stock.level_changed"
    assert event.data.non_sellable is not None and event.data.non_sellable.quarantine == 240


def test_package_weight_and_bad_quantities_are_validated(workspace: Workspace, store: Store, clarus_md: str) -> None:
    feed = pipeline(workspace, store)
    body = webhook_example(clarus_md)
    body["lines"][0]["dispatch_quantity"] = -3
    row = feed.inbox.get(feed.receive("clarus", "clarus_webhook", body))
    assert row.status == "quarantined"
    assert row.reason == "lines[0].dispatch_quantity = -3: must be at least 0"


FUZZ_STORE = memory_store()
EXAMPLES = ("Proposed expectation", "`ListShipments`", "`ListStocks`", "`ListStockBalances`", "`ListGoodsOutLines`")
KINDS = ("clarus_webhook", "clarus_shipment", "clarus_stock", "clarus_stock_balance", "clarus_goods_out_line",
         "clarus_goods_out")  # fmt: skip


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_no_input_crashes_the_clarus_normalisers(workspace: Workspace, clarus_md: str, data: st.DataObject) -> None:
    store = FUZZ_STORE
    config = with_sources(workspace.config, clarus={"subdomain": "acme"})
    marker = data.draw(st.sampled_from(EXAMPLES))
    example = json_block(clarus_md, marker)
    if "data" in example:
        example = payload_of(example)
    record = data.draw(st.one_of(mutated(copy.deepcopy(example)), json_values))
    kind = data.draw(st.sampled_from(KINDS))
    try:
        run_directly(store, config, "clarus", kind, record)
    except NormaliseError as exc:
        assert exc.field and exc.rule
