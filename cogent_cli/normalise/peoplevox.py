"""Peoplevox: report CSV rows (Despatch summary, Return summary, Item inventory summary [all sites])
and event callbacks (query-string payloads of `SubscribeEvent` / `SubscribePostEvent`).

Column names are those of peoplevox.md (report display names; the XML-style `Despatch_number` spelling
is accepted too). Report times have no zone and are read in `[sources.peoplevox] timezone`.
Callback parameter names are the ones we template into the subscription URL (peoplevox.md §3.3/3.4);
the common alternatives are accepted.

Kinds:
* `despatch_summary` - one row per despatch x item, grouped by despatch into one `shipment.despatched`
  with a single despatch-level parcel (`tracking_granularity="shipment"`).
* `return_summary` - one row per return x item, grouped by return code into `return.received`, plus
  `return.restocked` for the lines marked `Is Reusable`.
* `inventory_summary` - per item (and site, when the report is "all sites"): stock snapshots.
* `tracking_number_received` - TrackingNumberReceived: a despatch-level shipment.
* `package_despatched` - DespatchPackageDespatched / DespatchPackageTrackingNumberReceived [ASSUMPTION]:
  upgrades the despatch's shipment to package-level tracking.
* `returns_event` [ASSUMPTION], `sales_order_status_changed`, `availability_changed`, `incremental_change`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from cogent_cli.config import Config, PeoplevoxSettings
from cogent_cli.events import Money, NormalisedEvent, Parcel, ShipMethod
from cogent_cli.normalise.base import (
    NormaliseContext,
    NormaliseError,
    Record,
    register,
    register_grouped,
    settings_for,
    ship_method_of,
)
from cogent_cli.normalise.fields import Row, canon, parse_datetime
from cogent_cli.normalise.stock import StockLevels

SYSTEM = "peoplevox"
ALL_SITES = "*"  # stock reported for an item across every site
# Names seen for Peoplevox sales order statuses; others must be mapped in [mapping.status.peoplevox].
DEFAULT_STATUSES = {
    "new": "received",
    "allocated": "allocated",
    "partially allocated": "allocated",
    "picking": "picking",
    "picked": "picking",
    "packing": "packed",
    "packed": "packed",
    "despatched": "despatched",
    "dispatched": "despatched",
    "partially despatched": "partially_despatched",
    "cancelled": "cancelled",
    "canceled": "cancelled",
    "on hold": "on_hold",
    "onhold": "on_hold",
}
RETURN_CONDITIONS = {
    "new": "sellable",
    "asnew": "sellable",
    "good": "sellable",
    "damaged": "damaged",
    "faulty": "damaged",
}

DESPATCH_COLUMNS = ("Despatch number", "Item code", "No of items")
RETURN_COLUMNS = ("Return code", "Item code", "Quantity")
INVENTORY_COLUMNS = ("Item code", "Available")


def _settings(ctx: NormaliseContext) -> PeoplevoxSettings:
    return settings_for(ctx.config, SYSTEM, PeoplevoxSettings)


def _has(record: Record, *names: str) -> bool:
    keys = {canon(k) for k in record if isinstance(k, str)}
    return all(canon(name) in keys for name in names)


def _any(record: Record, *names: str) -> bool:
    keys = {canon(k) for k in record if isinstance(k, str)}
    return any(canon(name) in keys for name in names)


def _key_part(value: Any) -> str:
    """A natural-key component as every route spells it: trimmed, without the quotes Peoplevox's API
    puts around report dates."""
    return "" if value is None else str(value).strip().strip("'\"").strip()


def _key_time(value: Any) -> str:
    """A report time as a natural-key component: one spelling whether it reads '14/06/2018 16:55:07'
    (quoted, as the API renders it), 14/06/2018 16:55:07 (a report file) or 2018-06-14T16:55:07."""
    text = _key_part(value)
    try:
        return parse_datetime("time", text, "UTC").strftime("%Y-%m-%dT%H:%M:%S") if text else ""
    except NormaliseError:
        return text


# -- Despatch summary --------------------------------------------------------------------------------


class DespatchLine(NamedTuple):
    # A named tuple rather than a frozen dataclass: one is built per report row, four times faster.
    despatch_number: str
    order_number: str | None
    source_order_id: str | None
    despatched_at: datetime
    tracking_number: str | None
    ship_method: ShipMethod
    sku: str
    quantity: int
    site: str | None
    email: str | None
    contact_name: str | None
    channel: str | None


def despatch_group(record: Record, _config: Config) -> str:
    return str(record.get("Despatch number") or Row(record).required("Despatch number"))


def despatch_key(record: Record) -> str:
    """The natural key of a Despatch summary row, the same whether pulled (GetReportData) or read from
    a report file, so the row is stored once."""
    row = Row(record)
    return "|".join(_key_part(row.text(name)) for name in ("Despatch number", "Item code", "Tracking number"))


def ship_method(carrier_code: str | None, carrier_name: str | None, code: str | None, name: str | None) -> ShipMethod:
    return ship_method_of(carrier_code or carrier_name, carrier_name or carrier_code, code or name, name or code)


def parse_despatch_row(record: Record, ctx: NormaliseContext) -> DespatchLine:
    row = Row(record)
    source_order = row.text("Salesorder number", "Sales order number", "SalesOrderNumber")
    return DespatchLine(
        despatch_number=row.required("Despatch number"),
        order_number=ctx.order_number(record, "Salesorder number"),
        source_order_id=source_order,
        despatched_at=row.datetime("Despatch date", zone_name=_settings(ctx).timezone),
        tracking_number=row.text("Tracking number"),
        ship_method=ship_method(
            row.text("Carrier reference"), row.text("Carrier"), row.text("Service type code"), row.text("Service")
        ),
        sku=row.required("Item code"),
        quantity=row.integer("No of items", minimum=1),
        site=row.text("Site reference"),
        email=row.text("Email"),
        contact_name=row.text("Contact name"),
        channel=row.text("Channel name"),
    )


def build_despatch(lines: Sequence[DespatchLine], ctx: NormaliseContext) -> Iterator[NormalisedEvent]:
    """Despatch summary rows of one despatch -> one shipment.despatched (one despatch-level parcel)."""
    first = lines[0]
    items: dict[str, int] = {}
    for line in lines:
        items[line.sku] = items.get(line.sku, 0) + line.quantity
    tracking = next((line.tracking_number for line in lines if line.tracking_number), None)
    parcel = {
        "tracking_number": tracking,
        "ship_method": first.ship_method,
        "items": [{"sku": sku, "quantity": qty} for sku, qty in items.items()],
    }
    event = ctx.shipments.despatch(
        shipment_id=first.despatch_number,
        despatched_at=min(line.despatched_at for line in lines),
        parcels=[parcel],
        granularity="shipment",
        dedupe_key=f"{first.despatch_number}|{tracking or ''}",
        order_number=first.order_number,
        site=first.site,
        native_event="Despatch summary",
        native_ids={"despatch_number": first.despatch_number},
        customer=_customer(first.email, first.contact_name),
        order_ref=_order_ref(first.order_number, first.source_order_id, first.channel),
        confidence="documented",
    )
    if event is not None:
        yield event


def _customer(email: str | None, name: str | None = None) -> dict[str, Any] | None:
    if not email and not name:
        return None
    first, _, last = (name or "").partition(" ")
    return _present({"email": email, "first_name": first, "last_name": last})


def _present(values: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in values.items() if value not in (None, "")}


def _order_ref(number: str | None, source_id: str | None, channel: str | None = None) -> dict[str, Any] | None:
    if not number and not source_id:
        return None
    return _present({"order_number": number, "source_order_id": source_id, "channel": channel})


register_grouped(
    SYSTEM,
    "despatch_summary",
    group_key=despatch_group,
    parse_row=parse_despatch_row,
    build_group=build_despatch,
    columns=DESPATCH_COLUMNS,
    natural_key=despatch_key,
    description="Despatch summary report rows (one per despatch x item)",
)


# -- Return summary ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReturnRow:
    return_code: str
    returned_at: datetime
    order_number: str | None
    source_order_id: str | None
    sku: str
    quantity: int
    reason: str | None
    condition: str | None
    native_condition: str | None
    comments: str | None
    reusable: bool | None
    unit_price: Money | None
    site: str | None
    email: str | None
    contact_name: str | None
    channel: str | None


def return_group(record: Record, _config: Config) -> str:
    return Row(record).required("Return code")


def return_key(record: Record) -> str:
    """The natural key of a Return summary row, the same by every route (see `despatch_key`)."""
    row = Row(record)
    return "|".join(
        (_key_part(row.text("Return code")), _key_part(row.text("Item code")), _key_time(row.text("Return date")))
    )


def parse_return_row(record: Record, ctx: NormaliseContext) -> ReturnRow:
    row = Row(record)
    settings = _settings(ctx)
    price = row.decimal("Item sale price")
    condition = row.text("Return condition")
    return ReturnRow(
        return_code=row.required("Return code"),
        returned_at=row.datetime("Return date", zone_name=settings.timezone),
        order_number=ctx.order_number(record, "Sales order number"),
        source_order_id=row.text("Sales order number", "Salesorder number"),
        sku=row.required("Item code"),
        quantity=row.integer("Quantity", minimum=1),
        reason=row.text("Return reason"),
        condition=_condition(condition),
        native_condition=condition,
        comments=row.text("Return comments"),
        reusable=row.boolean("Is Reusable"),
        unit_price=Money(amount=price, currency=settings.currency) if price is not None else None,
        site=row.text("Site reference"),
        email=row.text("Sales order email", "Email"),
        contact_name=row.text("Sales order contact name"),
        channel=row.text("Channel name"),
    )


def _condition(native: str | None) -> str | None:
    if native is None:
        return None
    return RETURN_CONDITIONS.get(canon(native), "unknown")


def _return_line(row: ReturnRow, restocked: bool) -> dict[str, Any]:
    line: dict[str, Any] = {
        "sku": row.sku,
        "quantity": row.quantity,
        "quantity_received": row.quantity,
        "reason_text": row.reason,
        "customer_comment": None,
        "condition": row.condition,
        "unit_price": row.unit_price,
    }
    if row.reusable is not None:
        line["disposition"] = "restock" if row.reusable else "quarantine"
        line["quantity_restocked"] = row.quantity if row.reusable else 0
    if restocked:
        line["quantity_restocked"] = row.quantity
    return {k: v for k, v in line.items() if v is not None}


def build_return(rows: Sequence[ReturnRow], ctx: NormaliseContext) -> Iterator[NormalisedEvent]:
    """Return summary rows of one return -> return.received, and return.restocked for reusable lines."""
    first = rows[0]
    skus = ",".join(sorted({row.sku for row in rows}))
    received_at = max(row.returned_at for row in rows)
    common: dict[str, Any] = {
        "native_event": "Return summary",
        "native_ids": {"return_code": first.return_code},
        "customer": _customer(first.email, first.contact_name),
        "order_ref": _order_ref(first.order_number, first.source_order_id, first.channel),
        "confidence": "documented",
    }
    yield ctx.event(
        "return.received",
        dedupe_key=f"{first.return_code}|{skus}|received",
        occurred_at=received_at,
        data={
            "return_id": first.return_code,
            "status": "received",
            "native_status": first.native_condition,
            "site": first.site,
            "lines": [_return_line(row, restocked=False) for row in rows],
        },
        **common,
    )
    reusable = [row for row in rows if row.reusable]
    if reusable:
        yield ctx.event(
            "return.restocked",
            dedupe_key=f"{first.return_code}|{','.join(sorted({r.sku for r in reusable}))}|restocked",
            occurred_at=received_at,
            data={
                "return_id": first.return_code,
                "status": "restocked",
                "site": first.site,
                "lines": [_return_line(row, restocked=True) for row in reusable],
            },
            **common,
        )


register_grouped(
    SYSTEM,
    "return_summary",
    group_key=return_group,
    parse_row=parse_return_row,
    build_group=build_return,
    columns=RETURN_COLUMNS,
    natural_key=return_key,
    description="Return summary report rows (one per return x item)",
)


# -- Item inventory summary (all sites) --------------------------------------------------------------


@register(
    SYSTEM,
    "inventory_summary",
    columns=INVENTORY_COLUMNS,
    description="Item inventory summary [all sites] rows: stock per item and site",
)
def inventory_row(record: Record, ctx: NormaliseContext) -> Iterator[NormalisedEvent]:
    """Item inventory summary row -> stock.level_changed when the item's level at the site changed."""
    row = Row(record)
    sku = row.required("Item code", "ItemCode")
    site = row.text("Site reference", "Site", "Reference") or ALL_SITES
    as_of = row.optional_datetime("Date time", "Snapshot at", zone_name=_settings(ctx).timezone) or ctx.received_at
    levels = StockLevels(
        sellable={
            "on_hand": row.optional_integer("On hand", "OnHand", "Total on hand", "TotalOnHand", minimum=None),
            "allocated": row.optional_integer("Allocated", "TotalAllocated", minimum=None),
            "available": row.integer("Available", "TotalAvailable", minimum=None),
        },
        inbound={"on_order": row.optional_integer("On order", minimum=None)},
    )
    event = ctx.stock.snapshot(
        sku=sku,
        site=site,
        as_of=as_of,
        levels=levels,
        location=row.text("Location", "Location type"),
        barcode=row.text("Barcode", "Item barcode"),
        native_event="Item inventory summary",
        native_ids={"item_code": sku, "site_reference": site},
        confidence="documented",
    )
    if event is not None:
        yield event


