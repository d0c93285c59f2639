"""Clarus WMS payloads -> normalised events.

Kinds (the inbox `kind` of each payload):

| Kind | Payload | Events |
|---|---|---|
| `clarus_webhook` | an Automations webhook body (the full record; shape [ASSUMPTION], see clarus.md §4) | by record type, as below |
| `clarus_goods_out` | a GraphQL `goods_outs` node, optionally with `lines`/`goods_out_lines` and `shipments` | `shipment.despatched` per shipment when dispatched, `order.cancelled`, else `order.placed` (once) |
| `clarus_shipment` | a GraphQL `shipments` node, optionally with `packages` and `goods_out { reference external_system_reference1 lines }` | `shipment.despatched` when its status is dispatched |
| `clarus_goods_out_line` | a GraphQL `goods_out_lines` node | none; records the ordered quantity in the order ledger |
| `clarus_stock_balance` | a GraphQL `stock_balances` node | `stock.level_changed` (per product x account x warehouse) when a bucket changed |
| `clarus_stock` | a GraphQL `stocks` node (stock record per location, with status) | `stock.level_changed` for that location; hold statuses are never sellable |

Rules:
* Despatch means despatch: a shipment event comes only from a dispatched status (goods out status
  mapped to `despatched`, by default `COMPLETED`; shipment status in `[sources.clarus] dispatched_statuses`).
* Tracking is package-level: one parcel per package. Clarus does not say which lines are in which
  package, so the shipment's contents are given at shipment level.
* The storefront order number is `external_system_reference1` (`[sources.clarus] order_number_field`),
  falling back to the goods-out reference.
* Stock records whose status is not in `[sources.clarus] sellable_statuses` (e.g. awaiting QC,
  quarantined) are counted in the non-sellable bucket named by `hold_status_buckets` (default on_hold).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

from cogent_cli.config import ClarusSettings
from cogent_cli.events import CustomerRef, NormalisedEvent, OrderRef, Parcel, ShipMethod
from cogent_cli.normalise.base import NormaliseContext, NormaliseError, Record, register, settings_for
from cogent_cli.normalise.reading import Node
from cogent_cli.normalise.stock import StockLevels

SYSTEM = "clarus"
# Goods out status codes (clarus.md §1); CANCELLED is [ASSUMPTION]. `[mapping.status.clarus]` overrides.
DEFAULT_STATUSES = {
    "DRAFT": "received",
    "PENDING": "received",
    "PART_ALLOCATED": "allocated",
    "ALLOCATED": "allocated",
    "PICK": "picking",
    "COMPLETED": "despatched",
    "CANCELLED": "cancelled",
}


def _settings(ctx: NormaliseContext) -> ClarusSettings:
    return settings_for(ctx.config, SYSTEM, ClarusSettings)


def _order_number_field(ctx: NormaliseContext) -> str:
    return _settings(ctx).order_number_field or "external_system_reference1"


def _goods_out_status(ctx: NormaliseContext, goods_out: Node) -> tuple[str, str]:
    """(native code, normalised status) of a goods out."""
    native = None
    if (status := goods_out.opt_node("goods_out_status")) is not None:
        native = status.first_text(("code", "name"))
    native = native or goods_out.first_text(("goods_out_status_code", "status"))
    if native is None:
        raise goods_out.error("goods_out_status", "is required (code of the goods out status)")
    return native, ctx.status(native, DEFAULT_STATUSES, field_name=goods_out.field("goods_out_status.code"))


def _sku(line: Node) -> str:
    product = line.opt_node("product")
    sku = product.first_text(("code", "sku")) if product is not None else None
    sku = sku or line.first_text(("product_code", "sku"))
    if sku is None:
        raise line.error("product", "needs a product code (product { code })")
    return sku


def _customer(goods_out: Node) -> CustomerRef | None:
    address = goods_out.opt_node("address")
    if address is None and (relationships := goods_out.opt_node("relationships")) is not None:
        wrapper = relationships.opt_node("address")
        if wrapper is not None:
            data = wrapper.opt_node("data")
            address = data.opt_node("attributes") if data is not None else None
    if address is None:
        return None
    email = address.first_text(("email_address", "email"))
    phone = address.first_text(("phone_number", "phone"))
    return CustomerRef(email=email, phone=phone) if email or phone else None


def _order_ref(ctx: NormaliseContext, goods_out: Node) -> OrderRef | None:
    reference = goods_out.opt_text("reference")
    number = goods_out.dig_text(_order_number_field(ctx)) or reference
    if number is None and reference is None:
        return None
    return OrderRef(order_number=number, source_order_id=reference or goods_out.opt_text("id"))


def _ship_method(node: Node) -> ShipMethod | None:
    carrier = node.opt_node("carrier")
    service = node.opt_node("carrier_service")
    method = ShipMethod(
        carrier_code=carrier.opt_text("code") if carrier else None,
        carrier_name=carrier.opt_text("name") if carrier else None,
        service_code=service.opt_text("code") if service else None,
        service_name=service.opt_text("name") if service else None,
    )
    return method if any(method.model_dump().values()) else None


def _line_quantities(lines: list[Node]) -> tuple[dict[str, int], dict[str, int]]:
    """(ordered, dispatched) per SKU. A shorted line counts as ordered only up to what left."""
    ordered: dict[str, int] = {}
    dispatched: dict[str, int] = {}
    for line in lines:
        sku = _sku(line)
        dispatch = line.quantity("dispatch_quantity", default=0)
        order = line.quantity("order_quantity", default=dispatch)
        if line.opt_text("short_status"):
            order = dispatch
        ordered[sku] = ordered.get(sku, 0) + order
        if dispatch:
            dispatched[sku] = dispatched.get(sku, 0) + dispatch
    return ordered, dispatched


def _goods_out_lines(goods_out: Node) -> list[Node]:
    for key in ("lines", "goods_out_lines"):
        if goods_out.has(key):
            return goods_out.nodes(key)
    return []


def _parcels(shipment: Node, method: ShipMethod | None) -> tuple[list[Parcel], str]:
    """One parcel per package (package-level tracking); the shipment's own tracking otherwise."""
    packages = shipment.nodes("packages")
    if packages:
        parcels = [
            Parcel(
                parcel_id=package.first_text(("reference", "id")),
                tracking_number=package.opt_text("tracking_number"),
                tracking_url=package.opt_text("tracking_url"),
                ship_method=method,
                weight_kg=float(weight) if (weight := package.opt_decimal("weight")) is not None else None,
                items=[],
            )
            for package in packages
        ]
        return parcels, "parcel"
    parcel = Parcel(
        parcel_id=None,
        tracking_number=shipment.opt_text("tracking_number"),
        tracking_url=shipment.opt_text("tracking_url"),
        ship_method=method,
        items=[],
    )
    return [parcel], "shipment"


