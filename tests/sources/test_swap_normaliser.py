"""Swap Commerce returns (the documented payload in swap.md) become return and refund events."""

from __future__ import annotations

import copy
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import jwt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from marketplace_returns_support import (
    Pipeline,
    json_block,
    json_values,
    memory_store,
    mutated,
    run_directly,
    with_sources,
)

from cogent_cli.normalise.base import NormaliseError
from cogent_cli.workspace import Workspace

SECRET = "whsk_0123456789abcdef0123456789abcdef"


def signed(body: dict[str, Any], event: str, return_id: str = "ret_abc") -> dict[str, Any]:
    now = int(time.time())
    claims = {"event": event, "return_id": return_id, "exp": now + 300, "iat": now, "nonce": "n", "store_id": "s"}
    return {**body, "jwt": jwt.encode(claims, SECRET, algorithm="HS256")}


@pytest.fixture
def example(reference: Path) -> dict[str, Any]:
    return json_block((reference / "swap.md").read_text(encoding="utf-8"), "Reconstructed complete example")


@pytest.fixture
def feed(workspace: Workspace) -> Pipeline:
    return Pipeline(workspace.store(), with_sources(workspace.config, swap={"store_id": "store_123abc"}))


def test_return_created_webhook_is_a_lodged_return(feed: Pipeline, example: dict[str, Any]) -> None:
    [event] = feed.feed("swap", "swap_webhook", signed(example, "returnCreated"))

    assert event.event_type == "return.lodged"
    assert event.occurred_at == datetime(2024, 1, 10, 9, 12, tzinfo=UTC)
    assert event.source.tenant == "store_123abc"
    assert event.source.native_event == "returnCreated"
    assert event.source.dedupe_key == "return.lodged|ret_abc"
    assert event.source.native_ids == {"return_id": "ret_abc", "rma": "1042"}
    assert event.customer is not None
    assert (event.customer.email, event.customer.first_name, event.customer.last_name) == (
        "jane@example.com",
        "Jane",
        "Doe",
    )
    assert event.order_ref is not None
    assert (event.order_ref.order_number, event.order_ref.source_order_id) == ("SW-P022", "5597137207520")
    data = event.data
    assert (data.return_id, data.rma_number, data.status, data.native_status) == ("ret_abc", "1042", "lodged", "Open")
    assert data.return_types == ["Refund"]
    assert data.return_shipment is not None
    assert (data.return_shipment.carrier, data.return_shipment.status) == ("Royal Mail", "In-Transit")
    assert data.expected_refund is not None
    assert (data.expected_refund.amount, data.expected_refund.currency) == (Decimal("59.00"), "GBP")
    [line] = data.lines
    assert (line.sku, line.quantity, line.reason_code, line.reason_text) == ("TSHIRT-M-BLK", 1, "r1", "Too small")
    assert line.sub_reason_text is None
    assert line.resolution == "refund"
    assert line.disposition == "pending"
    assert line.unit_price is not None and line.unit_price.amount == Decimal("59.00")


def test_return_processed_webhook_adds_the_refund_with_source_line_amounts(
    feed: Pipeline, example: dict[str, Any]
) -> None:
    feed.feed("swap", "swap_webhook", signed(example, "returnCreated"))
    events = feed.feed("swap", "swap_webhook", signed(example, "returnProcessed"))

    # The lodging is already known, so only the refund is new.
    assert [e.event_type for e in events] == ["refund.processed"]
    refund = events[0]
    assert refund.occurred_at == datetime(2024, 1, 12, 15, 40, tzinfo=UTC)
    data = refund.data
    assert (data.refund_id, data.return_id, data.method) == ("ret_abc", "ret_abc", "original_payment")
    assert (data.total.amount, data.total.currency) == (Decimal("59.00"), "GBP")
    assert data.line_amounts_basis == "source"
    [line] = data.lines
    assert (line.sku, line.quantity, line.amount.amount) == ("TSHIRT-M-BLK", 1, Decimal("59.00"))


def test_refund_without_product_costs_is_allocated_pro_rata_to_the_cent(
    feed: Pipeline, example: dict[str, Any]
) -> None:
    ret = copy.deepcopy(example["return"])
    ret["total_refund_value_customer_currency"] = 100.0
    ret["products"] = [
        {**ret["products"][0], "cost": None, "item_count": 1, "sku": "A"},
        {**ret["products"][0], "cost": None, "item_count": 2, "sku": "B"},
    ]
    events = feed.feed("swap", "swap_webhook", signed({"return": ret}, "returnProcessed"))
    refund = next(e for e in events if e.event_type == "refund.processed")

    assert refund.data.line_amounts_basis == "allocated_pro_rata"
    assert [(line.sku, line.amount.amount) for line in refund.data.lines] == [
        ("A", Decimal("33.33")),
        ("B", Decimal("66.67")),
    ]
    assert sum(line.amount.amount for line in refund.data.lines) == Decimal("100.00")


def test_costs_above_the_refunded_total_show_the_deduction(feed: Pipeline, example: dict[str, Any]) -> None:
    ret = {**example["return"], "total_refund_value_customer_currency": 55.5}
    events = feed.feed("swap", "swap_webhook", signed({"return": ret}, "returnProcessed"))
    refund = next(e for e in events if e.event_type == "refund.processed")
    assert refund.data.total.amount == Decimal("55.5")
    assert refund.data.deductions is not None
    assert refund.data.deductions[0].amount is not None
    assert refund.data.deductions[0].amount.amount == Decimal("3.5")