# -- Event callbacks ---------------------------------------------------------------------------------


def _callback_time(row: Row, ctx: NormaliseContext, *names: str) -> datetime:
    return row.optional_datetime(*names, zone_name=_settings(ctx).timezone) or ctx.received_at


DESPATCH_NUMBER = ("dispatch_number", "despatch_number", "DespatchNumber", "Despatch.DespatchNumber")
TRACKING = ("tracking_number", "tracking", "TrackingNumber")
ORDER_NO = ("order_number", "order_no", "SalesOrderNumber", "sales_order_number")


def _order(record: Record, ctx: NormaliseContext, names: Sequence[str] = ORDER_NO) -> dict[str, Any] | None:
    """order_ref from whichever order parameter the callback template used."""
    row = Row(record)
    present = next((name for name in names if row.text(name)), None)
    if present is None:
        return None
    return _order_ref(ctx.order_number(record, present), row.text(present))


def tracking_key(record: Record) -> str:
    row = Row(record)
    return f"{row.text(*DESPATCH_NUMBER) or ''}|{row.text(*TRACKING) or ''}"


@register(
    SYSTEM,
    "tracking_number_received",
    body="form",
    matches=lambda r: _any(r, *DESPATCH_NUMBER) and _any(r, *TRACKING) and not _any(r, "package", "package_number"),
    natural_key=tracking_key,
    description="TrackingNumberReceived callback: a despatch and its tracking number",
)
def tracking_number_received(record: Record, ctx: NormaliseContext) -> Iterator[NormalisedEvent]:
    """TrackingNumberReceived -> shipment.despatched (despatch-level; contents from the despatch report if known)."""
    row = Row(record)
    despatch = row.required(*DESPATCH_NUMBER)
    tracking = row.required(*TRACKING)
    known = ctx.shipments.known(despatch)
    order_ref = _order(record, ctx)
    method = ship_method(
        row.text("carrier"), row.text("carrier_name"), row.text("service_code"), row.text("service_name")
    )
    event = ctx.shipments.despatch(
        shipment_id=despatch,
        despatched_at=_callback_time(row, ctx, "time", "despatch_date", "timestamp"),
        parcels=[Parcel(tracking_number=tracking, ship_method=method, items=[])],
        items=known.items if known else {},
        granularity="shipment",
        dedupe_key=f"{despatch}|{tracking}",
        order_number=order_ref["order_number"] if order_ref else None,
        native_event="TrackingNumberReceived",
        native_ids={"despatch_number": despatch},
        customer=_customer(row.text("order_email", "email"), None),
        order_ref=order_ref,
        confidence="inferred",
    )
    if event is not None:
        yield event


