"""Marketplacer webhooks and GraphQL nodes -> normalised events.

Kinds:

| Kind | Payload |
|---|---|
| `marketplacer_webhook` | a webhook body `{"id", "event_name", "payload": {"data": {"node": {...}}}}`; the node is whatever the registered query returns, read by its `__typename` |
| `marketplacer_invoice`, `marketplacer_shipment`, `marketplacer_refund_request`, `marketplacer_variant` | one GraphQL node of that type (pulled) |

Per node type:

* **Invoice** (one seller's part of an order): `order.placed` (once per invoice), `order.edited` when an
  update changes line quantities against the last picture, `order.cancelled` when flagged `CANCELLED`,
  `shipment.despatched` per shipment (shipment-level tracking: `trackingNumber`/`trackingLink`, carrier,
  `shippedItems`), and `consent.changed` from explicit opt-in fields (`[sources.marketplacer] consent_fields`;
  an order email alone never implies consent).
* **Shipment**: `shipment.despatched`; SKUs come from `shippedItems.lineItem` (or the invoice's lines).
* **RefundRequest**: before dispatch it is a cancellation (`order.cancelled` once accepted), after dispatch a
  return (`return.lodged`, `return.approved` when lines await return or are accepted, `return.received`
  when `RETURNED`); `REFUNDED` adds `refund.processed` with line amounts from the source, or the total
  allocated pro rata (`allocated_pro_rata`).
* **Variant** / **Advert** (its variants): `stock.level_changed` from `countOnHand` / `infiniteQuantity`.
* Anything else (Seller, ...): no events.

The storefront order number is an external id of the order (`order_external_id_key`, first one
when unset), else the order's legacy id, else the invoice's; `order_number_field` overrides with a dotted
path into the node. The delivery's `Marketplacer-Sequence` header is kept as `source.sequence`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal
from typing import Any

from cogent_cli.config import MarketplacerSettings
from cogent_cli.events import CustomerRef, NormalisedEvent, OrderRef, ShipMethod
from cogent_cli.normalise.base import NormaliseContext, Record, register, settings_for
from cogent_cli.normalise.reading import Node, allocate_pro_rata
from cogent_cli.normalise.stock import StockLevels

SYSTEM = "marketplacer"
SENT_FLAGS = {"SENT", "PARTIALLY_SENT"}
ACCEPTED = {"REFUND_ACCEPTED", "PROCESSED", "REFUNDED"}
LINE_APPROVED = {"AWAITING_RETURN", "REFUND_ACCEPTED", "REFUNDED"}
AMOUNT_FIELDS = ("amount", "refundAmount", "totalAmount", "total")
UNIT_AMOUNT_FIELDS = ("amountPerItem",)


def _settings(ctx: NormaliseContext) -> MarketplacerSettings:
    return settings_for(ctx.config, SYSTEM, MarketplacerSettings)


def _sequence(ctx: NormaliseContext) -> int | None:
    value = ctx.header("Marketplacer-Sequence")
    return int(value) if value and value.strip().isdigit() else None


class _Origin:
    """What every event of one payload shares: native event name, delivery ids, sequence."""

    def __init__(self, ctx: NormaliseContext, typename: str, event_name: str | None, delivery_id: str | None) -> None:
        self.ctx = ctx
        self.native_event = f"{typename}/{event_name}" if event_name else f"graphql:{typename}"
        self.sequence = _sequence(ctx)
        self.ids = {"webhook_event_id": delivery_id, "vertical": ctx.header("Marketplacer-Vertical")}

    def event(self, event_type: Any, **kwargs: Any) -> NormalisedEvent:
        native_ids = {**self.ids, **kwargs.pop("native_ids", {})}
        return self.ctx.event(
            event_type,
            native_event=self.native_event,
            native_ids=native_ids,
            sequence=self.sequence,
            **kwargs,
        )


def _currency(ctx: NormaliseContext, *nodes: Node | None) -> str | None:
    for node in nodes:
        if node is None:
            continue
        code = node.first_text(("currency", "currencyCode", "currencyIsoCode"))
        if code and len(code) == 3 and code.isalpha():
            return code.upper()
        for key in AMOUNT_FIELDS:
            if found := node.opt_currency(key):
                return found
    return _settings(ctx).currency


def _money(amount: Decimal | None, currency: str | None) -> dict[str, Any] | None:
    return {"amount": amount, "currency": currency} if amount is not None and currency else None


# -- identity --------------------------------------------------------------------------------------


def _external_id(node: Node | None, key: str | None) -> str | None:
    if node is None:
        return None
    for external in node.nodes("externalIds"):
        if key is None or external.opt_text("key") == key:
            value = external.opt_text("value")
            if value:
                return value
    return None


def _order_ref(ctx: NormaliseContext, invoice: Node | None, fallback_id: str | None = None) -> OrderRef | None:
    if invoice is None:
        return OrderRef(source_order_id=fallback_id) if fallback_id else None
    settings = _settings(ctx)
    order = invoice.opt_node("order")
    number = invoice.dig_text(settings.order_number_field) if settings.order_number_field else None
    key = settings.order_external_id_key
    number = (
        number
        or _external_id(order, key)
        or _external_id(invoice, key)
        or (order.first_text(("legacyId", "id")) if order else None)
        or invoice.opt_text("legacyId")
    )
    invoice_id = invoice.opt_text("id") or fallback_id
    seller = invoice.opt_node("seller")
    return OrderRef(
        order_number=number,
        source_order_id=invoice_id,
        sub_order_id=invoice_id,
        seller=seller.first_text(("businessName", "id")) if seller else None,
    )


def _customer(invoice: Node | None) -> CustomerRef | None:
    if invoice is None:
        return None
    email = invoice.opt_text("buyerEmailAddress")
    phone = invoice.opt_text("buyerPhone")
    first = invoice.opt_text("buyerFirstName")
    last = invoice.opt_text("buyerSurname")
    if not (email or phone or first or last):
        return None
    return CustomerRef(email=email, phone=phone, first_name=first, last_name=last)


# -- lines -----------------------------------------------------------------------------------------


def _line_sku(line: Node) -> str | None:
    variant = line.opt_node("variant")
    return line.first_text(("variantSku", "sku")) or (variant.opt_text("sku") if variant else None)


def _invoice_lines(invoice: Node | None) -> dict[str, Node]:
    if invoice is None:
        return {}
    return {line_id: line for line in invoice.nodes("lineItems") if (line_id := line.opt_text("id")) is not None}


def _order_lines(ctx: NormaliseContext, invoice: Node, currency: str | None) -> list[dict[str, Any]]:
    lines = []
    for line in invoice.nodes("lineItems"):
        sku = _line_sku(line)
        if sku is None:
            raise line.error("variantSku", "an invoice line needs its SKU (add variantSku to the query)")
        quantity = line.quantity("quantity")
        unit = line.opt_decimal("unitPrice")
        total = line.opt_decimal("totalPrice")
        lines.append(
            {
                key: value
                for key, value in {
                    "line_id": line.opt_text("id"),
                    "sku": sku,
                    "barcode": line.opt_text("variantBarcode"),
                    "name": line.opt_text("variantName"),
                    "variant_id": line.opt_text("variantId"),
                    "quantity": quantity,
                    "unit_price": _money(unit, currency),
                    "line_total": _money(total, currency),
                    "status": line.opt_text("status"),
                }.items()
                if value is not None
            }
        )
    return lines


def _quantities(lines: list[dict[str, Any]]) -> dict[str, int]:
    totals: dict[str, int] = {}
    for line in lines:
        totals[line["sku"]] = totals.get(line["sku"], 0) + line["quantity"]
    return totals


def _address(invoice: Node) -> dict[str, Any] | None:
    address = invoice.opt_node("shippingAddress")
    if address is None:
        return None
    state = address.opt_node("state")
    country = address.opt_node("country")
    result = {
        "line1": address.first_text(("address", "line1")),
        "city": address.first_text(("city", "suburb")),
        "region": state.first_text(("short", "name")) if state else None,
        "postcode": address.opt_text("postcode"),
        "country_code": country.first_text(("code", "short")) if country else None,
    }
    result = {key: value for key, value in result.items() if value is not None}
    return result or None


def _order_status(flags: list[str]) -> str:
    if "CANCELLED" in flags:
        return "cancelled"
    if "SENT" in flags or "COLLECTED" in flags:
        return "despatched"
    if "PARTIALLY_SENT" in flags:
        return "partially_despatched"
    if "PAYMENT_UNDER_REVIEW" in flags:
        return "on_hold"
    return "received"


# -- invoices --------------------------------------------------------------------------------------


def _ledger_quantities(ctx: NormaliseContext, order_number: str) -> dict[str, int]:
    rows = ctx.conn.execute(
        "SELECT sku, ordered FROM order_lines WHERE order_number = ? AND system = ?", (order_number, SYSTEM)
    )
    return dict(rows.fetchall())


def _last_invoice_quantities(ctx: NormaliseContext, order_number: str, invoice_id: str) -> dict[str, int] | None:
    """Line quantities of this invoice as last announced (placed or edited), if it was announced."""
    rows = ctx.conn.execute(
        "SELECT body FROM events WHERE order_number = ? AND system = ?"
        " AND event_type IN ('order.placed', 'order.edited') ORDER BY rowid DESC",
        (order_number, SYSTEM),
    )
    for (body,) in rows:
        event = json.loads(body)
        if (event.get("order_ref") or {}).get("sub_order_id") == invoice_id:
            return _quantities(event["data"]["lines"])
    return None


def _invoice_events(ctx: NormaliseContext, invoice: Node, origin: _Origin, event_name: str | None):
    invoice_id = invoice.text("id")
    flags = [flag.upper() for flag in invoice.texts("statusFlags")]
    currency = _currency(ctx, invoice)
    order_ref = _order_ref(ctx, invoice)
    customer = _customer(invoice)
    lines = _order_lines(ctx, invoice, currency)
    created = invoice.opt_time("createdAt") or ctx.received_at
    updated = invoice.opt_time("updatedAt") or ctx.received_at
    order_number = order_ref.order_number if order_ref else None
    quantities = _quantities(lines)
    common = {"customer": customer, "order_ref": order_ref, "native_ids": {"invoice_id": invoice_id}}
    data: dict[str, Any] = {
        "status": _order_status(flags),
        "native_status": flags,
        "placed_at": created,
        "currency": currency,
        "lines": lines,
        "shipping_address": _address(invoice),
    }
    total = invoice.opt_decimal("total") or invoice.opt_decimal("totalPrice")
    if total is not None and currency:
        data["totals"] = {"total": _money(total, currency)}
    data = {key: value for key, value in data.items() if value is not None}
    yield origin.event(
        "order.placed",
        dedupe_key=f"order.placed|{invoice_id}",
        occurred_at=created,
        data=data,
        confidence="inferred",
        **common,
    )
    if order_number and lines:
        # Compared per invoice: the other sellers' invoices of the same order are not this one's lines.
        previous = _last_invoice_quantities(ctx, order_number, invoice_id) or {}
        changes = [
            {"path": f"lines[{sku}].quantity", "old": previous.get(sku), "new": quantities.get(sku)}
            for sku in sorted(set(previous) | set(quantities))
            if previous.get(sku) != quantities.get(sku)
        ]
        if event_name == "update" and previous and changes:
            fingerprint = ",".join(f"{sku}={qty}" for sku, qty in sorted(quantities.items()))
            yield origin.event(
                "order.edited",
                dedupe_key=f"order.edited|{invoice_id}|{fingerprint}",
                occurred_at=updated,
                data={**data, "changes": changes},
                confidence="inferred",
                **common,
            )
        ctx.ledger.record_order(order_number, quantities, system=SYSTEM, at=updated, replace=False)
    if "CANCELLED" in flags:
        yield origin.event(
            "order.cancelled",
            dedupe_key=f"order.cancelled|{invoice_id}",
            occurred_at=updated,
            data={"scope": "full", "cancelled_lines": lines, "refund_expected": "PAID" in flags or None},
            confidence="documented",
            **common,
        )
    for shipment in invoice.nodes("shipments"):
        event = _shipment_event(ctx, shipment, invoice, origin)
        if event is not None:
            yield event
    yield from _consent_events(ctx, invoice, origin, customer, updated)


def _consent_events(
    ctx: NormaliseContext, invoice: Node, origin: _Origin, customer: CustomerRef | None, at: datetime
) -> Iterator[NormalisedEvent]:
    fields = _settings(ctx).consent_fields
    if not fields:
        return
    email = customer.email if customer else None
    phone = customer.phone if customer else None
    holders = [invoice, *(n for n in (invoice.opt_node("order"), invoice.opt_node("buyer")) if n is not None)]
    for holder in holders:
        for name, channel in fields.items():
            value = holder.opt_bool(name)
            identifier = email if channel == "email" else phone
            if value is None or identifier is None:
                continue
            status = "subscribed" if value else "unsubscribed"
            yield origin.event(
                "consent.changed",
                dedupe_key=f"consent|{channel}|{identifier.lower()}|{status}|{invoice.opt_text('id')}",
                occurred_at=at,
                data={
                    "channel": channel,
                    "status": status,
                    "captured_at": at,
                    "method": f"marketplacer:{name}",
                    "evidence": f"{holder.field(name)} = {str(value).lower()} on invoice {invoice.opt_text('id')}",
                },
                customer=CustomerRef(email=email) if channel == "email" else CustomerRef(phone=phone),
                confidence="assumed",
            )


# -- shipments -------------------------------------------------------------------------------------


def _shipment_event(
    ctx: NormaliseContext, shipment: Node, invoice: Node | None, origin: _Origin
) -> NormalisedEvent | None:
    shipment_id = shipment.text("id")
    despatched_at = shipment.opt_time("dispatchedAt") or shipment.opt_time("createdAt")
    if despatched_at is None:
        raise shipment.error("dispatchedAt", "a shipment needs its dispatch time")
    if invoice is None:
        invoice = shipment.opt_node("invoice")
    lines = _invoice_lines(invoice)
    items = []
    for shipped in shipment.nodes("shippedItems"):
        line = shipped.opt_node("lineItem")
        line_id = line.opt_text("id") if line else None
        sku = (_line_sku(line) if line else None) or (_line_sku(lines[line_id]) if line_id in lines else None)
        if sku is None:
            raise shipped.error(
                "lineItem",
                "no SKU for this line item; add lineItem { variantSku } or the invoice's lineItems to the query",
            )
        items.append({"sku": sku, "line_id": line_id, "quantity": shipped.quantity("quantity")})
    carrier = shipment.opt_text("carrier")
    if carrier is None and (postage := shipment.opt_node("postageCarrier")) is not None:
        carrier = postage.opt_text("name")
    method = ShipMethod(carrier_name=carrier) if carrier else None
    parcel = {
        "parcel_id": shipment_id,
        "tracking_number": shipment.opt_text("trackingNumber"),
        "tracking_url": shipment.opt_text("trackingLink"),
        "ship_method": method,
        "items": items,
    }
    order_ref = _order_ref(ctx, invoice, fallback_id=None)
    if order_ref and order_ref.order_number and invoice is not None and invoice.has("lineItems"):
        quantities = _quantities(_order_lines(ctx, invoice, None))
        known = _ledger_quantities(ctx, order_ref.order_number)
        if known != {**known, **quantities}:
            ctx.ledger.record_order(order_ref.order_number, quantities, system=SYSTEM, at=despatched_at, replace=False)
    return ctx.shipments.despatch(
        shipment_id=shipment_id,
        despatched_at=despatched_at,
        parcels=[parcel],
        granularity="shipment",
        dedupe_key=f"shipment|{shipment_id}",
        order_number=order_ref.order_number if order_ref else None,
        native_event=origin.native_event,
        native_ids={**origin.ids, "invoice_id": invoice.opt_text("id") if invoice else None},
        customer=_customer(invoice),
        order_ref=order_ref,
        confidence="documented",
        sequence=origin.sequence,
    )


# -- refund requests -------------------------------------------------------------------------------


def _request_lines(request: Node, invoice: Node | None) -> list[tuple[Node, str, int]]:
    """(line, sku, quantity) of the request's product lines; custom lines (fees) have no SKU and are skipped."""
    lines = _invoice_lines(invoice)
    result = []
    for line in request.nodes("lineItems"):
        inner = line.opt_node("lineItem")
        line_id = inner.opt_text("id") if inner else line.opt_text("lineItemId")
        sku = (
            (_line_sku(inner) if inner else None)
            or _line_sku(line)
            or (_line_sku(lines[line_id]) if line_id in lines else None)
        )
        if sku is None:
            if line.has("custom"):
                continue
            raise line.error("lineItem", "no SKU for this refund line; add lineItem { variantSku } to the query")
        result.append((line, sku, line.quantity("quantity", default=1)))
    return result


