"""The per-order ledger (ordered vs despatched quantities) and the shipments seen so far.

`is_partial` and `is_final` come from the ledger: the ordered quantities of an order (recorded by any
system that knows them, keyed by the storefront order number) against the quantities of every shipment
despatched up to and including this one (by despatch time, so late-arriving shipments do not change
history). A shipment seen before is never announced twice: the same picture yields no event, a richer
one (package-level tracking, more items, changed tracking) yields a new event with the same
`shipment_id` and `supersedes` naming the event it upgrades.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

from pydantic import TypeAdapter, ValidationError

from cogent_cli.events import CustomerRef, NormalisedEvent, OrderRef, Parcel, ParcelItem, ShipMethod
from cogent_cli.normalise import json_text

if TYPE_CHECKING:
    from sqlite3 import Connection

    from cogent_cli.normalise.base import NormaliseContext

Granularity = Literal["parcel", "shipment"]
# A shipment's parcels as `shipments.body` keeps them, encoded and decoded in one call each.
_PARCELS: TypeAdapter[list[Parcel]] = TypeAdapter(list[Parcel])


@dataclass(frozen=True)
class LedgerPosition:
    """Where an order stands after a shipment: what was ordered, what has gone, what remains."""

    ordered: dict[str, int]
    despatched: dict[str, int]

    @property
    def known(self) -> bool:
        return bool(self.ordered)

    @property
    def remaining(self) -> dict[str, int]:
        return {
            sku: qty - self.despatched.get(sku, 0)
            for sku, qty in sorted(self.ordered.items())
            if qty > self.despatched.get(sku, 0)
        }


class OrderLedger:
    def __init__(self, conn: Connection, staged: ShipmentWrites | None = None) -> None:
        self.conn = conn
        # Shipments of the current run not written yet, counted as if they were.
        self.staged = staged or ShipmentWrites()

    def record_order(
        self, order_number: str, lines: Mapping[str, int], *, system: str, at: datetime, replace: bool = True
    ) -> None:
        """Store ordered quantities per SKU; `replace` drops SKUs no longer on the order (an edit)."""
        if replace:
            self.conn.execute("DELETE FROM order_lines WHERE order_number = ?", (order_number,))
        self.conn.executemany(
            "INSERT INTO order_lines (order_number, sku, ordered, system, updated_at) VALUES (?, ?, ?, ?, ?)"
            " ON CONFLICT (order_number, sku) DO UPDATE SET ordered = excluded.ordered, system = excluded.system,"
            " updated_at = excluded.updated_at",
            [(order_number, sku, qty, system, at.isoformat()) for sku, qty in lines.items()],
        )

    def ordered(self, order_number: str) -> dict[str, int]:
        rows = self.conn.execute("SELECT sku, ordered FROM order_lines WHERE order_number = ?", (order_number,))
        return dict(rows.fetchall())

    def despatched(self, order_number: str, until: str | None = None) -> dict[str, int]:
        sql = "SELECT system, shipment_id, sku, quantity FROM shipment_items WHERE order_number = ?"
        params: list[Any] = [order_number]
        if until is not None:
            sql += " AND despatched_at <= ?"
            params.append(until)
        totals: dict[str, int] = {}
        for system, shipment_id, sku, quantity in self.conn.execute(sql, params):
            if self.staged.get((system, shipment_id)) is None:  # else restaged: counted below
                totals[sku] = totals.get(sku, 0) + quantity
        for shipment in self.staged.of_order(order_number):
            if until is None or shipment.despatched_at <= until:
                for sku, quantity in shipment.items.items():
                    totals[sku] = totals.get(sku, 0) + quantity
        return totals

    def position(self, order_number: str, until: str | None = None) -> LedgerPosition:
        ordered = self.ordered(order_number)
        return LedgerPosition(ordered, self.despatched(order_number, until) if ordered else {})


def _parcels(parcels: Iterable[Parcel | Mapping[str, Any]]) -> list[Parcel]:
    result = []
    for index, parcel in enumerate(parcels):
        try:
            result.append(parcel if isinstance(parcel, Parcel) else Parcel.model_validate(parcel))
        except ValidationError as exc:
            # Imported here, on the failure path only: base imports this module.
            from cogent_cli.normalise.base import NormaliseError

            raise NormaliseError.from_validation(exc, prefix=f"parcels.{index}.") from None
    return result


def total_items(parcels: Sequence[Parcel]) -> dict[str, int]:
    totals: dict[str, int] = {}
    for parcel in parcels:
        for item in parcel.items:
            totals[item.sku] = totals.get(item.sku, 0) + item.quantity
    return totals


def _method_values(method: ShipMethod) -> tuple[str | None, ...]:
    # The field values in declaration order, as model_dump().values() gives them, without building a dict.
    return (method.carrier_code, method.carrier_name, method.service_code, method.service_name)


def _fingerprint(granularity: str, parcels: Sequence[Parcel], items: Mapping[str, int]) -> str:
    """A digest of what is known about a shipment (parcels in any order), to tell news from repeats."""
    described = sorted(
        [
            repr(
                (
                    p.parcel_id,
                    p.tracking_number,
                    p.tracking_url,
                    _method_values(p.ship_method) if p.ship_method else None,
                    sorted([(i.sku, i.line_id or "", i.quantity) for i in p.items]),
                )
            )
            for p in parcels
        ]
    )
    picture = repr((granularity, described, sorted(items.items())))
    return hashlib.sha256(picture.encode()).hexdigest()


class KnownShipment(NamedTuple):
    # A named tuple rather than a frozen dataclass: one is built per shipment announced.
    order_number: str | None
    granularity: str
    fingerprint: str
    event_id: str
    parcels: list[Parcel]
    items: dict[str, int]


@dataclass
class StagedShipment:
    """A shipment announced in this run, written when the run's batch commits."""

    order_number: str | None
    despatched_at: str
    items: dict[str, int]
    # Whether `shipment_items` holds an earlier version, to be deleted first.
    replaces_stored: bool
    known: KnownShipment | None = None  # set once its event is built