def _shipment_items(shipment: Node) -> dict[str, int] | None:
    """Contents a shipment lists itself (`lines` / `items`), if any."""
    for key in ("lines", "items", "goods_out_lines"):
        if shipment.has(key):
            items: dict[str, int] = {}
            for line in shipment.nodes(key):
                quantity = line.quantity("dispatch_quantity", default=line.quantity("quantity", default=0))
                if quantity:
                    items[_sku(line)] = items.get(_sku(line), 0) + quantity
            return items
    return None


def _despatch(
    ctx: NormaliseContext,
    shipment: Node,
    *,
    order_ref: OrderRef | None,
    customer: CustomerRef | None,
    items: dict[str, int] | None,
    fallback_time: datetime | None,
    fallback_method: ShipMethod | None,
    site: str | None,
    native_event: str,
) -> NormalisedEvent | None:
    shipment_id = shipment.first_text(("reference", "id"))
    if shipment_id is None:
        raise shipment.error("reference", "a shipment needs a reference or id")
    despatched_at = (
        shipment.opt_time("dispatched_at")
        or shipment.opt_time("actual_date_of_dispatch")
        or shipment.opt_time("collection_datetime")
        or fallback_time
    )
    if despatched_at is None:
        raise shipment.error("collection_datetime", "a dispatched shipment needs a dispatch time")
    method = _ship_method(shipment) or fallback_method
    parcels, granularity = _parcels(shipment, method)
    warehouse = shipment.opt_node("warehouse")
    return ctx.shipments.despatch(
        shipment_id=shipment_id,
        despatched_at=despatched_at,
        parcels=parcels,
        granularity=granularity,  # type: ignore[arg-type]
        dedupe_key=f"shipment|{shipment_id}|{granularity}",
        order_number=order_ref.order_number if order_ref else None,
        items=items,
        site=(warehouse.first_text(("code", "id")) if warehouse else None) or site,
        native_event=native_event,
        native_ids={"shipment_id": shipment.opt_text("id"), "shipment_reference": shipment.opt_text("reference")},
        customer=customer,
        order_ref=order_ref,
        confidence="documented",
    )