def _is_cancellation(request: Node, invoice: Node | None) -> bool:
    statuses = {(line.opt_text("status") or "").upper() for line in request.nodes("lineItems")}
    if "AWAITING_RETURN" in statuses or (request.opt_text("status") or "").upper() == "RETURNED":
        return False
    if invoice is None:
        return False
    flags = {flag.upper() for flag in invoice.texts("statusFlags")}
    if flags & SENT_FLAGS or invoice.nodes("shipments"):
        return False
    return invoice.has("statusFlags") or invoice.has("shipments")


def _line_amount(line: Node, quantity: int) -> Decimal | None:
    for key in AMOUNT_FIELDS:
        if (amount := line.opt_decimal(key)) is not None:
            return amount
    for key in UNIT_AMOUNT_FIELDS:
        if (amount := line.opt_decimal(key)) is not None:
            return amount * quantity
    if (cents := line.opt_int("amountPerItemCents")) is not None:
        return Decimal(cents) / 100 * quantity
    return None


def _refund_data(
    ctx: NormaliseContext, request: Node, invoice: Node | None, lines: list[tuple[Node, str, int]]
) -> dict[str, Any]:
    currency = _currency(ctx, request, invoice)
    if currency is None:
        raise request.error("currency", "amounts carry no ISO currency; set [sources.marketplacer] currency")
    refunded = [entry for entry in lines if (entry[0].opt_text("status") or "REFUNDED").upper() == "REFUNDED"]
    refunded = refunded or lines
    amounts = [_line_amount(line, quantity) for line, _, quantity in refunded]
    total = next((value for key in AMOUNT_FIELDS if (value := request.opt_decimal(key)) is not None), None)
    if all(amount is not None for amount in amounts) and refunded:
        line_amounts = [amount for amount in amounts if amount is not None]
        basis = "source"
        total = total if total is not None else sum(line_amounts, Decimal(0))
    elif total is not None:
        line_amounts = allocate_pro_rata(total, [Decimal(quantity) for _, _, quantity in refunded])
        basis = "allocated_pro_rata"
    else:
        raise request.error(
            "totalAmount", "a refunded request needs line amounts or a total (add them to the webhook query)"
        )
    return {
        "refund_id": request.text("id"),
        "return_id": request.text("id"),
        "method": "original_payment",
        "total": _money(total, currency),
        "lines": [
            {"sku": sku, "line_item_id": _line_item_id(line), "quantity": quantity, "amount": _money(amount, currency)}
            for (line, sku, quantity), amount in zip(refunded, line_amounts, strict=True)
        ],
        "line_amounts_basis": basis,
    }


