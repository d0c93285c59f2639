"""Scend: CSV exports (despatches, returns, stock, order_status) and webhook JSON. [ASSUMPTION]

Scend publishes nothing technical; the shapes are the proposal in scend.md. Export column names can be
renamed per kind with `[sources.scend.columns.<kind>]` (`field = "Column name"`), webhook event names
mapped with `[sources.scend] webhook_events`, and condition / disposition codes with `conditions` and
`dispositions`, so the real format plugs in without code changes. Timestamps without an offset are read
in `[sources.scend] timezone` (UTC by default).

* `despatches` - one row per parcel x SKU, grouped by despatch into one `shipment.despatched` with one
  parcel per `parcel_id`; `is_final_despatch` is Scend's own word on finality; `qty_ordered` feeds the
  order ledger.
* `returns` - one row per returned line, grouped by return into `return.received` (+ `return.restocked`
  for lines with restocked quantity).
* `stock` - full snapshot rows per SKU x site, diffed against the last known level.
* `order_status` - a cancellation becomes `order.cancelled`; statuses map through `[mapping.status.scend]`.
* `scend_webhook` - JSON bodies whose `event` says what they carry (despatch, return, stock snapshot,
  stock adjustment, order status), built by the same code as the files.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from cogent_cli.config import SCEND_FIELDS, Config, ScendSettings
from cogent_cli.events import NormalisedEvent, ShipMethod
from cogent_cli.normalise.base import (
    NormaliseContext,
    NormaliseError,
    Record,
    register,
    register_grouped,
    settings_for,
    ship_method_of,
)
from cogent_cli.normalise.fields import Row, canon
from cogent_cli.normalise.stock import StockLevels

SYSTEM = "scend"
DEFAULT_STATUSES = {
    "RECEIVED": "received",
    "NEW": "received",
    "ALLOCATED": "allocated",
    "PICKING": "picking",
    "PICKED": "picking",
    "PACKED": "packed",
    "DESPATCHED": "despatched",
    "DISPATCHED": "despatched",
    "PARTIALLY_DESPATCHED": "partially_despatched",
    "CANCELLED": "cancelled",
    "CANCELED": "cancelled",
    "ON_HOLD": "on_hold",
}
# Columns that identify each export kind (by their field names; renamed through config).
IDENTIFYING = {
    "despatches": ("despatch_id", "sku", "qty_despatched"),
    "returns": ("return_id", "sku", "qty_received"),
    "stock": ("site_code", "sku", "available", "snapshot_at"),
    "order_status": ("order_number", "status", "status_at"),
}


def settings_of(config: Config) -> ScendSettings:
    return settings_for(config, SYSTEM, ScendSettings)


def column(config: Config, kind: str, name: str) -> str:
    return settings_of(config).columns.get(kind, {}).get(name, name)


class Fields:
    """A Scend record read through the configured column names of its kind."""

    def __init__(self, record: Mapping[str, Any], ctx: NormaliseContext, kind: str, renamed: bool = True) -> None:
        self.record = record
        self.ctx = ctx
        self.row = Row(record)
        self.settings = settings_of(ctx.config)
        # Webhook bodies use the proposed field names, never the renamed export columns.
        self.names = self.settings.columns.get(kind, {}) if renamed else {}

    def order_number(self) -> str | None:
        return self.ctx.order_number(self.record, self._name("order_number"))

    def order_ref(self) -> dict[str, Any] | None:
        return _present({"order_number": self.order_number(), "source_order_id": self.text("order_number")}) or None

    def _name(self, name: str) -> str:
        return self.names.get(name, name)

    def text(self, name: str) -> str | None:
        return self.row.text(self.names.get(name, name))

    def required(self, name: str) -> str:
        return self.row.required(self._name(name))

    def integer(self, name: str, default: int | None = None, minimum: int | None = 0) -> int:
        return self.row.integer(self._name(name), default=default, minimum=minimum)

    def optional_integer(self, name: str, minimum: int | None = 0) -> int | None:
        return self.row.optional_integer(self._name(name), minimum=minimum)

    def boolean(self, name: str) -> bool | None:
        return self.row.boolean(self._name(name))

    def datetime(self, name: str) -> datetime:
        return self.row.datetime(self._name(name), zone_name=self.settings.timezone)


def _present(values: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in values.items() if value not in (None, "")}


def _row_hash(record: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(record, sort_keys=True, default=str).encode()).hexdigest()[:16]


# -- despatches --------------------------------------------------------------------------------------


class DespatchRow(NamedTuple):
    # A named tuple rather than a frozen dataclass: one is built per row or item, four times faster.
    despatch_id: str
    order_number: str | None
    source_order_id: str | None
    channel_ref: str | None
    parcel_id: str | None
    despatched_at: datetime
    ship_method: ShipMethod
    tracking_number: str | None
    tracking_url: str | None
    sku: str
    quantity: int
    ordered: int | None
    final: bool | None
    site: str | None
    email: str | None
    client: str | None


def parse_despatch(record: Record, ctx: NormaliseContext, renamed: bool = True) -> DespatchRow:
    f = Fields(record, ctx, "despatches", renamed)
    return DespatchRow(
        despatch_id=f.required("despatch_id"),
        order_number=f.order_number(),
        source_order_id=f.text("order_number"),
        channel_ref=f.text("channel_order_ref"),
        parcel_id=f.text("parcel_id"),
        despatched_at=f.datetime("despatched_at"),
        ship_method=ship_method_of(
            f.text("carrier_code"), f.text("carrier_name"), f.text("service_code"), f.text("service_name")
        ),
        tracking_number=f.text("tracking_number"),
        tracking_url=f.text("tracking_url"),
        **_despatch_line(f),
        final=f.boolean("is_final_despatch"),
        site=f.text("site_code"),
        email=f.text("customer_email"),
        client=f.text("client_code"),
    )


def _despatch_line(f: Fields) -> dict[str, Any]:
    """The fields of a despatch row that are the line's own (the others are the despatch's or the parcel's)."""
    return {
        "sku": f.required("sku"),
        "quantity": f.integer("qty_despatched", minimum=1),
        "ordered": f.optional_integer("qty_ordered"),
    }