def _goods_out_events(ctx: NormaliseContext, goods_out: Node, native_event: str) -> Iterator[NormalisedEvent]:
    native, status = _goods_out_status(ctx, goods_out)
    order_ref = _order_ref(ctx, goods_out)
    customer = _customer(goods_out)
    lines = _goods_out_lines(goods_out)
    ordered, dispatched = _line_quantities(lines)
    order_number = order_ref.order_number if order_ref else None
    warehouse = goods_out.opt_node("warehouse")
    site = warehouse.first_text(("code", "id")) if warehouse else None
    if order_number and ordered:
        ctx.ledger.record_order(order_number, ordered, system=SYSTEM, at=ctx.received_at)
    reference = goods_out.first_text(("reference", "id"))
    if status == "cancelled":
        yield ctx.event(
            "order.cancelled",
            dedupe_key=f"order.cancelled|{reference}",
            occurred_at=goods_out.opt_time("updated_at") or ctx.received_at,
            data={"scope": "full", "reason": goods_out.opt_text("cancellation_reason")},
            native_event=native_event,
            native_ids={"goods_out_id": goods_out.opt_text("id"), "status": native},
            customer=customer,
            order_ref=order_ref,
            confidence="assumed",
        )
        return
    if status != "despatched":
        # The warehouse has the order; whether Klaviyo hears of it is the sync's `send_order_placed`.
        if lines:
            yield ctx.event(
                "order.placed",
                dedupe_key=f"order.placed|{reference}",
                occurred_at=goods_out.opt_time("created_at") or ctx.received_at,
                data={
                    "status": status,
                    "native_status": native,
                    "lines": [{"sku": sku, "quantity": qty} for sku, qty in ordered.items()],
                    "ship_method": _ship_method(goods_out),
                },
                native_event=native_event,
                native_ids={"goods_out_id": goods_out.opt_text("id")},
                customer=customer,
                order_ref=order_ref,
                confidence="inferred",
            )
        return
    shipments = goods_out.nodes("shipments")
    dispatched_at = goods_out.opt_time("actual_date_of_dispatch")
    method = _ship_method(goods_out)
    if not shipments:
        if not _settings(ctx).goods_out_shipment_fallback:
            raise goods_out.error(
                "shipments",
                "a dispatched goods out without shipments; add shipments { reference packages { tracking_number } } "
                "to the automation payload, or set [sources.clarus] goods_out_shipment_fallback = true",
            )
        shipments = [Node({"reference": reference}, goods_out.field("(goods out as shipment)"))]
    # Which lines went in which shipment is not in the payload unless a shipment lists them.
    ordered_shipments = sorted(
        shipments, key=lambda s: s.opt_time("collection_datetime") or dispatched_at or ctx.received_at
    )
    for index, shipment in enumerate(ordered_shipments):
        own = _shipment_items(shipment)
        items = own if own is not None else (dispatched if index == 0 else {})
        event = _despatch(
            ctx,
            shipment,
            order_ref=order_ref,
            customer=customer,
            items=items,
            fallback_time=dispatched_at,
            fallback_method=method,
            site=site,
            native_event=native_event,
        )
        if event is not None:
            yield event


