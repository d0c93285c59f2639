"""Swap Commerce returns -> normalised return and refund events.

Kinds:

| Kind | Payload |
|---|---|
| `swap_webhook` | a webhook body `{"return": {...}, "jwt": "..."}` (`returnCreated` / `returnProcessed`; the event name is a claim of the JWT, verified by `cogent listen`) |
| `swap_return` | one return object of the Returns API (V2 names `return_status`, `delivery_status`, `rma_number`; V1 names `status`, `shipping_status`, `rma` are read too) |

Every payload is a picture of one return; the events are the facts that picture proves, each keyed by
(fact, return id) so seeing the same return again, by webhook or by pull, never repeats a fact:

* `return.lodged`: always (business time `date_created`).
* `return.approved`: a product's QC condition is one the store approves (`[sources.swap] approved_conditions`).
* `return.received`: the return parcel is `Delivered`, or a product has a QC condition other than Pending/Missing.
* `return.restocked`: products whose condition puts them back on sale (`restock_conditions`).
* `refund.processed`: on `returnProcessed`, or a `Closed` return, with a refund or store-credit total above 0.
  Line amounts come from each product's `cost` (basis `source`); without costs the total is allocated
  pro rata by quantity (basis `allocated_pro_rata`). Method from the return types (`refund_methods`).

The storefront order number is `order_name` (`[sources.swap] order_number_field`).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from cogent_cli.config import SwapSettings
from cogent_cli.events import CustomerRef, NormalisedEvent, OrderRef
from cogent_cli.normalise.base import NormaliseContext, NormaliseError, Record, register, settings_for
from cogent_cli.normalise.reading import Node, allocate_pro_rata, unique

SYSTEM = "swap"
PRODUCT_LISTS = ("products", "returned_items", "items")
CONDITION_FIELDS = ("condition", "qc_condition", "quality_control_condition")
CONDITIONS = {
    "sellable": "sellable",
    "damaged": "damaged",
    "wrong_item": "wrong_item",
    "missing": "missing",
    "not_expected": "not_expected",
    "qty_mismatch": "qty_mismatch",
    "pending": "pending",
    "no_value": "no_value",
}
NOT_YET_RECEIVED = ("pending", "missing")
RESOLUTIONS = {
    "refund": "refund",
    "shop now credit": "exchange",
    "exchange": "exchange",
    "additional payment": "exchange",
    "shop later credit": "store_credit",
    "warranty": "warranty",
    "recycle": "recycle",
}


def _settings(ctx: NormaliseContext) -> SwapSettings:
    return settings_for(ctx.config, SYSTEM, SwapSettings)


def _condition(raw: str | None) -> str | None:
    if raw is None:
        return None
    key = raw.strip().lower().replace("-", "_").replace(" ", "_")
    return CONDITIONS.get(key, "unknown")


@dataclass(frozen=True)
class Product:
    node: Node
    sku: str
    quantity: int
    condition_raw: str | None
    cost: Decimal | None
    return_type: str | None

    @property
    def condition(self) -> str | None:
        return _condition(self.condition_raw)


def _products(ret: Node) -> list[Product]:
    for key in PRODUCT_LISTS:
        if ret.has(key):
            rows = ret.nodes(key)
            break
    else:
        rows = []
    products = []
    for row in rows:
        sku = row.first_text(("sku", "sku_id", "full_sku_description"))
        if sku is None:
            raise row.error("sku", "every returned product needs a SKU")
        products.append(
            Product(
                node=row,
                sku=sku,
                quantity=row.quantity("item_count", default=row.quantity("quantity", default=1)),
                condition_raw=row.first_text(CONDITION_FIELDS),
                cost=row.opt_decimal("cost") if row.has("cost") else row.opt_decimal("amount"),
                return_type=row.opt_text("return_type"),
            )
        )
    return products


@dataclass(frozen=True)
class Return:
    node: Node
    return_id: str
    rma: str | None
    native_status: str | None
    delivery_status: str | None
    created: datetime | None
    updated: datetime | None
    currency: str | None
    types: list[str]
    products: list[Product]


def _return(record: Record) -> Return:
    outer = Node(record)
    ret = outer.node("return") if outer.has("return") else outer
    return_id = ret.first_text(("return_id", "id"))
    if return_id is None:
        raise ret.error("return_id", "is required")
    currency = ret.first_text(("customer_currency", "currency"))
    if currency is not None and (len(currency) != 3 or not currency.isalpha()):
        raise ret.error("customer_currency", "must be an ISO 4217 code such as GBP")
    types = ret.texts("type") or ret.texts("types") or [t for t in (ret.opt_text("type_string"),) if t]
    return Return(
        node=ret,
        return_id=return_id,
        rma=ret.first_text(("rma_number", "rma")),
        native_status=ret.first_text(("return_status", "status", "rma_status")),
        delivery_status=ret.first_text(("delivery_status", "shipping_status")),
        created=ret.opt_time("date_created") or ret.opt_time("created_at") or ret.opt_time("creation_date"),
        updated=ret.opt_time("date_updated") or ret.opt_time("updated_at"),
        currency=currency.upper() if currency else None,
        types=unique(types),
        products=_products(ret),
    )


def webhook_event_name(record: Record) -> str | None:
    """The `event` claim of the body's JWT (already verified on receipt), or a top-level `event`."""
    token = record.get("jwt")
    if isinstance(token, str) and token.count(".") == 2:
        segment = token.split(".")[1]
        try:
            claims = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
        except (ValueError, UnicodeDecodeError):
            claims = None
        if isinstance(claims, dict) and isinstance(claims.get("event"), str):
            return claims["event"]
    event = record.get("event")
    return event if isinstance(event, str) else None