def build_despatch(rows: Sequence[DespatchRow], ctx: NormaliseContext) -> Iterator[NormalisedEvent]:
    """Rows of one despatch -> one shipment.despatched with a parcel per parcel_id."""
    first = rows[0]
    parcels: dict[str, dict[str, Any]] = {}
    for row in rows:
        parcel = parcels.setdefault(
            row.parcel_id or row.tracking_number or "",
            {
                "parcel_id": row.parcel_id,
                "tracking_number": row.tracking_number,
                "tracking_url": row.tracking_url,
                "ship_method": row.ship_method,
                "items": {},
            },
        )
        parcel["items"][row.sku] = parcel["items"].get(row.sku, 0) + row.quantity
    ordered = {row.sku: row.ordered for row in rows if row.ordered is not None}
    if first.order_number and ordered:
        ctx.ledger.record_order(first.order_number, ordered, system=SYSTEM, at=first.despatched_at, replace=False)
    finals = [row.final for row in rows if row.final is not None]
    event = ctx.shipments.despatch(
        shipment_id=first.despatch_id,
        despatched_at=min(row.despatched_at for row in rows),
        parcels=[
            {
                **_present({k: v for k, v in parcel.items() if k != "items"}),
                "items": [{"sku": sku, "quantity": qty} for sku, qty in parcel["items"].items()],
            }
            for parcel in parcels.values()
        ],
        granularity="parcel",
        dedupe_key=f"{first.client or ''}|{first.despatch_id}",
        order_number=first.order_number,
        site=first.site,
        final=any(finals) if finals else None,
        native_event="despatches",
        native_ids={"despatch_id": first.despatch_id},
        customer=_present({"email": first.email}) or None,
        order_ref=_present(
            {"order_number": first.order_number, "source_order_id": first.source_order_id, "channel": first.channel_ref}
        )
        or None,
        confidence="assumed",
    )
    if event is not None:
        yield event


def _columns(kind: str) -> Callable[[Config], list[str]]:
    return lambda config: [column(config, kind, name) for name in IDENTIFYING[kind]]


def _group_by(kind: str, name: str) -> Callable[[Record, Config], str]:
    """Group key from the configured column; a row without one is its own group (and fails parsing)."""

    def key(record: Record, config: Config) -> str:
        return Row(record).text(column(config, kind, name)) or f"(no {name}) {_row_hash(record)}"

    return key