def _line_item_id(line: Node) -> str | None:
    inner = line.opt_node("lineItem")
    return (inner.opt_text("id") if inner else None) or line.opt_text("lineItemId")


def _return_lines(lines: list[tuple[Node, str, int]], **extra: Any) -> list[dict[str, Any]]:
    return [
        {
            key: value
            for key, value in {
                "return_line_id": line.opt_text("id"),
                "sku": sku,
                "line_item_id": _line_item_id(line),
                "quantity": quantity,
                "reason_text": line.opt_text("reason"),
                "resolution": "refund",
                **extra,
            }.items()
            if value is not None
        }
        for line, sku, quantity in lines
    ]


def _refund_request_events(ctx: NormaliseContext, request: Node, origin: _Origin) -> Iterator[NormalisedEvent]:
    request_id = request.text("id")
    status = (request.opt_text("status") or "AWAITING").upper()
    invoice = request.opt_node("invoice")
    lines = _request_lines(request, invoice)
    line_statuses = {(line.opt_text("status") or "").upper() for line, _, _ in lines}
    created = request.opt_time("createdAt") or ctx.received_at
    updated = request.opt_time("updatedAt") or ctx.received_at
    common = {
        "customer": _customer(invoice),
        "order_ref": _order_ref(ctx, invoice),
        "native_ids": {"refund_request_id": request_id, "invoice_id": invoice.opt_text("id") if invoice else None},
    }
    refunded = status == "REFUNDED" or "REFUNDED" in line_statuses
    if _is_cancellation(request, invoice):
        if status in ACCEPTED or line_statuses & {"REFUND_ACCEPTED", "REFUNDED"}:
            ordered = _quantities(_order_lines(ctx, invoice, None)) if invoice and invoice.has("lineItems") else {}
            cancelled = _quantities([{"sku": sku, "quantity": qty} for _, sku, qty in lines])
            full = bool(ordered) and all(cancelled.get(sku, 0) >= qty for sku, qty in ordered.items())
            reasons = sorted({reason for line, _, _ in lines if (reason := line.opt_text("reason"))})
            yield origin.event(
                "order.cancelled",
                dedupe_key=f"order.cancelled|{request_id}",
                occurred_at=updated,
                data={
                    "scope": "full" if full else "partial",
                    "cancelled_lines": [{"sku": sku, "quantity": qty} for sku, qty in cancelled.items()],
                    "reason": "; ".join(reasons) or None,
                    "refund_expected": True,
                },
                confidence="documented",
                **common,
            )
    else:
        status_name = {"AWAITING": "lodged", "RETURNED": "received", "DENIED": "rejected"}.get(status, status.lower())
        base = {"return_id": request_id, "native_status": status}
        yield origin.event(
            "return.lodged",
            dedupe_key=f"return.lodged|{request_id}",
            occurred_at=created,
            data={**base, "status": status_name, "lines": _return_lines(lines)},
            confidence="documented",
            **common,
        )
        if line_statuses & LINE_APPROVED or status in ACCEPTED | {"RETURNED"}:
            approved = [entry for entry in lines if (entry[0].opt_text("status") or "").upper() in LINE_APPROVED]
            yield origin.event(
                "return.approved",
                dedupe_key=f"return.approved|{request_id}",
                occurred_at=updated,
                data={**base, "status": "approved", "lines": _return_lines(approved or lines)},
                confidence="documented",
                **common,
            )
        if status == "RETURNED":
            yield origin.event(
                "return.received",
                dedupe_key=f"return.received|{request_id}",
                occurred_at=updated,
                data={
                    **base,
                    "status": "received",
                    "lines": [{**line, "quantity_received": line["quantity"]} for line in _return_lines(lines)],
                },
                confidence="documented",
                **common,
            )
    if refunded and lines:
        yield origin.event(
            "refund.processed",
            dedupe_key=f"refund.processed|{request_id}",
            occurred_at=updated,
            data=_refund_data(ctx, request, invoice, lines),
            confidence="documented",
            **common,
        )