def _money(amount: Decimal | None, currency: str | None) -> dict[str, Any] | None:
    if amount is None or currency is None:
        return None
    return {"amount": amount, "currency": currency}


def _resolution(return_type: str | None) -> str | None:
    if return_type is None:
        return None
    return RESOLUTIONS.get(return_type.strip().lower(), "other")


def _unit_cost(settings: SwapSettings, product: Product) -> Decimal | None:
    if product.cost is None:
        return None
    if settings.product_cost_per == "row" and product.quantity:
        return product.cost / product.quantity
    return product.cost


def _line_cost(settings: SwapSettings, product: Product) -> Decimal | None:
    if product.cost is None:
        return None
    return product.cost if settings.product_cost_per == "row" else product.cost * product.quantity


def _return_line(settings: SwapSettings, ret: Return, product: Product, **extra: Any) -> dict[str, Any]:
    row = product.node
    condition = product.condition
    restock = {c.lower() for c in settings.restock_conditions}
    if product.return_type and product.return_type.strip().lower() == "recycle":
        disposition = "recycle"
    elif product.condition_raw and product.condition_raw.strip().lower() in restock:
        disposition = "restock"
    elif condition in (None, "pending"):
        disposition = "pending"
    else:
        disposition = "quarantine"
    line = {
        "return_line_id": row.first_text(("product_id", "return_item_id", "id")),
        "sku": product.sku,
        "variant_id": row.first_text(("shopify_variant_id", "variant_id")),
        "line_item_id": row.first_text(("shopify_line_item_id", "line_item_id")),
        "quantity": product.quantity,
        "reason_code": row.opt_text("main_reason_id"),
        "reason_text": row.opt_text("main_reason_text"),
        "sub_reason_text": row.opt_text("sub_reason_text"),
        "customer_comment": row.first_text(("comments", "comment")),
        "condition": condition,
        "disposition": disposition,
        "unit_price": _money(_unit_cost(settings, product), ret.currency),
        "resolution": _resolution(product.return_type or (ret.types[0] if len(ret.types) == 1 else None)),
        **extra,
    }
    return {key: value for key, value in line.items() if value is not None}