register_grouped(
    SYSTEM,
    "despatches",
    group_key=_group_by("despatches", "despatch_id"),
    parse_row=parse_despatch,
    build_group=build_despatch,
    columns=_columns("despatches"),
    description="despatches_*.csv rows, one per parcel x SKU [ASSUMPTION]",
)


# -- returns -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReturnRow:
    return_id: str
    rma_number: str | None
    order_number: str | None
    source_order_id: str | None
    received_at: datetime
    site: str | None
    line: dict[str, Any]


def _mapped(table: Mapping[str, str], native: str | None, field_name: str, config_key: str) -> str | None:
    if native is None:
        return None
    for key, value in table.items():
        if canon(key) == canon(native):
            return value
    raise NormaliseError(
        field_name,
        native,
        f"unknown Scend {field_name}; map it under [sources.scend] {config_key} (known: "
        f"{', '.join(sorted(table)) or 'none'})",
    )


def return_line(f: Fields, settings: ScendSettings) -> dict[str, Any]:
    condition = f.text("condition")
    known_conditions = {canon(k): v for k, v in settings.conditions.items()}
    received = f.integer("qty_received", minimum=1)
    restocked = f.optional_integer("qty_restocked")
    quarantined = f.optional_integer("qty_quarantined")
    if (restocked or 0) + (quarantined or 0) > received:
        raise NormaliseError(
            "qty_restocked",
            restocked,
            f"restocked + quarantined ({(restocked or 0) + (quarantined or 0)}) exceeds qty_received ({received})",
        )
    return _present(
        {
            "sku": f.required("sku"),
            "quantity": received,
            "quantity_received": received,
            "quantity_restocked": restocked,
            "reason_code": f.text("return_reason_code"),
            "reason_text": f.text("return_reason_text"),
            "customer_comment": f.text("notes"),
            "condition": known_conditions.get(canon(condition), "unknown") if condition else None,
            "disposition": _mapped(settings.dispositions, f.text("disposition"), "disposition", "dispositions"),
        }
    )


def parse_return(record: Record, ctx: NormaliseContext, renamed: bool = True) -> ReturnRow:
    f = Fields(record, ctx, "returns", renamed)
    return ReturnRow(
        return_id=f.required("return_id"),
        rma_number=f.text("rma_number"),
        order_number=f.order_number(),
        source_order_id=f.text("order_number"),
        received_at=f.datetime("received_at"),
        site=f.text("site_code"),
        line=return_line(f, f.settings),
    )


def build_returns(rows: Sequence[ReturnRow], ctx: NormaliseContext) -> Iterator[NormalisedEvent]:
    """Rows of one return -> return.received, and return.restocked for lines put back on sale."""
    first = rows[0]
    skus = ",".join(sorted({row.line["sku"] for row in rows}))
    occurred = max(row.received_at for row in rows)
    common: dict[str, Any] = {
        "occurred_at": occurred,
        "native_event": "returns",
        "native_ids": {"return_id": first.return_id},
        "order_ref": _present({"order_number": first.order_number, "source_order_id": first.source_order_id}) or None,
        "confidence": "assumed",
    }
    data = {"return_id": first.return_id, "rma_number": first.rma_number, "site": first.site}
    yield ctx.event(
        "return.received",
        dedupe_key=f"{first.return_id}|{skus}|received",
        data=_present({**data, "status": "received", "lines": [row.line for row in rows]}),
        **common,
    )
    restocked = [row.line for row in rows if row.line.get("quantity_restocked")]
    if restocked:
        yield ctx.event(
            "return.restocked",
            dedupe_key=f"{first.return_id}|{','.join(sorted(line['sku'] for line in restocked))}|restocked",
            data=_present({**data, "status": "restocked", "lines": restocked}),
            **common,
        )


register_grouped(
    SYSTEM,
    "returns",
    group_key=_group_by("returns", "return_id"),
    parse_row=parse_return,
    build_group=build_returns,
    columns=_columns("returns"),
    description="returns_*.csv rows, one per returned line [ASSUMPTION]",
)


# -- stock -------------------------------------------------------------------------------------------


