"""What each normalised event becomes in Klaviyo. Pure: no state, no network.

Every operation's identity is the normalised event id (plus a suffix when one event yields several
operations), so re-runs and replays produce the same `unique_id`s. The one deliberate exception is
CLV netting: Klaviyo nets a Cancelled/Refunded Order off lifetime value only when its `unique_id`
equals the Placed Order's, so such events carry that id as a *claim* (`clv_unique_id`) that the
outbox grants to the first event of each metric per order (see docs/mapping.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal

from cogent_cli.config import Config, SourceSettings
from cogent_cli.events import (
    ConsentChanged,
    CustomerUpserted,
    Money,
    NormalisedEvent,
    OrderCancelled,
    OrderEdited,
    OrderLine,
    OrderPlaced,
    RefundProcessed,
    ReturnData,
    ShipmentDespatched,
    ShipMethod,
    StockLevelChanged,
)
from cogent_cli.sync.exceptions import MappingError
from cogent_cli.sync.identity import Identity, identity_from
from cogent_cli.sync.lanes import BACKFILL, CATALOG, PROFILE, TRANSACTIONAL

OpKind = Literal["event", "profile", "catalog", "subscribe", "unsubscribe"]


# Business order within one order: a later stage waits while an earlier one is undelivered.
STAGES = {
    "order.placed": 0,
    "order.edited": 1,
    "order.cancelled": 2,
    "shipment.despatched": 2,
    "return.lodged": 3,
    "return.approved": 4,
    "return.received": 5,
    "return.restocked": 6,
    "refund.processed": 7,
}
RETURN_PROFILE_PROPERTIES = ("open_return", "last_return_reason", "returned_skus")
CLOSED_RETURN_STATUSES = frozenset(
    {"closed", "complete", "completed", "refunded", "rejected", "denied", "cancelled", "canceled", "restocked"}
)
SELLABLE_BUCKETS = frozenset({"available", "sellable", "on_hand"})


@dataclass(frozen=True)
class StockChange:
    """Sellable stock of one SKU at one site; the outbox sums sites into the catalog quantity."""

    sku: str
    site: str
    as_of: str
    available: int | None = None
    delta: int | None = None


@dataclass
class Op:
    kind: OpKind
    suffix: str
    lane: int
    metric: str
    payload: dict[str, Any]
    stage: int = 0
    clv_unique_id: str | None = None
    stock: StockChange | None = None


@dataclass
class Mapped:
    ops: list[Op] = field(default_factory=list)
    # Why an event produced nothing (stock that is not sellable, order events the storefront sends...).
    skipped: str | None = None


def _amount(money: Money | None) -> float | None:
    return float(money.amount) if money is not None else None


def _currency(*candidates: Money | None) -> str | None:
    return next((m.currency for m in candidates if m is not None), None)


def _clean(properties: dict[str, Any]) -> dict[str, Any]:
    # Klaviyo ignores null, "" and 0-valued properties anyway; leaving out None keeps payloads honest.
    # Tested as "empty list or dict" rather than `v != [] and v != {}`, which builds two objects per value.
    return {k: v for k, v in properties.items() if not (v is None or (not v and isinstance(v, (list, dict))))}


def placed_order_unique_id(event: NormalisedEvent, config: Config) -> str | None:
    ref = event.order_ref
    if ref is None or not ref.order_number:
        return None
    try:
        return config.metrics.placed_order_unique_id.format(
            order_number=ref.order_number, source_order_id=ref.source_order_id or ref.order_number
        )
    except (KeyError, IndexError) as exc:
        raise MappingError(
            "validation_error",
            f"metrics.placed_order_unique_id uses an unknown placeholder {exc}",
            hint="Use {order_number} or {source_order_id}.",
        ) from None


def canonical_ship_method(method: ShipMethod | None, config: Config, pointer: str) -> str | None:
    """The canonical ship method: looked up in [mapping.ship_methods] when that table is set
    (missing means unmapped, an exception for ops), else the service name as the source gave it."""
    if method is None:
        return None
    candidates = [
        c
        for c in (
            method.service_code,
            method.service_name,
            f"{method.carrier_name or method.carrier_code}/{method.service_name or method.service_code}"
            if (method.carrier_name or method.carrier_code) and (method.service_name or method.service_code)
            else None,
        )
        if c
    ]
    table = config.mapping.ship_methods
    if not candidates:
        return None  # the source gave no method at all: nothing to map, nothing to report
    if not table:
        return method.service_name or method.service_code
    for candidate in candidates:
        if candidate in table:
            return table[candidate]
    raise MappingError(
        "unmapped_ship_method",
        f"Ship method {' / '.join(candidates)} is not in [mapping.ship_methods]",
        pointer=pointer,
        hint=f'Add it to cogent.toml, e.g. "{candidates[-1] if candidates else "CODE"}" = "standard", '
        "then `cogent replay --class unmapped_ship_method`.",
    )


def _line_items(lines: list[OrderLine]) -> list[dict[str, Any]]:
    return [
        _clean(
            {
                "ProductID": line.variant_id,
                "SKU": line.sku,
                "ProductName": line.name,
                "Quantity": line.quantity,
                "ItemPrice": _amount(line.unit_price),
                "RowTotal": _amount(line.line_total),
                "LineId": line.line_id,
            }
        )
        for line in lines
    ]


class Mapper:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.metrics = config.metrics
        # Normalising identifiers (phone parsing above all) costs more than the rest of a mapping;
        # a run sees the same customers again and again.
        self._identities: dict[tuple[str | None, str | None, str | None], Identity] = {}

    def map(self, event: NormalisedEvent, *, backfill: bool = False) -> Mapped:
        """The operations for one event; raises MappingError when the mapping cannot be applied."""
        handler = getattr(self, "_" + event.event_type.replace(".", "_"))
        mapped: Mapped = handler(event)
        stage = STAGES.get(event.event_type, 0)
        for op in mapped.ops:
            op.stage = stage
            if backfill and op.kind != "catalog":
                op.lane = BACKFILL
                if op.kind == "event":
                    op.payload["backfill"] = True
        return mapped

    # -- helpers -----------------------------------------------------------------------------------

    def _identity(self, event: NormalisedEvent) -> Identity:
        customer = event.customer
        if customer is None:
            return identity_from(None, self.config.identity)
        external_key = self.config.identity.external_id_key
        key = (customer.email, customer.phone, customer.external_ids.get(external_key) if external_key else None)
        identity = self._identities.get(key)
        if identity is None:
            identity = self._identities[key] = identity_from(customer, self.config.identity)
        return identity

    def _event_op(
        self,
        event: NormalisedEvent,
        metric: str,
        properties: dict[str, Any],
        *,
        value: float | None = None,
        currency: str | None = None,
        suffix: str = "event",
        unique_id: str | None = None,
        clv_unique_id: str | None = None,
    ) -> Op:
        identity = self._identity(event)
        if not identity:
            raise MappingError(
                "source_payload_invalid",
                f"{event.event_type} event {event.event_id} has no customer email, phone or external id",
                pointer="/customer",
                hint="Check the source's customer fields and its normaliser; Klaviyo needs one identifier.",
            )
        base = {
            "OrderId": event.order_number,
            "Source": event.source.system,
            "SourceEventId": event.event_id,
        }
        payload = {
            "metric": metric,
            "profile": identity.to_json(),
            "properties": _clean({**base, **properties}),
            "time": event.occurred_at.isoformat(),
            "value": value,
            "value_currency": currency if value is not None else None,
            "unique_id": unique_id or event.event_id,
            "backfill": False,
        }
        return Op("event", suffix, TRANSACTIONAL, metric, payload, clv_unique_id=clv_unique_id)

    def _source_settings(self, event: NormalisedEvent) -> SourceSettings:
        return getattr(self.config.sources, event.source.system, None) or SourceSettings()

    # -- orders ------------------------------------------------------------------------------------

    def _order_properties(self, event: OrderPlaced | OrderEdited) -> dict[str, Any]:
        data = event.data
        return {
            "Status": data.status,
            "Items": _line_items(data.lines),
            "ItemNames": [line.name for line in data.lines if line.name],
            "SKUs": [line.sku for line in data.lines],
            "ShipMethod": canonical_ship_method(data.ship_method, self.config, "/data/ship_method"),
            "Channel": event.order_ref.channel if event.order_ref else None,
        }

    def _order_placed(self, event: OrderPlaced) -> Mapped:
        if not self._source_settings(event).send_order_placed:
            return Mapped(skipped=f"{event.source.system} does not send placed orders (send_order_placed = false)")
        total = event.data.totals.total if event.data.totals else None
        return Mapped(
            [
                self._event_op(
                    event,
                    self.metrics.order_placed,
                    self._order_properties(event),
                    value=_amount(total),
                    currency=_currency(total) or event.data.currency,
                    unique_id=placed_order_unique_id(event, self.config),
                )
            ]
        )

    def _order_edited(self, event: OrderEdited) -> Mapped:
        if not self._source_settings(event).send_order_edited:
            return Mapped(skipped=f"{event.source.system} does not send order edits (send_order_edited = false)")
        changes = event.data.changes or []
        touched = {str(v) for c in changes for v in (c.path, c.old, c.new) if v is not None}
        changed_lines = [
            line
            for line in event.data.lines
            if any(line.sku in t or (line.line_id and line.line_id in t) for t in touched)
        ]
        properties = {
            **self._order_properties(event),
            "Changes": [{"Path": c.path, "Old": c.old, "New": c.new} for c in changes],
            "ChangedItems": _line_items(changed_lines),
        }
        total = event.data.totals.total if event.data.totals else None
        return Mapped(
            [
                self._event_op(
                    event, self.metrics.order_edited, properties, value=_amount(total), currency=_currency(total)
                )
            ]
        )

    def _order_cancelled(self, event: OrderCancelled) -> Mapped:
        data = event.data
        lines = data.cancelled_lines or []
        value = data.value
        if value is None and lines and all(line.line_total for line in lines):
            value = Money(
                amount=sum((line.line_total.amount for line in lines), Decimal(0)),
                currency=lines[0].line_total.currency,
            )  # type: ignore[union-attr]
        properties = {
            "Reason": data.reason,
            "Scope": data.scope,
            "Items": _line_items(lines),
            "SKUs": [line.sku for line in lines],
            "RefundExpected": data.refund_expected,
        }
        return Mapped(
            [
                self._event_op(
                    event,
                    self.metrics.order_cancelled,
                    properties,
                    value=_amount(value),
                    currency=_currency(value),
                    clv_unique_id=placed_order_unique_id(event, self.config),
                )
            ]
        )

    # -- shipments ---------------------------------------------------------------------------------

    def _shipment_despatched(self, event: ShipmentDespatched) -> Mapped:
        data = event.data
        parcels = []
        for index, parcel in enumerate(data.parcels):
            method = parcel.ship_method
            parcels.append(
                _clean(
                    {
                        "ParcelId": parcel.parcel_id,
                        "TrackingNumber": parcel.tracking_number,
                        "TrackingUrl": parcel.tracking_url,
                        "Carrier": (method.carrier_name or method.carrier_code) if method else None,
                        "ShipMethod": canonical_ship_method(method, self.config, f"/data/parcels/{index}/ship_method"),
                        "Items": [{"SKU": i.sku, "Quantity": i.quantity} for i in parcel.items],
                    }
                )
            )
        pending = [{"SKU": i.sku, "Quantity": i.quantity} for i in data.pending_items or [] if i.quantity]
        common = {
            "ShipmentId": data.shipment_id,
            "IsPartial": data.is_partial,
            "IsFinal": data.is_final,
            "Site": data.site,
            "TrackingGranularity": data.tracking_granularity,
            "PendingItems": pending,
            "PendingSKUs": [p["SKU"] for p in pending],
        }

        def summary(chosen: list[dict[str, Any]]) -> dict[str, Any]:
            items: dict[str, int] = {}
            for parcel in chosen:
                for item in parcel.get("Items", []):
                    items[item["SKU"]] = items.get(item["SKU"], 0) + item["Quantity"]
            return {
                **common,
                "Parcels": chosen,
                "ParcelCount": len(chosen),
                "TrackingNumbers": [p["TrackingNumber"] for p in chosen if "TrackingNumber" in p],
                "TrackingUrls": [p["TrackingUrl"] for p in chosen if "TrackingUrl" in p],
                "Carrier": next((p["Carrier"] for p in chosen if "Carrier" in p), None),
                "ShipMethod": next((p["ShipMethod"] for p in chosen if "ShipMethod" in p), None),
                "Items": [{"SKU": sku, "Quantity": qty} for sku, qty in items.items()],
                "SKUs": list(items),
            }

        metric = self.metrics.shipment
        if self.config.sync.shipment_events == "parcel":
            ops = [
                self._event_op(
                    event,
                    metric,
                    {**summary([parcel]), "ParcelIndex": index + 1},
                    suffix=f"parcel:{index}",
                    unique_id=f"{event.event_id}:{parcel.get('ParcelId') or index + 1}",
                )
                for index, parcel in enumerate(parcels)
            ]
        else:
            ops = [self._event_op(event, metric, summary(parcels))]
        if self.metrics.emit_fulfilled_order and data.is_final:
            ops.append(
                self._event_op(
                    event,
                    self.metrics.order_fulfilled,
                    summary(parcels),
                    suffix="fulfilled",
                    unique_id=placed_order_unique_id(event, self.config) or f"{event.event_id}:fulfilled",
                )
            )
        return Mapped(ops)

    # -- returns and refunds -----------------------------------------------------------------------

    def _return(self, event: NormalisedEvent, data: ReturnData, metric: str) -> Mapped:
        lines = data.lines
        reasons = [line.reason_text or line.reason_code for line in lines if line.reason_text or line.reason_code]
        properties = {
            "ReturnId": data.return_id,
            "RmaNumber": data.rma_number,
            "Status": data.status,
            "ReturnTypes": data.return_types,
            "ReturnCarrier": data.return_shipment.carrier if data.return_shipment else None,
            "ReturnTrackingNumber": data.return_shipment.tracking_number if data.return_shipment else None,
            "Items": [
                _clean(
                    {
                        "SKU": line.sku,
                        "Quantity": line.quantity,
                        "QuantityReceived": line.quantity_received,
                        "QuantityRestocked": line.quantity_restocked,
                        "Reason": line.reason_text or line.reason_code,
                        "SubReason": line.sub_reason_text,
                        "Comment": line.customer_comment,
                        "Condition": line.condition,
                        "Disposition": line.disposition,
                        "Resolution": line.resolution,
                    }
                )
                for line in lines
            ],
            "SKUs": [line.sku for line in lines],
            "Reasons": reasons,
            "Conditions": sorted({line.condition for line in lines if line.condition}),
            "Dispositions": sorted({line.disposition for line in lines if line.disposition}),
        }
        ops = [
            self._event_op(
                event, metric, properties, value=_amount(data.expected_refund), currency=_currency(data.expected_refund)
            )
        ]
        closes = event.event_type == "return.restocked" or data.status.lower() in CLOSED_RETURN_STATUSES
        if closes:
            ops.append(self._profile_op(event, unset=list(RETURN_PROFILE_PROPERTIES), label="return closed"))
        else:
            ops.append(
                self._profile_op(
                    event,
                    properties=_clean(
                        {
                            "open_return": True,
                            "last_return_reason": reasons[0] if reasons else None,
                            "returned_skus": [line.sku for line in lines],
                        }
                    ),
                    label="return open",
                )
            )
        return Mapped(ops)

    def _return_lodged(self, event: NormalisedEvent) -> Mapped:
        return self._return(event, event.data, self.metrics.return_lodged)  # type: ignore[arg-type]

    def _return_approved(self, event: NormalisedEvent) -> Mapped:
        return self._return(event, event.data, self.metrics.return_approved)  # type: ignore[arg-type]

    def _return_received(self, event: NormalisedEvent) -> Mapped:
        return self._return(event, event.data, self.metrics.return_received)  # type: ignore[arg-type]

    def _return_restocked(self, event: NormalisedEvent) -> Mapped:
        return self._return(event, event.data, self.metrics.return_restocked)  # type: ignore[arg-type]

    def _refund_processed(self, event: RefundProcessed) -> Mapped:
        data = event.data
        properties = {
            "RefundId": data.refund_id,
            "ReturnId": data.return_id,
            "Method": data.method,
            "RefundedValue": _amount(data.total),
            "ShippingRefund": _amount(data.shipping_refund),
            "Items": [
                _clean(
                    {
                        "SKU": line.sku,
                        "Quantity": line.quantity,
                        "Amount": _amount(line.amount),
                        "Tax": _amount(line.tax),
                    }
                )
                for line in data.lines
            ],
            "SKUs": [line.sku for line in data.lines],
            "LineAmountsBasis": data.line_amounts_basis,
        }
        ops = [
            self._event_op(
                event,
                self.metrics.refund,
                properties,
                value=_amount(data.total),
                currency=data.total.currency,
                clv_unique_id=placed_order_unique_id(event, self.config),
            )
        ]
        if data.return_id:
            ops.append(self._profile_op(event, unset=list(RETURN_PROFILE_PROPERTIES), label="return closed"))
        return Mapped(ops)

    # -- profiles, consent, stock ------------------------------------------------------------------

    def _profile_op(
        self,
        event: NormalisedEvent,
        *,
        properties: dict[str, Any] | None = None,
        unset: list[str] | None = None,
        attributes: dict[str, Any] | None = None,
        label: str,
    ) -> Op:
        identity = self._identity(event)
        payload = {
            "profile": identity.to_json(),
            "attributes": attributes or {},
            "properties": properties or {},
            "unset": unset or [],
        }
        return Op("profile", f"profile:{label}", PROFILE, f"profile: {label}", payload)

    def _customer_upserted(self, event: CustomerUpserted) -> Mapped:
        if not self._identity(event):
            raise MappingError(
                "source_payload_invalid", "customer.upserted without any identifier", pointer="/customer"
            )
        customer = event.customer
        address = (event.data.addresses or [None])[0]
        attributes = _clean(
            {
                "first_name": customer.first_name if customer else None,
                "last_name": customer.last_name if customer else None,
                "locale": event.data.locale,
                "location": _clean(
                    {
                        "address1": address.line1,
                        "address2": address.line2,
                        "city": address.city,
                        "region": address.region,
                        "zip": address.postcode,
                        "country": address.country_code,
                    }
                )
                if address
                else None,
            }
        )
        return Mapped(
            [self._profile_op(event, attributes=attributes, properties=event.data.properties or {}, label="customer")]
        )

    def _consent_changed(self, event: ConsentChanged) -> Mapped:
        data = event.data
        if data.status == "never_subscribed":
            return Mapped(skipped="never_subscribed changes no consent in Klaviyo")
        identity = self._identity(event)
        address = identity.email if data.channel == "email" else identity.phone_number
        if not address:
            field_name = "email" if data.channel == "email" else "phone"
            raise MappingError(
                "source_payload_invalid",
                f"{data.channel} consent change for event {event.event_id} has no usable {field_name}",
                pointer=f"/customer/{field_name}",
            )
        profile = {"email": identity.email} if data.channel == "email" else {"phone_number": identity.phone_number}
        if data.status == "subscribed":
            # Consent captured earlier is imported as history (with its time), so no double opt-in
            # is sent for consent the customer already gave; without a time it is a live opt-in.
            captured = data.captured_at.isoformat() if data.captured_at else None
            payload = {
                "profile": profile,
                "channel": data.channel,
                "consented_at": captured,
                "historical_import": bool(captured),
            }
            return Mapped([Op("subscribe", "subscribe", PROFILE, f"subscribe {data.channel}", payload)])
        payload = {"profile": profile, "channel": data.channel}
        return Mapped([Op("unsubscribe", "unsubscribe", PROFILE, f"unsubscribe {data.channel}", payload)])

    def _stock_level_changed(self, event: StockLevelChanged) -> Mapped:
        data = event.data
        stock = self.config.stock
        site = data.location.site
        if stock.sellable_sites and site not in stock.sellable_sites:
            return Mapped(skipped=f"site {site} is not in stock.sellable_sites")
        blocked = {name.lower() for name in stock.non_sellable_locations}
        for where in (data.location.bin, data.location.stock_owner):
            if where and where.lower() in blocked:
                return Mapped(skipped=f"location {where} is not sellable")
        if data.infinite:
            return Mapped(skipped="infinite stock is not tracked in the catalog")
        if data.mode == "snapshot":
            sellable = data.sellable
            available = None
            if sellable is not None:
                available = sellable.available
                if available is None and sellable.on_hand is not None:
                    available = sellable.on_hand - (sellable.allocated or 0)
            if available is None:
                raise MappingError(
                    "source_payload_invalid",
                    f"stock snapshot for {data.sku} has no sellable quantity",
                    pointer="/data/sellable/available",
                )
            change = StockChange(data.sku, site, data.as_of.isoformat(), available=available)
        else:
            delta = data.delta
            if delta is None:
                raise MappingError(
                    "source_payload_invalid", f"stock delta for {data.sku} has no delta", pointer="/data/delta"
                )
            if delta.bucket is not None and delta.bucket.lower() not in SELLABLE_BUCKETS:
                return Mapped(skipped=f"stock bucket {delta.bucket} is not sellable")
            change = StockChange(data.sku, site, data.as_of.isoformat(), delta=delta.quantity)
        variant_id = self.config.sync.catalog_variant_id.format(sku=data.sku)
        payload = {"variant_id": variant_id, "sku": data.sku}
        return Mapped([Op("catalog", "catalog", CATALOG, "catalog inventory", payload, stock=change)])