def _return_data(settings: SwapSettings, ret: Return, status: str, lines: list[dict[str, Any]]) -> dict[str, Any]:
    node = ret.node
    shipments = node.nodes("return_shipments")
    first = shipments[0] if shipments else None
    carrier = (first.first_text(("carrier", "shipping_carrier")) if first else None) or node.first_text(
        ("shipping_carrier", "carrier")
    )
    tracking = (first.opt_text("tracking_number") if first else None) or node.opt_text("tracking_number")
    expected = node.opt_decimal("total_refund_value_customer_currency")
    data: dict[str, Any] = {
        "return_id": ret.return_id,
        "rma_number": ret.rma,
        "status": status,
        "native_status": ret.native_status,
        "return_types": ret.types or None,
        "return_shipment": {"carrier": carrier, "tracking_number": tracking, "status": ret.delivery_status},
        "lines": lines,
        "expected_refund": _money(expected, ret.currency) if expected else None,
    }
    return {key: value for key, value in data.items() if value is not None}


def _customer(ret: Return) -> CustomerRef | None:
    node = ret.node
    email = node.first_text(("customer_email", "email"))
    name = node.opt_text("customer_name")
    first, _, last = (name or "").partition(" ")
    if not (email or name):
        return None
    return CustomerRef(email=email, first_name=first or None, last_name=last.strip() or None)


def _order_ref(ctx: NormaliseContext, ret: Return) -> OrderRef | None:
    field = _settings(ctx).order_number_field or "order_name"
    number = ret.node.dig_text(field) or ret.node.first_text(("order_name", "shopify_order_name", "order_number"))
    source_id = ret.node.first_text(("order_id", "shopify_order_id"))
    if number is None and source_id is None:
        return None
    return OrderRef(order_number=number, source_order_id=source_id)


def _refund(ctx: NormaliseContext, ret: Return, settings: SwapSettings) -> dict[str, Any] | None:
    node = ret.node
    refund_total = node.opt_decimal("total_refund_value_customer_currency")
    credit_total = node.opt_decimal("total_store_credit_value_customer_currency")
    total = refund_total if refund_total else credit_total
    if not total or total <= 0:
        return None
    if ret.currency is None:
        raise node.error("customer_currency", "a refund needs the customer currency")
    methods = {settings.refund_methods.get(t, "unknown") for t in ret.types}
    if not refund_total:
        methods = {"store_credit"}
    method = methods.pop() if len(methods) == 1 else ("mixed" if methods else "unknown")
    refunded = [
        p for p in ret.products if _resolution(p.return_type) in (None, "refund", "store_credit", "warranty")
    ] or ret.products
    if not refunded:
        raise node.error("products", "a refund needs the returned products to attribute it to")
    costs = [_line_cost(settings, p) for p in refunded]
    deductions = []
    if all(cost is not None for cost in costs):
        amounts = [cost for cost in costs if cost is not None]
        basis = "source"
        difference = sum(amounts) - total
        if difference > 0:
            deductions.append({"type": "difference_to_total", "amount": _money(difference, ret.currency)})
    else:
        exponent = max(-total.as_tuple().exponent, 2) if isinstance(total.as_tuple().exponent, int) else 2
        amounts = allocate_pro_rata(total, [Decimal(p.quantity) for p in refunded], places=exponent)
        basis = "allocated_pro_rata"
    data: dict[str, Any] = {
        "refund_id": ret.return_id,
        "return_id": ret.return_id,
        "method": method,
        "total": _money(total, ret.currency),
        "lines": [
            {
                "sku": p.sku,
                "line_item_id": p.node.first_text(("shopify_line_item_id", "line_item_id")),
                "quantity": p.quantity,
                "amount": _money(amount, ret.currency),
            }
            for p, amount in zip(refunded, amounts, strict=True)
        ],
        "line_amounts_basis": basis,
    }
    if deductions:
        data["deductions"] = deductions
    return data