def package_key(record: Record) -> str:
    row = Row(record)
    parts = (row.text(*DESPATCH_NUMBER), row.text("package", "package_number"), row.text(*TRACKING))
    return "|".join(_key_part(part) for part in parts)


@register(
    SYSTEM,
    "package_despatched",
    body="form",
    matches=lambda r: _any(r, *DESPATCH_NUMBER) and _any(r, "package", "package_number"),
    natural_key=package_key,
    description="DespatchPackageDespatched callback [ASSUMPTION]: package-level tracking of a despatch",
)
def package_despatched(record: Record, ctx: NormaliseContext) -> Iterator[NormalisedEvent]:
    """DespatchPackage* -> the despatch's shipment upgraded to package-level tracking (same shipment_id)."""
    row = Row(record)
    despatch = row.required(*DESPATCH_NUMBER)
    package = row.required("package", "package_number")
    tracking = row.text(*TRACKING)
    order_ref = _order(record, ctx)
    method = ship_method(
        row.text("carrier"), row.text("carrier_name"), row.text("service", "service_code"), row.text("service_name")
    )
    event = ctx.shipments.despatch(
        shipment_id=despatch,
        despatched_at=_callback_time(row, ctx, "time", "despatch_date", "timestamp"),
        parcels=[Parcel(parcel_id=package, tracking_number=tracking, ship_method=method, items=[])],
        items=None,
        granularity="parcel",
        dedupe_key=f"{despatch}|{package}|{tracking or ''}",
        order_number=order_ref["order_number"] if order_ref else None,
        native_event="DespatchPackageDespatched",
        native_ids={"despatch_number": despatch, "package": package},
        order_ref=order_ref,
        confidence="assumed",
    )
    if event is not None:
        yield event