ShipmentKey = tuple[str, str]  # (system, shipment_id)


class ShipmentWrites:
    """Shipments announced during a normalisation run, written to `shipments` and `shipment_items` with
    a few statements per batch instead of several per shipment; lookups see them before they are written.

    The shipments of the unit being normalised (a record or a group) are staged apart: `keep_unit` adds
    them to the batch once the unit's events are written, `drop_unit` forgets them when it is quarantined
    (its savepoint rolls back what it wrote directly)."""

    def __init__(self) -> None:
        self.batch: dict[ShipmentKey, StagedShipment] = {}
        self.unit: dict[ShipmentKey, StagedShipment] = {}
        self.by_order: dict[str, set[ShipmentKey]] = {}

    def get(self, key: ShipmentKey) -> StagedShipment | None:
        return self.unit.get(key) or self.batch.get(key)

    def stage(self, key: ShipmentKey, shipment: StagedShipment) -> StagedShipment:
        self.unit[key] = shipment
        if shipment.order_number:
            self.by_order.setdefault(shipment.order_number, set()).add(key)
        return shipment

    def of_order(self, order_number: str) -> Iterator[StagedShipment]:
        for key in self.by_order.get(order_number, ()):
            shipment = self.get(key)
            if shipment is not None and shipment.order_number == order_number:
                yield shipment

    def keep_unit(self) -> None:
        self.batch.update(self.unit)
        self.unit.clear()

    def drop_unit(self) -> None:
        self.unit.clear()

    def flush(self, conn: Connection) -> None:
        self.keep_unit()
        conn.executemany(
            "DELETE FROM shipment_items WHERE system = ? AND shipment_id = ?",
            [key for key, shipment in self.batch.items() if shipment.replaces_stored],
        )
        conn.executemany(
            "INSERT INTO shipment_items (system, shipment_id, order_number, sku, quantity, despatched_at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            [
                (*key, shipment.order_number, sku, quantity, shipment.despatched_at)
                for key, shipment in self.batch.items()
                for sku, quantity in shipment.items.items()
            ],
        )
        conn.executemany(
            "INSERT INTO shipments (system, shipment_id, order_number, despatched_at, granularity, fingerprint,"
            " event_id, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (system, shipment_id) DO UPDATE SET"
            " order_number = excluded.order_number, despatched_at = excluded.despatched_at,"
            " granularity = excluded.granularity, fingerprint = excluded.fingerprint,"
            " event_id = excluded.event_id, body = excluded.body",
            [_shipment_row(key, shipment) for key, shipment in self.batch.items()],
        )
        self.batch.clear()
        self.by_order.clear()


