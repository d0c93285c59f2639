"""Marketplacer webhook bodies and GraphQL nodes (marketplacer.md examples) become normalised events."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from decimal import Decimal
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
    run_directly,
    with_sources,
)

from cogent_cli.normalise.base import NormaliseError
from cogent_cli.workspace import Workspace

HEADERS = {
    "Idempotency-Key": "YmVzdGZyaWVuZGJhemFhcjoyNTUy",
    "Marketplacer-Sequence": "2552",
    "Marketplacer-Vertical": "bestfriendbazaar",
}
INVOICE_ID = "SW52b2ljZS0xMzczNw=="
LINE_ID = "TGluZUl0ZW0tNDA5Nw=="


@pytest.fixture
def marketplacer_md(reference: Path) -> str:
    return (reference / "marketplacer.md").read_text(encoding="utf-8")


@pytest.fixture
def feed(workspace: Workspace) -> Pipeline:
    config = with_sources(workspace.config, marketplacer={"tenant": "bestfriendbazaar", "currency": "AUD"})
    return Pipeline(workspace.store(), config)


@pytest.fixture
def invoice_body(marketplacer_md: str) -> dict[str, Any]:
    return json_block(marketplacer_md, "Expected body for the Invoice query")


def envelope(node: dict[str, Any], event_name: str = "update") -> dict[str, Any]:
    return {"id": "V2ViaG9va0V2ZW50LTE51", "event_name": event_name, "payload": {"data": {"node": node}}}


def invoice_node(**changes: Any) -> dict[str, Any]:
    node = {
        "__typename": "Invoice",
        "id": INVOICE_ID,
        "legacyId": 13737,
        "createdAt": "2024-03-26T23:59:00Z",
        "updatedAt": "2024-03-27T00:10:00Z",
        "statusFlags": ["PAID"],
        "buyerFirstName": "Jane",
        "buyerSurname": "Doe",
        "buyerEmailAddress": "jane@example.com",
        "seller": {"id": "U2VsbGVyLTQ=", "businessName": "Cell Phones 4U"},
        "lineItems": [{"id": LINE_ID, "variantSku": "SKU-1", "quantity": 2, "variantName": "Phone case"}],
        "shipments": [],
    }
    node.update(changes)
    return node


def shipment(shipment_id: str, quantity: int, at: str) -> dict[str, Any]:
    return {
        "id": shipment_id,
        "trackingNumber": f"AU{shipment_id}",
        "trackingLink": f"https://track.example/AU{shipment_id}",
        "carrier": "Australia Post",
        "dispatchedAt": at,
        "shippedItems": [{"id": f"si-{shipment_id}", "quantity": quantity, "lineItem": {"id": LINE_ID}}],
    }


def test_documented_invoice_body_gives_the_order_and_its_first_shipment(
    feed: Pipeline, invoice_body: dict[str, Any]
) -> None:
    placed, despatched = feed.feed("marketplacer", "marketplacer_webhook", invoice_body, headers=HEADERS)

    assert placed.event_type == "order.placed"
    assert placed.source.tenant == "bestfriendbazaar"
    assert placed.source.native_event == "Invoice/update"
    assert placed.source.sequence == 2552
    assert placed.source.native_ids["vertical"] == "bestfriendbazaar"
    assert placed.source.native_ids["invoice_id"] == INVOICE_ID
    assert placed.customer is not None and placed.customer.email == "jane@example.com"
    assert placed.order_ref is not None
    assert (placed.order_ref.order_number, placed.order_ref.sub_order_id) == ("13737", INVOICE_ID)
    assert placed.data.native_status == ["PAID", "PARTIALLY_SENT"]
    assert placed.data.status == "partially_despatched"
    [line] = placed.data.lines
    assert (line.line_id, line.sku, line.quantity) == (LINE_ID, "SKU-1", 2)

    assert despatched.event_type == "shipment.despatched"
    assert despatched.source.sequence == 2552
    assert despatched.occurred_at == datetime(2024, 3, 27, 0, 8, 29, tzinfo=UTC)
    data = despatched.data
    assert data.tracking_granularity == "shipment"
    [parcel] = data.parcels
    assert (parcel.tracking_number, parcel.tracking_url) == ("AU123456789", "https://…")
    assert parcel.ship_method is not None and parcel.ship_method.carrier_name == "Australia Post"
    assert [(i.sku, i.line_id, i.quantity) for i in parcel.items] == [("SKU-1", LINE_ID, 1)]
    assert (data.is_partial, data.is_final) == (True, False)
    assert [(i.sku, i.quantity) for i in data.pending_items or []] == [("SKU-1", 1)]


def test_split_shipment_sends_one_event_per_shipment_and_the_last_is_final(feed: Pipeline) -> None:
    first = shipment("1", 1, "2024-03-27T00:08:29Z")
    feed.feed("marketplacer", "marketplacer_webhook", envelope(invoice_node(shipments=[first])))
    second = shipment("2", 1, "2024-03-28T09:00:00Z")
    events = feed.feed(
        "marketplacer",
        "marketplacer_webhook",
        envelope(invoice_node(statusFlags=["PAID", "SENT"], shipments=[first, second])),
    )
    assert [e.event_type for e in events] == ["shipment.despatched"]
    assert events[0].data.shipment_id == "2"
    assert (events[0].data.is_partial, events[0].data.is_final) == (False, True)


def test_documented_advert_body_reports_stock_of_each_variant_with_a_sku(feed: Pipeline, marketplacer_md: str) -> None:
    body = json_block(marketplacer_md, "Advert create")
    [event] = feed.feed("marketplacer", "marketplacer_webhook", body, headers=HEADERS)
    assert event.event_type == "stock.level_changed"
    data = event.data
    assert (data.sku, data.location.site, data.mode) == ("productTest", "marketplace", "snapshot")
    assert data.sellable is not None and (data.sellable.on_hand, data.sellable.available) == (1, 1)
    assert event.source.native_ids["variant_id"] == "VmFyaWFudC0yMQ=="


def test_documented_seller_body_is_stored_without_events(feed: Pipeline, marketplacer_md: str) -> None:
    body = json_block(marketplacer_md, "Seller update")
    assert feed.feed("marketplacer", "marketplacer_webhook", body) == []


def test_variant_back_from_zero_is_back_in_stock_and_infinite_is_kept(feed: Pipeline) -> None:
    variant = {"__typename": "Variant", "id": "VmFyaWFudC0yMQ==", "sku": "SKU-1", "countOnHand": 0}
    feed.feed("marketplacer", "marketplacer_variant", {**variant, "updatedAt": "2024-03-01T00:00:00Z"}, route="pull")
    [event] = feed.feed(
        "marketplacer", "marketplacer_variant", {**variant, "countOnHand": 3, "updatedAt": "2024-03-02T00:00:00Z"}
    )
    assert event.data.back_in_stock is True
    [infinite] = feed.feed(
        "marketplacer",
        "marketplacer_variant",
        {**variant, "countOnHand": 0, "infiniteQuantity": True, "updatedAt": "2024-03-03T00:00:00Z"},
    )
    assert infinite.data.infinite is True


def test_order_number_comes_from_the_configured_external_id(workspace: Workspace) -> None:
    config = with_sources(workspace.config, marketplacer={"order_external_id_key": "shopify_order_name"})
    feed = Pipeline(workspace.store(), config)
    order = {
        "legacyId": 555,
        "externalIds": [{"key": "erp", "value": "E-1"}, {"key": "shopify_order_name", "value": "#1001"}],
    }
    [placed] = feed.feed("marketplacer", "marketplacer_webhook", envelope(invoice_node(order=order), "create"))
    assert placed.order_ref is not None and placed.order_ref.order_number == "#1001"


def test_update_that_changes_quantities_is_an_edit(feed: Pipeline) -> None:
    feed.feed("marketplacer", "marketplacer_webhook", envelope(invoice_node(), "create"))
    lines = [{"id": LINE_ID, "variantSku": "SKU-1", "quantity": 1}, {"id": "L2", "variantSku": "SKU-2", "quantity": 1}]
    [edited] = feed.feed("marketplacer", "marketplacer_webhook", envelope(invoice_node(lineItems=lines)))
    assert edited.event_type == "order.edited"
    assert [(c.path, c.old, c.new) for c in edited.data.changes or []] == [
        ("lines[SKU-1].quantity", 2, 1),
        ("lines[SKU-2].quantity", None, 1),
    ]
    # An update that changes nothing on the lines is not an edit.
    assert feed.feed("marketplacer", "marketplacer_webhook", envelope(invoice_node(lineItems=lines, note="x"))) == []


def test_another_sellers_invoice_of_the_same_order_is_not_an_edit(feed: Pipeline) -> None:
    order = {"legacyId": 900}
    feed.feed("marketplacer", "marketplacer_webhook", envelope(invoice_node(order=order), "create"))
    other = invoice_node(id="SW52b2ljZS0y", order=order, lineItems=[{"id": "L9", "variantSku": "SKU-9", "quantity": 1}])
    feed.feed("marketplacer", "marketplacer_webhook", envelope(other, "create"))
    assert feed.feed("marketplacer", "marketplacer_webhook", envelope(invoice_node(order=order))) == []


def test_cancelled_flag_cancels_the_order(feed: Pipeline) -> None:
    feed.feed("marketplacer", "marketplacer_webhook", envelope(invoice_node(), "create"))
    [cancelled] = feed.feed(
        "marketplacer", "marketplacer_webhook", envelope(invoice_node(statusFlags=["PAID", "CANCELLED"]))
    )
    assert cancelled.event_type == "order.cancelled"
    assert (cancelled.data.scope, cancelled.data.refund_expected) == ("full", True)


def test_explicit_opt_in_becomes_consent_but_an_order_email_never_does(feed: Pipeline) -> None:
    events = feed.feed("marketplacer", "marketplacer_webhook", envelope(invoice_node(), "create"))
    assert "consent.changed" not in [e.event_type for e in events]

    events = feed.feed(
        "marketplacer",
        "marketplacer_webhook",
        envelope(invoice_node(id="SW52b2ljZS0y", buyerMarketingOptIn=True), "create"),
    )
    [consent] = [e for e in events if e.event_type == "consent.changed"]
    assert consent.customer is not None and consent.customer.email == "jane@example.com"
    assert (consent.data.channel, consent.data.status) == ("email", "subscribed")
    assert consent.data.method == "marketplacer:buyerMarketingOptIn"
    assert consent.confidence == "assumed"


def refund_request(status: str, line_status: str, *, shipped: bool, **line: Any) -> dict[str, Any]:
    flags = ["PAID", "SENT"] if shipped else ["PAID"]
    return {
        "__typename": "RefundRequest",
        "id": "UmVmdW5kUmVxdWVzdC0x",
        "status": status,
        "createdAt": "2024-04-01T10:00:00Z",
        "updatedAt": "2024-04-03T10:00:00Z",
        "invoice": {
            "id": INVOICE_ID,
            "legacyId": 13737,
            "statusFlags": flags,
            "buyerEmailAddress": "jane@example.com",
            "lineItems": [{"id": LINE_ID, "variantSku": "SKU-1", "quantity": 2}],
            "shipments": [{"id": "1"}] if shipped else [],
        },
        "lineItems": [
            {
                "id": "RRL-1",
                "reason": "Too small",
                "quantity": 2,
                "status": line_status,
                "lineItem": {"id": LINE_ID},
                **line,
            }
        ],
    }


def test_refund_request_before_dispatch_is_a_cancellation_with_its_refund(feed: Pipeline) -> None:
    node = refund_request("REFUNDED", "REFUNDED", shipped=False, amount="$25.00")
    cancelled, refund = feed.feed("marketplacer", "marketplacer_refund_request", node, route="pull")

    assert cancelled.event_type == "order.cancelled"
    assert (cancelled.data.scope, cancelled.data.reason) == ("full", "Too small")
    assert [(line.sku, line.quantity) for line in cancelled.data.cancelled_lines or []] == [("SKU-1", 2)]
    assert refund.event_type == "refund.processed"
    assert refund.data.line_amounts_basis == "source"
    assert (refund.data.total.amount, refund.data.total.currency) == (Decimal("25.00"), "AUD")
    assert [(line.sku, line.amount.amount) for line in refund.data.lines] == [("SKU-1", Decimal("25.00"))]


@pytest.mark.parametrize(
    ("status", "line_status", "expected"),
    [
        ("AWAITING", "PENDING_APPROVAL", ["return.lodged"]),
        ("AWAITING", "AWAITING_RETURN", ["return.lodged", "return.approved"]),
        ("RETURNED", "AWAITING_RETURN", ["return.lodged", "return.approved", "return.received"]),
        ("DENIED", "REFUND_DENIED", ["return.lodged"]),
    ],
)
def test_refund_request_after_dispatch_follows_the_return_lifecycle(
    feed: Pipeline, status: str, line_status: str, expected: list[str]
) -> None:
    events = feed.feed("marketplacer", "marketplacer_refund_request", refund_request(status, line_status, shipped=True))
    assert [e.event_type for e in events] == expected
    lodged = events[0].data
    assert (lodged.return_id, lodged.native_status) == ("UmVmdW5kUmVxdWVzdC0x", status)
    [line] = lodged.lines
    assert (line.sku, line.quantity, line.reason_text, line.line_item_id) == ("SKU-1", 2, "Too small", LINE_ID)


def test_refund_with_only_a_total_is_allocated_pro_rata(feed: Pipeline) -> None:
    node = refund_request("REFUNDED", "REFUNDED", shipped=True)
    node["lineItems"].append({"id": "RRL-2", "quantity": 1, "status": "REFUNDED", "variantSku": "SKU-2"})
    node["totalAmount"] = "30.00 AUD"
    events = feed.feed("marketplacer", "marketplacer_refund_request", node)
    refund = next(e for e in events if e.event_type == "refund.processed")
    assert refund.data.line_amounts_basis == "allocated_pro_rata"
    assert [(line.sku, line.amount.amount) for line in refund.data.lines] == [
        ("SKU-1", Decimal("20.00")),
        ("SKU-2", Decimal("10.00")),
    ]


def test_refund_without_any_currency_is_quarantined_with_the_fix(workspace: Workspace) -> None:
    feed = Pipeline(workspace.store(), with_sources(workspace.config, marketplacer={}))
    node = refund_request("REFUNDED", "REFUNDED", shipped=True, amount="25.00")
    row = feed.inbox.get(feed.receive("marketplacer", "marketplacer_refund_request", node))
    assert row.status == "quarantined"
    assert row.reason == "currency = None: amounts carry no ISO currency; set [sources.marketplacer] currency"


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"id": "x", "event_name": "archive", "payload": {}}, "event_name = 'archive': must be create, update or destroy"),
        (envelope({"id": "x"}), "payload.data.node.__typename = None: is required (the default webhook query returns it)"),
        (envelope(invoice_node(lineItems=[{"id": "L", "quantity": 1}])), "payload.data.node.lineItems[0].variantSku = None: an invoice line needs its SKU (add variantSku to the query)"),
    ],
)  # fmt: skip
def test_bad_bodies_are_quarantined_with_field_value_and_rule(
    feed: Pipeline, body: dict[str, Any], reason: str
) -> None:
    row = feed.inbox.get(feed.receive("marketplacer", "marketplacer_webhook", body))
    assert (row.status, row.reason) == ("quarantined", reason)


FUZZ_STORE = memory_store()


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_no_input_crashes_the_marketplacer_normalisers(
    workspace: Workspace, invoice_body: dict[str, Any], marketplacer_md: str, data: st.DataObject
) -> None:
    config = with_sources(workspace.config, marketplacer={"currency": "AUD"})
    bases = [
        ("marketplacer_webhook", invoice_body),
        ("marketplacer_webhook", json_block(marketplacer_md, "Advert create")),
        ("marketplacer_webhook", envelope(invoice_node(shipments=[shipment("1", 1, "2024-03-27T00:08:29Z")]))),
        ("marketplacer_refund_request", refund_request("REFUNDED", "REFUNDED", shipped=True, amount="$1.00")),
        ("marketplacer_refund_request", refund_request("REFUNDED", "REFUNDED", shipped=False)),
        ("marketplacer_variant", {"__typename": "Variant", "id": "v", "sku": "S", "countOnHand": 1}),
        ("marketplacer_invoice", invoice_node(buyerMarketingOptIn=True)),
    ]
    kind, base = data.draw(st.sampled_from(bases))
    record = data.draw(st.one_of(mutated(copy.deepcopy(base)), json_values))
    try:
        run_directly(FUZZ_STORE, config, "marketplacer", kind, record)
    except NormaliseError as exc:
        assert exc.field and exc.rule