def stock_levels(f: Fields) -> StockLevels:
    return StockLevels(
        sellable={
            "on_hand": f.optional_integer("on_hand", minimum=None),
            "allocated": f.optional_integer("allocated", minimum=None),
            "available": f.integer("available", minimum=None),
        },
        non_sellable={
            "quarantine": f.optional_integer("quarantine"),
            "damaged": f.optional_integer("damaged"),
            "on_hold": f.optional_integer("on_hold"),
        },
        inbound={
            "on_order": f.optional_integer("inbound_expected"),
            "received_not_putaway": f.optional_integer("inbound_received_not_putaway"),
        },
    )


@register(
    SYSTEM, "stock", columns=_columns("stock"), description="stock_*.csv snapshot rows per SKU x site [ASSUMPTION]"
)
def stock_row(record: Record, ctx: NormaliseContext) -> Iterator[NormalisedEvent]:
    """Stock snapshot row -> stock.level_changed when any bucket changed since the last snapshot."""
    return stock_snapshot(Fields(record, ctx, "stock"))


def stock_snapshot(f: Fields) -> Iterator[NormalisedEvent]:
    ctx = f.ctx
    sku = f.required("sku")
    site = f.required("site_code")
    event = ctx.stock.snapshot(
        sku=sku,
        site=site,
        as_of=f.datetime("snapshot_at"),
        levels=stock_levels(f),
        barcode=f.text("barcode"),
        stock_owner=f.text("client_code"),
        native_event="stock",
        native_ids={"sku": sku, "site_code": site},
        confidence="assumed",
    )
    if event is not None:
        yield event


# -- order status ------------------------------------------------------------------------------------


def order_status(f: Fields, native_event: str) -> Iterator[NormalisedEvent]:
    ctx = f.ctx
    number = f.required("order_number")
    native = f.required("status")
    if ctx.status(native, DEFAULT_STATUSES) != "cancelled":
        return
    at = f.datetime("status_at")
    yield ctx.event(
        "order.cancelled",
        dedupe_key=f"{number}|{native}|{at.isoformat()}",
        occurred_at=at,
        data=_present({"scope": "full", "reason": f.text("reason")}),
        native_event=native_event,
        native_ids={"order_number": number},
        order_ref=f.order_ref(),
        confidence="assumed",
    )


@register(
    SYSTEM,
    "order_status",
    columns=_columns("order_status"),
    description="order_status_*.csv rows: a cancellation becomes order.cancelled [ASSUMPTION]",
)
def order_status_row(record: Record, ctx: NormaliseContext) -> Iterator[NormalisedEvent]:
    """Order status row -> order.cancelled for a cancellation (other statuses carry no event)."""
    return order_status(Fields(record, ctx, "order_status"), "order_status")


# -- webhooks ----------------------------------------------------------------------------------------


def webhook_key(record: Record) -> str:
    return str(record.get("event_id") or "")


def _event_kind(record: Record, ctx: NormaliseContext) -> str:
    name = record.get("event")
    kinds = settings_of(ctx.config).webhook_events
    if not isinstance(name, str) or name not in kinds:
        raise NormaliseError(
            "event",
            name,
            f"unknown Scend webhook event; map it under [sources.scend] webhook_events "
            f"(known: {', '.join(sorted(kinds))})",
        )
    return kinds[name]


def _list(record: Mapping[str, Any], name: str) -> list[dict[str, Any]]:
    value = record.get(name)
    if not isinstance(value, list) or not value or not all(isinstance(v, dict) for v in value):
        raise NormaliseError(name, value, "must be a non-empty list of objects")
    return value


def _object(record: Mapping[str, Any], name: str) -> dict[str, Any]:
    value = record.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise NormaliseError(name, value, "must be an object")
    return value


def _scalars(record: Record) -> dict[str, Any]:
    """The record's top-level fields that are not lists or objects (shared by each of its lines)."""
    return {k: v for k, v in record.items() if not isinstance(v, (list, dict))}