def _shipment_row(key: ShipmentKey, shipment: StagedShipment) -> tuple[Any, ...]:
    known = shipment.known
    assert known is not None, "a kept shipment has its event"
    parcels = _PARCELS.dump_json(known.parcels, exclude_none=True).decode()
    body = f'{{"parcels":{parcels},"items":{json_text.dumps(known.items)}}}'
    return (
        *key,
        known.order_number,
        shipment.despatched_at,
        known.granularity,
        known.fingerprint,
        known.event_id,
        body,
    )


class Shipments:
    """Turns shipments into `shipment.despatched` events, once per distinct picture of each shipment."""

    def __init__(self, ctx: NormaliseContext) -> None:
        self.ctx = ctx

    def known(self, shipment_id: str) -> KnownShipment | None:
        staged = self.ctx.shipment_writes.get((self.ctx.system, shipment_id))
        if staged is not None:
            return staged.known
        row = self.ctx.conn.execute(
            "SELECT order_number, granularity, fingerprint, event_id, body FROM shipments"
            " WHERE system = ? AND shipment_id = ?",
            (self.ctx.system, shipment_id),
        ).fetchone()
        if row is None:
            return None
        body = json_text.loads(row[4])
        return KnownShipment(
            order_number=row[0],
            granularity=row[1],
            fingerprint=row[2],
            event_id=row[3],
            parcels=_PARCELS.validate_python(body["parcels"]),
            items={sku: int(qty) for sku, qty in body["items"].items()},
        )

    def despatch(
        self,
        *,
        shipment_id: str,
        despatched_at: datetime,
        parcels: Iterable[Parcel | Mapping[str, Any]],
        granularity: Granularity,
        dedupe_key: str,
        order_number: str | None = None,
        items: Mapping[str, int] | None = None,
        site: str | None = None,
        final: bool | None = None,
        native_event: str | None = None,
        native_ids: Mapping[str, Any] | None = None,
        customer: CustomerRef | Mapping[str, Any] | None = None,
        order_ref: OrderRef | Mapping[str, Any] | None = None,
        confidence: Literal["documented", "inferred", "assumed"] | None = None,
        sequence: int | None = None,
    ) -> NormalisedEvent | None:
        """The event announcing this shipment, or None when this picture of it was announced already.

        `items` gives the shipment's contents when the parcels cannot (package-level tracking without
        per-package contents); otherwise they are summed from the parcels. `final` is the source's own
        say (e.g. Scend's is_final_despatch) and wins over the ledger.
        """
        ctx = self.ctx
        parcel_list = _parcels(parcels)
        contents = dict(items) if items is not None else total_items(parcel_list)
        previous = self.known(shipment_id)
        supersedes = None
        if previous is not None and _fingerprint(granularity, parcel_list, contents) == previous.fingerprint:
            # Exactly the picture already announced (e.g. every invoice update repeats its shipments).
            return None
        if previous is not None:
            if previous.granularity == "parcel" and granularity == "shipment":
                # Despatch-level data never replaces package-level data; it may only add contents.
                if not (set(contents) - set(previous.items)):
                    return None
                granularity, parcel_list = "parcel", previous.parcels
                contents = {**contents, **previous.items}
            elif granularity == "shipment" and previous.granularity == "shipment":
                contents = {**previous.items, **contents}
                parcel_list = [_merge_despatch_parcel(previous.parcels, parcel_list, contents)]
            elif granularity == "parcel" and previous.granularity == "parcel":
                # Packages may arrive one at a time: keep the ones this payload does not mention.
                mentioned = {p.parcel_id for p in parcel_list}
                kept = [p for p in previous.parcels if p.parcel_id is not None and p.parcel_id not in mentioned]
                parcel_list = kept + parcel_list
                if items is None:
                    contents = total_items(parcel_list)
            if not contents:
                contents = previous.items
            supersedes = previous.event_id
            order_number = order_number or previous.order_number
        fingerprint = _fingerprint(granularity, parcel_list, contents)
        if previous is not None:
            if previous.fingerprint == fingerprint:
                return None
            dedupe_key = f"{dedupe_key}|v:{fingerprint[:16]}"
        despatched = despatched_at.isoformat()
        key = (ctx.system, shipment_id)
        restaged = ctx.shipment_writes.get(key)
        staged = ctx.shipment_writes.stage(
            key,
            StagedShipment(
                order_number,
                despatched,
                contents,
                replaces_stored=restaged.replaces_stored if restaged else previous is not None,
            ),
        )
        position = ctx.ledger.position(order_number, despatched) if order_number else None
        is_final: bool | None = final
        if is_final is None and position is not None and position.known:
            is_final = not position.remaining
        data: dict[str, Any] = {
            "shipment_id": shipment_id,
            "despatched_at": despatched_at,
            "is_partial": (not is_final) if is_final is not None else None,
            "is_final": is_final,
            "site": site,
            "parcels": parcel_list,
            "tracking_granularity": granularity,
            "items": _item_list(sorted(contents.items())),
        }
        if position is not None and position.known:
            data["pending_items"] = _item_list(position.remaining.items())
        if supersedes:
            data["supersedes"] = supersedes
        event = ctx.event(
            "shipment.despatched",
            dedupe_key=dedupe_key,
            occurred_at=despatched_at,
            data={key: value for key, value in data.items() if value is not None},
            native_event=native_event,
            native_ids={"shipment_id": shipment_id, **(native_ids or {})},
            customer=customer,
            order_ref=order_ref,
            confidence=confidence,
            sequence=sequence,
        )
        staged.known = KnownShipment(order_number, granularity, fingerprint, event.event_id, parcel_list, contents)
        for parcel in parcel_list:
            if parcel.ship_method is not None:
                ctx.ship_method(parcel.ship_method, event.event_id)
        return event


def _item_list(quantities: Iterable[tuple[str, int]]) -> list[dict[str, Any]]:
    # Plain dicts: the event model validates them in one pass, much faster than a ParcelItem each.
    return [{"sku": sku, "quantity": qty} for sku, qty in quantities]


def _merge_despatch_parcel(previous: Sequence[Parcel], new: Sequence[Parcel], items: Mapping[str, int]) -> Parcel:
    """One despatch-level parcel holding everything. A newer tracking number wins; otherwise what is
    known stays and the newer data only fills gaps, so a thin callback repeating a despatch changes nothing."""
    old = previous[0] if previous else Parcel(items=[])
    latest = new[0] if new else old
    return Parcel(
        parcel_id=old.parcel_id or latest.parcel_id,
        tracking_number=latest.tracking_number or old.tracking_number,
        tracking_url=(latest.tracking_url or old.tracking_url)
        if latest.tracking_number in (None, old.tracking_number)
        else latest.tracking_url,
        ship_method=old.ship_method or latest.ship_method,
        items=[ParcelItem(sku=sku, quantity=qty) for sku, qty in sorted(items.items())],
    )