# -- stock -----------------------------------------------------------------------------------------


def _variant_event(ctx: NormaliseContext, variant: Node, origin: _Origin) -> NormalisedEvent | None:
    sku = variant.opt_text("sku")
    if sku is None:
        return None  # a variant without a SKU cannot be matched to a catalogue item
    infinite = variant.opt_bool("infiniteQuantity")
    count = variant.opt_int("countOnHand")
    if count is None and not infinite:
        return None
    on_hand = max(count or 0, 0)
    return ctx.stock.snapshot(
        sku=sku,
        site=_settings(ctx).stock_site,
        as_of=variant.opt_time("updatedAt") or ctx.received_at,
        levels=StockLevels(sellable={"on_hand": on_hand, "available": on_hand}),
        barcode=variant.opt_text("barcode"),
        native_event=origin.native_event,
        native_ids={**origin.ids, "variant_id": variant.opt_text("id")},
        confidence="documented",
        infinite=infinite,
        sequence=origin.sequence,
    )


# -- entry points ----------------------------------------------------------------------------------


def _node_events(ctx: NormaliseContext, node: Node, typename: str, event_name: str | None, delivery_id: str | None):
    origin = _Origin(ctx, typename, event_name, delivery_id)
    if event_name == "destroy":
        return
    if typename == "Invoice":
        yield from _invoice_events(ctx, node, origin, event_name)
    elif typename == "Shipment":
        if (event := _shipment_event(ctx, node, None, origin)) is not None:
            yield event
    elif typename == "RefundRequest":
        yield from _refund_request_events(ctx, node, origin)
    elif typename == "Variant":
        if (event := _variant_event(ctx, node, origin)) is not None:
            yield event
    elif typename == "Advert":
        for variant in node.nodes("variants"):
            if (event := _variant_event(ctx, variant, origin)) is not None:
                yield event