def test_store_credit_return_is_refunded_as_store_credit(feed: Pipeline, example: dict[str, Any]) -> None:
    ret = {
        **example["return"],
        "type": ["Shop Later Credit"],
        "total_refund_value_customer_currency": 0,
        "total_store_credit_value_customer_currency": 59.0,
    }
    ret["products"] = [{**ret["products"][0], "return_type": "Shop Later Credit"}]
    events = feed.feed("swap", "swap_webhook", signed({"return": ret}, "returnProcessed"))
    refund = next(e for e in events if e.event_type == "refund.processed")
    assert refund.data.method == "store_credit"
    assert refund.data.total.amount == Decimal("59.0")


def test_exchange_without_money_back_has_no_refund(feed: Pipeline, example: dict[str, Any]) -> None:
    ret = {**example["return"], "type": ["Exchange"], "total_refund_value_customer_currency": 0}
    events = feed.feed("swap", "swap_webhook", signed({"return": ret}, "returnProcessed"))
    assert "refund.processed" not in [e.event_type for e in events]


def test_quality_control_outcome_drives_received_approved_and_restocked(
    feed: Pipeline, example: dict[str, Any]
) -> None:
    ret = copy.deepcopy(example["return"])
    ret.update(
        {
            "return_status": "Open",
            "delivery_status": "Delivered",
            "rma_number": "1042",
            "date_updated": "2024-01-11T10:00:00Z",
        }
    )
    del ret["status"], ret["shipping_status"], ret["rma"]
    ret["products"] = [
        {**ret["products"][0], "sku": "GOOD", "condition": "Sellable", "sub_reason_text": "Fits badly"},
        {**ret["products"][0], "sku": "BAD", "condition": "Damaged"},
    ]
    events = feed.feed("swap", "swap_return", ret, route="pull")
    by_type = {e.event_type: e for e in events}

    assert list(by_type) == ["return.lodged", "return.received", "return.approved", "return.restocked"]
    received = by_type["return.received"].data
    assert received.status == "received"
    assert received.return_shipment is not None and received.return_shipment.status == "Delivered"
    assert {(line.sku, line.condition, line.quantity_received) for line in received.lines} == {
        ("GOOD", "sellable", 1),
        ("BAD", "damaged", 1),
    }
    assert [line.sku for line in by_type["return.approved"].data.lines] == ["GOOD"]
    [restocked] = by_type["return.restocked"].data.lines
    assert (restocked.sku, restocked.disposition, restocked.quantity_restocked) == ("GOOD", "restock", 1)
    assert restocked.sub_reason_text == "Fits badly"
    bad = next(line for line in received.lines if line.sku == "BAD")
    assert bad.disposition == "quarantine"
    assert by_type["return.received"].occurred_at == datetime(2024, 1, 11, 10, tzinfo=UTC)


def test_the_same_return_seen_by_webhook_and_pull_is_one_fact(feed: Pipeline, example: dict[str, Any]) -> None:
    feed.feed("swap", "swap_webhook", signed(example, "returnCreated"))
    assert feed.feed("swap", "swap_return", example["return"], route="pull") == []
    assert len(feed.all_events()) == 1


def test_closed_return_pulled_later_yields_its_refund(feed: Pipeline, example: dict[str, Any]) -> None:
    ret = {**example["return"], "status": "Closed"}
    events = feed.feed("swap", "swap_return", ret, route="pull")
    assert [e.event_type for e in events] == ["return.lodged", "refund.processed"]
    assert events[0].data.status == "closed"


def test_order_number_field_is_configurable(workspace: Workspace, example: dict[str, Any]) -> None:
    feed = Pipeline(workspace.store(), with_sources(workspace.config, swap={"order_number_field": "order_id"}))
    [event] = feed.feed("swap", "swap_webhook", signed(example, "returnCreated"))
    assert event.order_ref is not None and event.order_ref.order_number == "5597137207520"


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"return_id": None}, "return.return_id = None: is required"),
        ({"customer_currency": "pounds"}, "return.customer_currency = 'pounds': must be an ISO 4217 code such as GBP"),
        ({"date_created": "10/01/2024"}, "return.date_created = '10/01/2024': must be an ISO 8601 date-time"),
    ],
)
def test_invalid_returns_are_quarantined_with_field_value_and_rule(
    feed: Pipeline, example: dict[str, Any], change: dict[str, Any], reason: str
) -> None:
    ret = {**example["return"], **change}
    row = feed.inbox.get(feed.receive("swap", "swap_webhook", signed({"return": ret}, "returnCreated")))
    assert row.status == "quarantined"
    assert row.reason == reason


def test_webhook_with_an_unknown_event_is_quarantined(feed: Pipeline, example: dict[str, Any]) -> None:
    row = feed.inbox.get(feed.receive("swap", "swap_webhook", signed(example, "returnDeleted")))
    assert row.status == "quarantined"
    assert row.reason == "jwt.event = 'returnDeleted': must be returnCreated or returnProcessed"


FUZZ_STORE = memory_store()


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_no_input_crashes_the_swap_normalisers(
    workspace: Workspace, example: dict[str, Any], data: st.DataObject
) -> None:
    config = with_sources(workspace.config, swap={"store_id": "s"})
    kind = data.draw(st.sampled_from(["swap_webhook", "swap_return"]))
    base = signed(example, data.draw(st.sampled_from(["returnCreated", "returnProcessed"])))
    if kind == "swap_return":
        base = {**example["return"], "status": data.draw(st.sampled_from(["Open", "Closed", "On Hold"]))}
    record = data.draw(st.one_of(mutated(base), json_values))
    try:
        run_directly(FUZZ_STORE, config, "swap", kind, record)
    except NormaliseError as exc:
        assert exc.field and exc.rule