def returns_event_key(record: Record) -> str:
    row = Row(record)
    return "|".join(_key_part(row.text(*names)) for names in (("return_code",), ("sku",), ("ts", "return_date")))


@register(
    SYSTEM,
    "returns_event",
    body="form",
    matches=lambda r: _any(r, "return_code") and _any(r, "sku"),
    natural_key=returns_event_key,
    description="Returns callback [ASSUMPTION]: one returned item",
)
def returns_event(record: Record, ctx: NormaliseContext) -> Iterator[NormalisedEvent]:
    """Returns callback -> return.received for one item."""
    row = Row(record)
    code = row.required("return_code")
    sku = row.required("sku")
    condition = row.text("condition")
    line = {
        "sku": sku,
        "quantity": row.integer("qty", "quantity", minimum=1),
        "reason_text": row.text("reason"),
        "condition": _condition(condition),
    }
    line["quantity_received"] = line["quantity"]
    yield ctx.event(
        "return.received",
        dedupe_key=f"{code}|{sku}|received",
        occurred_at=_callback_time(row, ctx, "ts", "return_date"),
        data={
            "return_id": code,
            "status": "received",
            "native_status": condition,
            "lines": [{k: v for k, v in line.items() if v is not None}],
        },
        native_event="Returns",
        native_ids={"return_code": code},
        order_ref=_order(record, ctx),
        confidence="assumed",
    )