@register(SYSTEM, "marketplacer_webhook", matches=lambda r: "event_name" in r and "payload" in r)
def marketplacer_webhook(record: Record, ctx: NormaliseContext) -> Iterator[NormalisedEvent]:
    """A Marketplacer webhook delivery: {id, event_name, payload: {data: {node}}}."""
    envelope = Node(record)
    event_name = (envelope.opt_text("event_name") or "").lower() or None
    if event_name not in (None, "create", "update", "destroy"):
        raise envelope.error("event_name", "must be create, update or destroy")
    node = envelope.node("payload").node("data").node("node")
    typename = node.opt_text("__typename")
    if typename is None:
        raise node.error("__typename", "is required (the default webhook query returns it)")
    yield from _node_events(ctx, node, typename, event_name, envelope.opt_text("id"))


def _pulled(typename: str):
    def normalise(record: Record, ctx: NormaliseContext) -> Iterator[NormalisedEvent]:
        node = Node(record)
        declared = node.opt_text("__typename")
        if declared is not None and declared != typename:
            raise node.error("__typename", f"expected a {typename} node")
        yield from _node_events(ctx, node, typename, None, None)

    normalise.__doc__ = f"A {typename} node from the Marketplacer GraphQL API."
    return normalise


marketplacer_invoice = register(SYSTEM, "marketplacer_invoice", matches=lambda r: r.get("__typename") == "Invoice")(
    _pulled("Invoice")
)
marketplacer_shipment = register(SYSTEM, "marketplacer_shipment", matches=lambda r: r.get("__typename") == "Shipment")(
    _pulled("Shipment")
)
marketplacer_refund_request = register(
    SYSTEM, "marketplacer_refund_request", matches=lambda r: r.get("__typename") == "RefundRequest"
)(_pulled("RefundRequest"))
marketplacer_variant = register(SYSTEM, "marketplacer_variant", matches=lambda r: r.get("__typename") == "Variant")(
    _pulled("Variant")
)