def _events(record: Record, ctx: NormaliseContext, native_event: str | None) -> Iterator[NormalisedEvent]:
    settings = _settings(ctx)
    ret = _return(record)
    status_map = {key.lower(): value for key, value in settings.return_statuses.items()}
    native = ret.native_status
    status = status_map.get(native.lower(), native.lower().replace(" ", "_")) if native else "lodged"
    common: dict[str, Any] = {
        "native_ids": {"return_id": ret.return_id, "rma": ret.rma},
        "customer": _customer(ret),
        "order_ref": _order_ref(ctx, ret),
    }
    created = ret.created or ret.updated or ctx.received_at
    updated = ret.updated or created
    lines = [_return_line(settings, ret, p) for p in ret.products]
    yield ctx.event(
        "return.lodged",
        dedupe_key=f"return.lodged|{ret.return_id}",
        occurred_at=created,
        data=_return_data(settings, ret, status, lines),
        native_event=native_event or "return",
        confidence="inferred",
        **common,
    )
    approved = {c.lower() for c in settings.approved_conditions}
    restock = {c.lower() for c in settings.restock_conditions}
    inspected = [p for p in ret.products if p.condition is not None and p.condition not in NOT_YET_RECEIVED]
    delivered = (ret.delivery_status or "").strip().lower() == "delivered"
    if delivered or inspected:
        received_lines = [
            _return_line(settings, ret, p, quantity_received=p.quantity) for p in (inspected or ret.products)
        ]
        yield ctx.event(
            "return.received",
            dedupe_key=f"return.received|{ret.return_id}",
            occurred_at=updated,
            data=_return_data(settings, ret, "received", received_lines),
            native_event=native_event or "return",
            confidence="documented" if inspected else "inferred",
            **common,
        )
    approved_products = [p for p in inspected if (p.condition_raw or "").strip().lower() in approved]
    if approved_products:
        yield ctx.event(
            "return.approved",
            dedupe_key=f"return.approved|{ret.return_id}",
            occurred_at=updated,
            data=_return_data(settings, ret, "approved", [_return_line(settings, ret, p) for p in approved_products]),
            native_event=native_event or "return",
            confidence="inferred",
            **common,
        )
    restocked = [p for p in inspected if (p.condition_raw or "").strip().lower() in restock]
    if restocked:
        yield ctx.event(
            "return.restocked",
            dedupe_key=f"return.restocked|{ret.return_id}",
            occurred_at=updated,
            data=_return_data(
                settings,
                ret,
                "restocked",
                [
                    _return_line(settings, ret, p, quantity_received=p.quantity, quantity_restocked=p.quantity)
                    for p in restocked
                ],
            ),
            native_event=native_event or "return",
            confidence="documented",
            **common,
        )
    processed = native_event == "returnProcessed" or status == "closed"
    if processed and (refund := _refund(ctx, ret, settings)) is not None:
        yield ctx.event(
            "refund.processed",
            dedupe_key=f"refund.processed|{ret.return_id}",
            occurred_at=updated,
            data=refund,
            native_event=native_event or "return",
            confidence="inferred",
            **common,
        )


@register(SYSTEM, "swap_webhook", matches=lambda r: "jwt" in r and "return" in r)
def swap_webhook(record: Record, ctx: NormaliseContext) -> Iterator[NormalisedEvent]:
    """A Swap webhook body (returnCreated / returnProcessed)."""
    event = webhook_event_name(record)
    if event not in ("returnCreated", "returnProcessed"):
        raise NormaliseError("jwt.event", event, "must be returnCreated or returnProcessed")
    yield from _events(record, ctx, event)


@register(
    SYSTEM,
    "swap_return",
    matches=lambda r: "return_id" in r and any(key in r for key in ("return_status", "status", "rma_number", "rma")),
)
def swap_return(record: Record, ctx: NormaliseContext) -> Iterator[NormalisedEvent]:
    """A return object from the Swap Returns API."""
    yield from _events(record, ctx, None)