def status_key(record: Record) -> str:
    row = Row(record)
    return "|".join(_key_part(row.text(*names)) for names in (ORDER_NO, ("status",), ("time", "LastModificationTime")))


@register(
    SYSTEM,
    "sales_order_status_changed",
    body="form",
    matches=lambda r: _any(r, *ORDER_NO) and _any(r, "status") and not _any(r, *TRACKING),
    natural_key=status_key,
    description="SalesOrderStatusChanges callback: order status",
)
def sales_order_status_changed(record: Record, ctx: NormaliseContext) -> Iterator[NormalisedEvent]:
    """SalesOrderStatusChanges -> order.cancelled for a cancellation; other statuses carry no event
    (a despatch is announced by the despatch data, which has the items and tracking)."""
    row = Row(record)
    order = row.required(*ORDER_NO)
    native = row.required("status")
    if ctx.status(native, DEFAULT_STATUSES) != "cancelled":
        return
    changed_at = _callback_time(row, ctx, "time", "LastModificationTime")
    yield ctx.event(
        "order.cancelled",
        dedupe_key=f"{order}|{native}|{row.text('time', 'LastModificationTime') or changed_at.isoformat()}",
        occurred_at=changed_at,
        data={"scope": "full", "reason": row.text("reason")},
        native_event="SalesOrderStatusChanges",
        native_ids={"sales_order_number": order},
        order_ref=_order(record, ctx),
        confidence="inferred",
    )


