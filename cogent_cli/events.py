"""The normalised event model: what every source payload becomes before anything reaches Klaviyo.

Facts are immutable: a correction is a new event. Money is a Decimal with an ISO 4217 currency,
every time is timezone-aware UTC, and the event id is derived from (system, tenant, dedupe key),
so the same fact always gets the same id and, later, the same Klaviyo `unique_id`.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from functools import cache
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
)

SCHEMA_VERSION = "1.0"
# Fixed namespace for event ids; changing it would change every unique_id sent to Klaviyo.
EVENT_NAMESPACE = uuid.UUID("6f0d8f4e-3b7a-5c61-9a8e-2d4c1b0a9e57")

SourceSystem = Literal["peoplevox", "clarus", "scend", "swap", "marketplacer"]
Transport = Literal["webhook", "poll", "sftp", "file", "backfill"]
EventType = Literal[
    "order.placed",
    "order.edited",
    "order.cancelled",
    "shipment.despatched",
    "return.lodged",
    "return.approved",
    "return.received",
    "return.restocked",
    "refund.processed",
    "stock.level_changed",
    "customer.upserted",
    "consent.changed",
]
EVENT_TYPES: tuple[str, ...] = EventType.__args__  # type: ignore[attr-defined]


def _to_utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


# pydantic-core writes a UTC time as 2026-07-01T03:04:00Z (microseconds only when present) without
# calling back into Python, which matters with two or three times in every event.
UtcDatetime = Annotated[AwareDatetime, AfterValidator(_to_utc)]


@cache
def _currency_codes() -> frozenset[str]:
    import pycountry  # loads its ISO 4217 table on first use only

    return frozenset(currency.alpha_3 for currency in pycountry.currencies)


def _iso_currency(code: str) -> str:
    if code not in _currency_codes():
        raise ValueError(f"{code!r} is not an ISO 4217 currency code such as GBP, EUR or AUD")
    return code


CurrencyCode = Annotated[str, Field(pattern=r"^[A-Z]{3}$"), AfterValidator(_iso_currency)]
Quantity = Annotated[int, Field(ge=0)]


_NAMESPACE_BYTES = EVENT_NAMESPACE.bytes


def derive_event_id(system: str, tenant: str, dedupe_key: str) -> str:
    """Deterministic id of a fact: uuid5 over system, tenant and the source's dedupe key.

    Spelt out rather than `str(uuid.uuid5(...))`, which builds a UUID object per event; the text is the same."""
    digest = bytearray(hashlib.sha1(_NAMESPACE_BYTES + f"{system}|{tenant}|{dedupe_key}".encode()).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    text = digest.hex()
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Money(Model):
    amount: Decimal
    currency: CurrencyCode


class Source(Model):
    system: SourceSystem
    tenant: str
    transport: Transport
    native_event: str | None = None
    native_ids: dict[str, str] = Field(default_factory=dict)
    dedupe_key: Annotated[str, Field(min_length=1)]
    sequence: int | None = None
    raw_ref: str | None = None


class CustomerRef(Model):
    email: str | None = None
    phone: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    external_ids: dict[str, str] = Field(default_factory=dict)


class OrderRef(Model):
    order_number: str | None = None
    source_order_id: str | None = None
    sub_order_id: str | None = None
    channel: str | None = None
    seller: str | None = None


class Address(Model):
    name: str | None = None
    line1: str | None = None
    line2: str | None = None
    city: str | None = None
    region: str | None = None
    postcode: str | None = None
    country_code: str | None = None


class OrderLine(Model):
    line_id: str | None = None
    sku: str
    barcode: str | None = None
    name: str | None = None
    variant_id: str | None = None
    quantity: Quantity
    unit_price: Money | None = None
    line_total: Money | None = None
    status: str | None = None


class ShipMethod(Model):
    carrier_code: str | None = None
    carrier_name: str | None = None
    service_code: str | None = None
    service_name: str | None = None


class Totals(Model):
    subtotal: Money | None = None
    shipping: Money | None = None
    discount: Money | None = None
    tax: Money | None = None
    total: Money | None = None


class Change(Model):
    path: str
    old: Any = None
    new: Any = None


OrderStatus = Literal[
    "received", "allocated", "picking", "packed", "partially_despatched", "despatched", "cancelled", "on_hold"
]


class OrderData(Model):
    status: OrderStatus | None = None
    native_status: str | list[str] | None = None
    placed_at: UtcDatetime | None = None
    currency: CurrencyCode | None = None
    totals: Totals | None = None
    lines: list[OrderLine]
    shipping_address: Address | None = None
    billing_address: Address | None = None
    ship_method: ShipMethod | None = None
    partial_shipment_allowed: bool | None = None
    changes: list[Change] | None = None


class OrderCancelledData(Model):
    scope: Literal["full", "partial"]
    cancelled_lines: list[OrderLine] | None = None
    reason: str | None = None
    refund_expected: bool | None = None
    value: Money | None = None


class ParcelItem(Model):
    sku: str
    line_id: str | None = None
    quantity: Quantity


class Parcel(Model):
    parcel_id: str | None = None
    tracking_number: str | None = None
    tracking_url: str | None = None
    ship_method: ShipMethod | None = None
    weight_kg: float | None = None
    items: list[ParcelItem]


class ShipmentData(Model):
    shipment_id: str
    despatched_at: UtcDatetime
    is_partial: bool | None = None
    is_final: bool | None = None
    site: str | None = None
    parcels: Annotated[list[Parcel], Field(min_length=1)]
    tracking_granularity: Literal["parcel", "shipment"] | None = None
    # Quantities of the order still to be despatched after this shipment (from the order ledger).
    pending_items: list[ParcelItem] | None = None
    # Everything in the shipment, also when the source cannot say which parcel holds what.
    items: list[ParcelItem] | None = None
    # event_id of the earlier event about the same shipment that this one upgrades (e.g. package-level
    # tracking replacing despatch-level): the same shipment, not a new one.
    supersedes: str | None = None


class ReturnShipment(Model):
    carrier: str | None = None
    tracking_number: str | None = None
    status: str | None = None


Disposition = Literal["restock", "quarantine", "write_off", "return_to_vendor", "recycle", "pending"]
Resolution = Literal["refund", "exchange", "store_credit", "warranty", "recycle", "other"]


class ReturnLine(Model):
    return_line_id: str | None = None
    sku: str
    variant_id: str | None = None
    line_item_id: str | None = None
    quantity: Quantity
    quantity_received: Quantity | None = None
    quantity_restocked: Quantity | None = None
    reason_code: str | None = None
    reason_text: str | None = None
    sub_reason_text: str | None = None
    customer_comment: str | None = None
    condition: str | None = None
    disposition: Disposition | None = None
    unit_price: Money | None = None
    resolution: Resolution | None = None


class ReturnData(Model):
    return_id: str
    rma_number: str | None = None
    status: str
    native_status: str | None = None
    return_types: list[str] | None = None
    return_shipment: ReturnShipment | None = None
    site: str | None = None
    lines: list[ReturnLine]
    expected_refund: Money | None = None


class Deduction(Model):
    type: str | None = None
    amount: Money | None = None


class RefundLine(Model):
    sku: str
    line_item_id: str | None = None
    quantity: Quantity
    amount: Money
    tax: Money | None = None


class RefundData(Model):
    refund_id: str
    return_id: str | None = None
    method: Literal["original_payment", "store_credit", "gift_card", "exchange", "mixed", "unknown"] | None = None
    total: Money
    shipping_refund: Money | None = None
    deductions: list[Deduction] | None = None
    lines: list[RefundLine]
    line_amounts_basis: Literal["source", "allocated_pro_rata"] | None = None


class StockLocation(Model):
    site: str
    bin: str | None = None
    stock_owner: str | None = None


class SellableStock(Model):
    on_hand: int | None = None
    allocated: int | None = None
    available: int | None = None


class NonSellableStock(Model):
    quarantine: int | None = None
    damaged: int | None = None
    on_hold: int | None = None
    returns_pending_qc: int | None = None
    goods_in: int | None = None


class InboundStock(Model):
    on_order: int | None = None
    received_not_putaway: int | None = None


class StockDelta(Model):
    quantity: int
    bucket: str | None = None
    reason: str | None = None
    activity: str | None = None


class StockData(Model):
    sku: str
    barcode: str | None = None
    location: StockLocation
    as_of: UtcDatetime
    mode: Literal["snapshot", "delta"]
    sellable: SellableStock | None = None
    non_sellable: NonSellableStock | None = None
    inbound: InboundStock | None = None
    delta: StockDelta | None = None
    infinite: bool | None = None
    back_in_stock: bool | None = None


class CustomerData(Model):
    addresses: list[Address] | None = None
    locale: str | None = None
    properties: dict[str, Any] | None = None


class ConsentData(Model):
    channel: Literal["email", "sms"]
    status: Literal["subscribed", "unsubscribed", "never_subscribed"]
    captured_at: UtcDatetime | None = None
    method: str | None = None
    evidence: str | None = None


class _Envelope(Model):
    schema_version: Literal["1.0"] = SCHEMA_VERSION
    event_id: Annotated[str, Field(min_length=1, max_length=255)]
    occurred_at: UtcDatetime
    received_at: UtcDatetime | None = None
    source: Source
    customer: CustomerRef | None = None
    order_ref: OrderRef | None = None
    confidence: Literal["documented", "inferred", "assumed"] | None = None

    @property
    def order_number(self) -> str | None:
        return self.order_ref.order_number if self.order_ref else None


class OrderPlaced(_Envelope):
    event_type: Literal["order.placed"]
    data: OrderData


class OrderEdited(_Envelope):
    event_type: Literal["order.edited"]
    data: OrderData


class OrderCancelled(_Envelope):
    event_type: Literal["order.cancelled"]
    data: OrderCancelledData


class ShipmentDespatched(_Envelope):
    event_type: Literal["shipment.despatched"]
    data: ShipmentData


class ReturnLodged(_Envelope):
    event_type: Literal["return.lodged"]
    data: ReturnData


class ReturnApproved(_Envelope):
    event_type: Literal["return.approved"]
    data: ReturnData


class ReturnReceived(_Envelope):
    event_type: Literal["return.received"]
    data: ReturnData


class ReturnRestocked(_Envelope):
    event_type: Literal["return.restocked"]
    data: ReturnData


class RefundProcessed(_Envelope):
    event_type: Literal["refund.processed"]
    data: RefundData


class StockLevelChanged(_Envelope):
    event_type: Literal["stock.level_changed"]
    data: StockData


class CustomerUpserted(_Envelope):
    event_type: Literal["customer.upserted"]
    data: CustomerData


class ConsentChanged(_Envelope):
    event_type: Literal["consent.changed"]
    data: ConsentData


NormalisedEvent = Annotated[
    OrderPlaced
    | OrderEdited
    | OrderCancelled
    | ShipmentDespatched
    | ReturnLodged
    | ReturnApproved
    | ReturnReceived
    | ReturnRestocked
    | RefundProcessed
    | StockLevelChanged
    | CustomerUpserted
    | ConsentChanged,
    Field(discriminator="event_type"),
]

_adapter: TypeAdapter[NormalisedEvent] = TypeAdapter(NormalisedEvent)


def parse_event(payload: dict[str, Any] | str | bytes) -> NormalisedEvent:
    """Validate a normalised event from a dict or JSON text; raises pydantic.ValidationError."""
    if isinstance(payload, str | bytes):
        return _adapter.validate_json(payload)
    return _adapter.validate_python(payload)


def dump_event(event: NormalisedEvent) -> dict[str, Any]:
    """The JSON form of an event, keeping exactly the fields that were set."""
    return event.model_dump(mode="json", exclude_unset=True)


def make_event(
    event_type: EventType,
    *,
    source: Source,
    occurred_at: datetime,
    data: dict[str, Any] | BaseModel,
    received_at: datetime | None = None,
    **envelope: Any,
) -> NormalisedEvent:
    """Build an event whose id is derived from its source's identity."""
    return parse_event(
        {
            "schema_version": SCHEMA_VERSION,
            "event_type": event_type,
            "event_id": derive_event_id(source.system, source.tenant, source.dedupe_key),
            "occurred_at": occurred_at,
            "received_at": received_at or datetime.now(UTC),
            "source": source,
            "data": data,
            **envelope,
        }
    )