def _stock_balance_event(ctx: NormaliseContext, node: Node, native_event: str) -> NormalisedEvent | None:
    product = node.node("product")
    sku = product.first_text(("code", "sku"))
    if sku is None:
        raise product.error("code", "is required")
    warehouse = node.opt_node("warehouse")
    account = node.opt_node("account")
    site = (warehouse.first_text(("code", "id")) if warehouse else None) or _settings(ctx).default_site
    levels = StockLevels(
        sellable={"on_hand": None, "allocated": node.quantity("allocated", 0), "available": node.quantity("available")},
        non_sellable={},
        inbound={"on_order": node.opt_int("ordered")},
    )
    return ctx.stock.snapshot(
        sku=sku,
        site=site,
        as_of=node.opt_time("updated_at") or ctx.received_at,
        levels=levels,
        stock_owner=account.first_text(("code", "id")) if account else None,
        native_event=native_event,
        native_ids={
            "product_id": product.opt_text("id"),
            "warehouse_id": warehouse.opt_text("id") if warehouse else None,
        },
        confidence="documented",
    )


def _stock_record_event(ctx: NormaliseContext, node: Node, native_event: str) -> NormalisedEvent | None:
    settings = _settings(ctx)
    product = node.node("product")
    sku = product.first_text(("code", "sku"))
    if sku is None:
        raise product.error("code", "is required")
    quantity = node.quantity("quantity")
    status = node.opt_text("status") or "available"
    location = node.opt_node("location")
    bin_code = location.first_text(("code", "id")) if location else None
    warehouse = node.opt_node("warehouse")
    warehouse_code = (warehouse.first_text(("code", "id")) if warehouse else None) or settings.default_site
    # A stock record is one location's stock: tracked per location so records never overwrite each other.
    site = f"{warehouse_code}/{bin_code}" if bin_code else warehouse_code
    if status.lower() in {s.lower() for s in settings.sellable_statuses}:
        levels = StockLevels(sellable={"on_hand": quantity})
    else:
        bucket = settings.hold_status_buckets.get(status, settings.hold_status_buckets.get(status.lower(), "on_hold"))
        levels = StockLevels(sellable={"on_hand": 0, "available": 0}, non_sellable={bucket: quantity})
    account = node.opt_node("account")
    return ctx.stock.snapshot(
        sku=sku,
        site=site,
        as_of=node.opt_time("updated_at") or ctx.received_at,
        levels=levels,
        location=bin_code,
        status=status,
        stock_owner=account.first_text(("code", "id")) if account else None,
        native_event=native_event,
        native_ids={"stock_id": node.opt_text("id"), "product_id": product.opt_text("id")},
        confidence="documented",
    )


def _shipment_node_events(ctx: NormaliseContext, shipment: Node, native_event: str) -> Iterator[NormalisedEvent]:
    status = shipment.opt_text("status")
    dispatched = {s.lower() for s in _settings(ctx).dispatched_statuses}
    if status is None or status.lower() not in dispatched:
        return
    goods_out = shipment.opt_node("goods_out")
    order_ref = _order_ref(ctx, goods_out) if goods_out is not None else None
    if order_ref is None and (number := shipment.dig_text(_order_number_field(ctx))):
        order_ref = OrderRef(order_number=number)
    items = _shipment_items(shipment)
    if items is None and goods_out is not None:
        lines = _goods_out_lines(goods_out)
        ordered, dispatched_items = _line_quantities(lines)
        if order_ref and order_ref.order_number and ordered:
            ctx.ledger.record_order(order_ref.order_number, ordered, system=SYSTEM, at=ctx.received_at)
        items = dispatched_items or None
    event = _despatch(
        ctx,
        shipment,
        order_ref=order_ref,
        customer=_customer(goods_out) if goods_out is not None else None,
        items=items,
        fallback_time=goods_out.opt_time("actual_date_of_dispatch") if goods_out is not None else None,
        fallback_method=None,
        site=None,
        native_event=native_event,
    )
    if event is not None:
        yield event