@register(
    SYSTEM,
    "availability_changed",
    body="form",
    matches=lambda r: _any(r, "sku", "ItemCode", "item") and _any(r, "quantity", "Available", "available"),
    description="AvailabilityChanges callback: available quantity of an item (all sites)",
)
def availability_changed(record: Record, ctx: NormaliseContext) -> Iterator[NormalisedEvent]:
    """AvailabilityChanges -> stock.level_changed of the item across all sites (site "*")."""
    row = Row(record)
    sku = row.required("sku", "ItemCode", "item")
    available = row.integer("quantity", "Available", "available", minimum=None)
    event = ctx.stock.snapshot(
        sku=sku,
        site=ALL_SITES,
        as_of=_callback_time(row, ctx, "time", "timestamp"),
        levels=StockLevels(sellable={"available": available}),
        native_event="AvailabilityChanges",
        native_ids={"item_code": sku},
        confidence="inferred",
    )
    if event is not None:
        yield event


def incremental_key(record: Record) -> str:
    row = Row(record)
    names = (("product_sku", "ItemType.ItemCode"), ("updated_at", "UpdateTimestamp"), ("quantity", "QuantityChanged"))
    return "|".join(_key_part(row.text(*n)) for n in names)


@register(
    SYSTEM,
    "incremental_change",
    body="form",
    matches=lambda r: _any(r, "product_sku", "ItemType.ItemCode") and _any(r, "quantity", "QuantityChanged"),
    natural_key=incremental_key,
    description="IncrementalChanges callback: a stock adjustment (delta) with its reason",
)
def incremental_change(record: Record, ctx: NormaliseContext) -> Iterator[NormalisedEvent]:
    """IncrementalChanges -> stock.level_changed in delta mode (the snapshot baseline is not moved)."""
    row = Row(record)
    sku = row.required("product_sku", "ItemType.ItemCode")
    quantity = row.integer("quantity", "QuantityChanged", minimum=None)
    at = _callback_time(row, ctx, "updated_at", "UpdateTimestamp")
    yield ctx.event(
        "stock.level_changed",
        dedupe_key=f"{sku}|{at.isoformat()}|{quantity}|delta",
        occurred_at=at,
        data={
            "sku": sku,
            "location": {"site": ALL_SITES},
            "as_of": at,
            "mode": "delta",
            "delta": {"quantity": quantity, "bucket": "available", "reason": row.text("reason")},
        },
        native_event="IncrementalChanges",
        native_ids={"item_code": sku},
        confidence="inferred",
    )