def webhook_despatch(record: Record, ctx: NormaliseContext) -> Iterator[NormalisedEvent]:
    rows = []
    top = _scalars(record)
    for index, parcel in enumerate(_list(record, "parcels")):
        carrier, service = _object(parcel, "carrier"), _object(parcel, "service")
        first: DespatchRow | None = None
        for item in _list(parcel, "items"):
            line = {"sku": item.get("sku"), "qty_despatched": item.get("qty"), "qty_ordered": item.get("qty_ordered")}
            if first is not None:
                # The body's and the parcel's fields were read with the parcel's first item.
                rows.append(first._replace(**_despatch_line(Fields(line, ctx, "despatches", renamed=False))))
                continue
            flat = {
                **top,
                "despatched_at": record.get("occurred_at"),
                "is_final_despatch": record.get("is_final"),
                "parcel_id": parcel.get("parcel_id") or f"parcel-{index + 1}",
                "carrier_code": carrier.get("code"),
                "carrier_name": carrier.get("name"),
                "service_code": service.get("code"),
                "service_name": service.get("name"),
                "tracking_number": parcel.get("tracking_number"),
                "tracking_url": parcel.get("tracking_url"),
                **line,
            }
            first = parse_despatch(flat, ctx, renamed=False)
            rows.append(first)
    return build_despatch(rows, ctx)


def webhook_return(record: Record, ctx: NormaliseContext) -> Iterator[NormalisedEvent]:
    rows = []
    top = _scalars(record)
    for line in _list(record, "lines"):
        flat = {
            **top,
            "received_at": record.get("received_at") or record.get("occurred_at"),
            "sku": line.get("sku"),
            "qty_received": line.get("qty_received", line.get("qty")),
            "return_reason_code": line.get("reason_code"),
            "return_reason_text": line.get("reason_text"),
            "condition": line.get("condition"),
            "disposition": line.get("disposition"),
            "qty_restocked": line.get("qty_restocked"),
            "qty_quarantined": line.get("qty_quarantined"),
            "notes": line.get("notes"),
        }
        rows.append(parse_return(flat, ctx, renamed=False))
    return build_returns(rows, ctx)


def webhook_stock(record: Record, ctx: NormaliseContext) -> Iterator[NormalisedEvent]:
    levels = record.get("levels")
    entries = _list(record, "levels") if levels is not None else [record]
    for entry in entries:
        flat = {
            **_scalars(record),
            "snapshot_at": record.get("snapshot_at") or record.get("occurred_at"),
            **entry,
        }
        yield from stock_snapshot(Fields(flat, ctx, "stock", renamed=False))


def webhook_adjustment(record: Record, ctx: NormaliseContext) -> Iterator[NormalisedEvent]:
    row = Row(record)
    sku = row.required("sku")
    site = row.required("site_code")
    quantity = row.integer("qty", "quantity", minimum=None)
    bucket = row.required("bucket")
    if bucket not in ("available", "allocated", "quarantine", "damaged", "on_hold", "inbound"):
        raise NormaliseError("bucket", bucket, "must be available, allocated, quarantine, damaged, on_hold or inbound")
    at = row.datetime("occurred_at", zone_name=settings_of(ctx.config).timezone)
    yield ctx.event(
        "stock.level_changed",
        dedupe_key=f"{record.get('event_id') or ''}|{sku}|{site}|{at.isoformat()}|{bucket}|{quantity}",
        occurred_at=at,
        data={
            "sku": sku,
            "location": {"site": site},
            "as_of": at,
            "mode": "delta",
            "delta": _present({"quantity": quantity, "bucket": bucket, "reason": row.text("reason")}),
        },
        native_event="stock.adjusted",
        native_ids={"sku": sku, "site_code": site},
        confidence="assumed",
    )


def webhook_order_status(record: Record, ctx: NormaliseContext) -> Iterator[NormalisedEvent]:
    flat = {**record, "status_at": record.get("status_at") or record.get("occurred_at")}
    yield from order_status(Fields(flat, ctx, "order_status", renamed=False), "order.status_changed")


WEBHOOK_HANDLERS = {
    "despatch": webhook_despatch,
    "return": webhook_return,
    "stock_snapshot": webhook_stock,
    "stock_adjustment": webhook_adjustment,
    "order_status": webhook_order_status,
}


@register(
    SYSTEM,
    "scend_webhook",
    matches=lambda record: isinstance(record.get("event"), str) and "event_id" in record,
    natural_key=webhook_key,
    description="Scend webhook JSON bodies (despatch, return, stock, order status) [ASSUMPTION]",
)
def scend_webhook(record: Record, ctx: NormaliseContext) -> Iterator[NormalisedEvent]:
    """Webhook body -> the events of what its `event` carries."""
    return WEBHOOK_HANDLERS[_event_kind(record, ctx)](record, ctx)


assert set(IDENTIFYING) == set(SCEND_FIELDS)