def _record_type(node: Node) -> str:
    declared = (node.opt_text("type") or "").lower()
    if declared in ("goods_outs", "goods_out"):
        return "goods_out"
    if declared in ("shipments", "shipment"):
        return "shipment"
    if declared in ("stock_balances", "stock_balance"):
        return "stock_balance"
    if declared in ("stocks", "stock"):
        return "stock"
    if node.has("goods_out_status") or node.has("goods_out_type") or node.has("actual_date_of_dispatch"):
        return "goods_out"
    if node.has("packages") or node.has("collection_datetime"):
        return "shipment"
    if node.has("available") and node.has("product"):
        return "stock_balance"
    if node.has("quantity") and node.has("product"):
        return "stock"
    raise NormaliseError("type", node.raw("type"), "not a Clarus goods out, shipment, stock balance or stock record")


@register(
    SYSTEM,
    "clarus_webhook",
    matches=lambda r: r.get("type") in ("goods_outs", "shipments", "stocks", "stock_balances"),
)
def clarus_webhook(record: Record, ctx: NormaliseContext) -> Iterator[NormalisedEvent]:
    """A Clarus Automations webhook body (the full record that triggered it)."""
    node = Node(record)
    kind = _record_type(node)
    native = f"automation:{kind}"
    if kind == "goods_out":
        yield from _goods_out_events(ctx, node, native)
    elif kind == "shipment":
        yield from _shipment_node_events(ctx, node, native)
    elif kind == "stock_balance":
        if (event := _stock_balance_event(ctx, node, native)) is not None:
            yield event
    elif (event := _stock_record_event(ctx, node, native)) is not None:
        yield event


@register(SYSTEM, "clarus_goods_out", matches=lambda r: "goods_out_status" in r and "type" not in r)
def clarus_goods_out(record: Record, ctx: NormaliseContext) -> Iterator[NormalisedEvent]:
    """A GraphQL goods_outs node."""
    yield from _goods_out_events(ctx, Node(record), "graphql:goods_outs")


@register(SYSTEM, "clarus_shipment", matches=lambda r: "collection_datetime" in r or "packages_count" in r)
def clarus_shipment(record: Record, ctx: NormaliseContext) -> Iterator[NormalisedEvent]:
    """A GraphQL shipments node with its packages."""
    yield from _shipment_node_events(ctx, Node(record), "graphql:shipments")


@register(SYSTEM, "clarus_goods_out_line", matches=lambda r: "dispatch_quantity" in r and "goods_out" in r)
def clarus_goods_out_line(record: Record, ctx: NormaliseContext) -> Iterator[NormalisedEvent]:
    """A GraphQL goods_out_lines node: feeds the order ledger, announces nothing by itself."""
    line = Node(record)
    goods_out = line.node("goods_out")
    order_ref = _order_ref(ctx, goods_out)
    ordered, _ = _line_quantities([line])
    if order_ref and order_ref.order_number:
        known = ctx.ledger.ordered(order_ref.order_number)
        ctx.ledger.record_order(order_ref.order_number, {**known, **ordered}, system=SYSTEM, at=ctx.received_at)
    yield from ()


@register(SYSTEM, "clarus_stock_balance", matches=lambda r: "available" in r and "picked" in r)
def clarus_stock_balance(record: Record, ctx: NormaliseContext) -> Iterator[NormalisedEvent]:
    """A GraphQL stock_balances node (per product x account x warehouse)."""
    if (event := _stock_balance_event(ctx, Node(record), "graphql:stock_balances")) is not None:
        yield event


@register(SYSTEM, "clarus_stock", matches=lambda r: "fifo_date" in r or ("quantity" in r and "status" in r))
def clarus_stock(record: Record, ctx: NormaliseContext) -> Iterator[NormalisedEvent]:
    """A GraphQL stocks node (stock record at one location, with its status)."""
    if (event := _stock_record_event(ctx, Node(record), "graphql:stocks")) is not None:
        yield event
