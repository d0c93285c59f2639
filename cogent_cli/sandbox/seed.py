"""`cogent sandbox seed`: one coherent synthetic retailer across the five source systems.

Orders are placed on Marketplacer (one invoice per order, with shipments mirrored from the warehouse),
fulfilled by Peoplevox, Clarus WMS or Scend (some in two shipments, some still part-despatched),
returned through Swap (and received back at the warehouse), with stock per site including
quarantine, damaged and goods-in. Realistic messiness is planted on purpose and every plant is
listed in `manifest.json`, so demos and audits can show what they should find:

* `duplicate_customer`: one person behind email variants (case, whitespace, plus address) and
  differently formatted phone numbers across orders and systems;
* `unmapped_ship_method`: carrier services that the suggested `[mapping.ship_methods]` lacks;
* `non_sellable_stock`: quarantine, damaged, on-hold and goods-in stock per source;
* `malformed_row`: rows every normaliser should quarantine (bad quantity, missing date, short CSV row...);
* `not_despatched`: warehouse records at a status before despatch (packed), which must not send a shipment.

The same `--seed` always writes the same data set.
"""

from __future__ import annotations

import base64
import csv
import json
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from cogent_cli.sandbox.sources import PVX_DATE, SANDBOX_CREDENTIALS, sources_config

DEFAULT_START = datetime(2026, 10, 1, 8, 0, tzinfo=UTC)
PEOPLEVOX_ZONE = ZoneInfo("Europe/London")
MANIFEST = "manifest.json"
DESPATCH_COLUMNS = [
    "Salesorder number",
    "Requested delivery date",
    "Despatch number",
    "Carrier",
    "Service",
    "Despatch date",
    "Tracking number",
    "Item name",
    "No of items",
    "Destination country",
    "Site reference",
    "Item code",
    "Carrier reference",
    "Service type code",
    "Customer order reference",
    "Shipping cost",
    "Email",
    "Contact name",
    "Total sale",
    "Tax paid",
    "Channel name",
    "Item barcode",
]
RETURN_COLUMNS = [
    "Return code",
    "Return date",
    "Quantity",
    "Item name",
    "Sales order number",
    "Despatch date",
    "Return reason",
    "Return condition",
    "Return comments",
    "Days since despatch",
    "Item barcode",
    "Sales order contact name",
    "Customer phone number",
    "Item sale price",
    "Sales order email",
    "Channel name",
    "Site reference",
    "Is Reusable",
    "Item code",
]
INVENTORY_COLUMNS = ["Item code", "Item name", "Item barcode", "Site reference", "On hand", "Allocated", "Available"]
SCEND_DESPATCH_COLUMNS = [
    "client_code",
    "order_number",
    "channel_order_ref",
    "despatch_id",
    "parcel_id",
    "despatched_at",
    "carrier_code",
    "carrier_name",
    "service_code",
    "service_name",
    "tracking_number",
    "tracking_url",
    "sku",
    "barcode",
    "qty_despatched",
    "qty_ordered",
    "is_final_despatch",
    "site_code",
    "customer_email",
]
SCEND_RETURN_COLUMNS = [
    "client_code",
    "return_id",
    "rma_number",
    "order_number",
    "received_at",
    "sku",
    "barcode",
    "qty_received",
    "return_reason_code",
    "return_reason_text",
    "condition",
    "disposition",
    "qty_restocked",
    "qty_quarantined",
    "notes",
    "site_code",
]
SCEND_STOCK_COLUMNS = [
    "client_code",
    "snapshot_at",
    "site_code",
    "sku",
    "barcode",
    "on_hand",
    "allocated",
    "available",
    "quarantine",
    "damaged",
    "on_hold",
    "inbound_expected",
    "inbound_received_not_putaway",
]
SCEND_STATUS_COLUMNS = ["client_code", "order_number", "status", "status_at", "reason"]

FIRST_NAMES = [
    "Jane",
    "Tom",
    "Aisha",
    "Liam",
    "Priya",
    "Noah",
    "Chloe",
    "Omar",
    "Grace",
    "Ethan",
    "Mia",
    "Ravi",
    "Sophie",
    "Jack",
    "Zara",
    "Leo",
    "Ella",
    "Kwame",
    "Isla",
    "Hugo",
]
LAST_NAMES = [
    "Doe",
    "Smith",
    "Khan",
    "Patel",
    "Jones",
    "Brown",
    "Wilson",
    "Taylor",
    "Evans",
    "Okafor",
    "Walsh",
    "Murphy",
    "Hughes",
    "Clarke",
    "Nowak",
    "Silva",
    "Chen",
    "Lewis",
]
DOMAINS = ["example.com", "example.co.uk", "gmail.com", "outlook.com", "yahoo.co.uk"]
PRODUCTS = [
    ("TEE-CREW", "Crew Tee", "24.00"),
    ("TEE-VNECK", "V-Neck Tee", "26.00"),
    ("HOOD-ZIP", "Zip Hoodie", "65.00"),
    ("JOG-SLIM", "Slim Joggers", "48.00"),
    ("CAP-BASE", "Baseball Cap", "18.00"),
    ("SOCK-3PK", "Socks 3-pack", "12.00"),
    ("JKT-RAIN", "Rain Jacket", "95.00"),
    ("SHORT-RUN", "Running Shorts", "30.00"),
]
COLOURS = ["BLK", "NVY", "GRY"]
SIZES = ["S", "M", "L"]
# (carrier code, carrier name, service code, service name, tracking prefix, canonical method or None if unmapped)
SHIP_METHODS = [
    ("RM", "Royal Mail", "TPN24", "Tracked 24", "TT", "standard"),
    ("RM", "Royal Mail", "TPS48", "Tracked 48", "TT", "economy"),
    ("DPD", "DPD", "NEXT", "Next Day", "15", "next_day"),
    ("EVRI", "Evri", "STD", "Standard 2-3 Days", "H0", "economy"),
]
UNMAPPED_METHODS = [
    ("DPD", "DPD", "SATX", "Saturday Express", "15", None),
    ("EVRI", "Evri", "COURIER-COLLECT", "Courier Collect", "H0", None),
]
RETURN_REASONS = [
    ("TOO_SMALL", "Too small"),
    ("TOO_BIG", "Too big"),
    ("FAULTY", "Faulty"),
    ("NOT_AS_DESCRIBED", "Not as described"),
    ("CHANGED_MIND", "Changed my mind"),
]
SELLERS = [("U2VsbGVyLTE=", "Acme Outdoor Direct"), ("U2VsbGVyLTI=", "Trailhead Partners")]
WAREHOUSES = {"peoplevox": 0.5, "clarus": 0.3, "scend": 0.2}
PVX_SITES = ("PrimarySite", "Quarantine", "GoodsIn")
CLARUS_WAREHOUSE = {"id": "1", "code": "WH1", "name": "Main Warehouse"}


def gid(kind: str, number: int) -> str:
    """A Marketplacer-style global id: base64 of `Kind-number`."""
    return base64.b64encode(f"{kind}-{number}".encode()).decode()


def ean13(rng: random.Random) -> str:
    digits = [5, 0, 1, *(rng.randrange(10) for _ in range(9))]
    check = (10 - sum(d * (3 if i % 2 else 1) for i, d in enumerate(digits)) % 10) % 10
    return "".join(map(str, [*digits, check]))


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def pvx_date(moment: datetime) -> str:
    """Peoplevox report times: the warehouse's local time, without a zone."""
    return moment.astimezone(PEOPLEVOX_ZONE).strftime(PVX_DATE)


@dataclass
class Customer:
    first: str
    last: str
    email: str
    phone: str
    # Variants of email/phone this person uses on some orders (planted duplicates).
    email_variants: list[str] = field(default_factory=list)
    phone_variants: list[str] = field(default_factory=list)

    def identity(self, rng: random.Random) -> tuple[str, str]:
        if self.email_variants and rng.random() < 0.6:
            return rng.choice(self.email_variants), rng.choice(self.phone_variants or [self.phone])
        return self.email, self.phone


@dataclass
class Line:
    line_id: str
    sku: str
    name: str
    barcode: str
    quantity: int
    price: Decimal


@dataclass
class Shipment:
    number: str
    at: datetime
    method: tuple[str, str, str, str, str, str | None]
    items: dict[str, int]
    parcels: list[tuple[str, dict[str, int]]]
    final: bool


@dataclass
class Order:
    number: str
    invoice: int
    placed_at: datetime
    customer: Customer
    email: str
    phone: str
    seller: tuple[str, str]
    warehouse: str
    lines: list[Line]
    shipments: list[Shipment] = field(default_factory=list)
    cancelled: bool = False

    @property
    def total(self) -> Decimal:
        return sum((line.price * line.quantity for line in self.lines), Decimal("0"))


@dataclass
class SeedResult:
    data_dir: Path
    manifest: dict[str, Any]

    @property
    def drop_dir(self) -> Path:
        return Path(self.manifest["scend_drop_dir"])

    @property
    def manifest_path(self) -> Path:
        return self.data_dir / "sources" / MANIFEST


class Retailer:
    """Builds the data set; each `_build_*` appends to the per-system collections and the manifest."""

    def __init__(self, orders: int, seed: int, start: datetime) -> None:
        self.rng = random.Random(seed)
        self.count = orders
        self.seed = seed
        self.start = start
        self.planted: list[dict[str, Any]] = []
        self.skus = self._catalogue()
        self.sku_index = {sku: index for index, (sku, *_) in enumerate(self.skus)}
        self.customers = self._customers(max(4, orders // 2))
        self.orders: list[Order] = []
        self.peoplevox: dict[str, Any] = {
            "reports": {
                "Despatch summary": {"columns": DESPATCH_COLUMNS, "rows": []},
                "Return summary": {"columns": RETURN_COLUMNS, "rows": []},
                "Item inventory summary all sites": {"columns": INVENTORY_COLUMNS, "rows": []},
            }
        }
        self.clarus: dict[str, list[dict[str, Any]]] = {
            "shipments": [],
            "packages": [],
            "goods_out_lines": [],
            "stock_balances": [],
            "stocks": [],
        }
        self.swap: dict[str, list[dict[str, Any]]] = {"returns": []}
        self.marketplacer: dict[str, list[dict[str, Any]]] = {"invoices": [], "refund_requests": [], "variants": []}
        self.scend: dict[str, list[list[str]]] = {"despatches": [], "returns": [], "stock": [], "order_status": []}
        self._sequence = 0

    def plant(self, kind: str, system: str, detail: str, **refs: Any) -> None:
        self.planted.append({"type": kind, "system": system, "detail": detail, "refs": refs})

    def next_id(self) -> int:
        self._sequence += 1
        return self._sequence

    # ----- people and products

    def _catalogue(self) -> list[tuple[str, str, str, Decimal]]:
        skus = []
        for code, name, price in PRODUCTS:
            for colour in COLOURS:
                for size in SIZES:
                    skus.append((f"{code}-{colour}-{size}", f"{name} {colour} {size}", ean13(self.rng), Decimal(price)))
        return skus

    def _customers(self, count: int) -> list[Customer]:
        customers = []
        for number in range(count):
            first, last = self.rng.choice(FIRST_NAMES), self.rng.choice(LAST_NAMES)
            email = f"{first}.{last}{number}@{self.rng.choice(DOMAINS)}".lower()
            national = f"7700 9{self.rng.randrange(10**5):05d}"
            customers.append(Customer(first, last, email, f"+44{national.replace(' ', '')}"))
        for customer in self.rng.sample(customers, max(2, count // 12)):
            local, domain = customer.email.split("@")
            national = customer.phone.removeprefix("+44")
            customer.email_variants = [
                f"{local.title()}@{domain.upper()}",
                f"  {customer.email} ",
                f"{local}+shop@{domain}",
            ]
            customer.phone_variants = [
                f"+44 {national[:4]} {national[4:]}",
                f"0{national}",
                f"(0{national[:4]}) {national[4:7]} {national[7:]}",
                f"0044{national}",
            ]
            self.plant(
                "duplicate_customer",
                "all",
                "one person behind email variants (case, whitespace, plus address) and phone formats",
                email=customer.email,
                phone=customer.phone,
                email_variants=customer.email_variants,
                phone_variants=customer.phone_variants,
            )
        return customers

    # ----- orders and fulfilment

    def build(self) -> None:
        for number in range(1, self.count + 1):
            self.orders.append(self._order(number))
        for order in self.orders:
            self._fulfil(order)
        for order in self.orders:
            self._marketplacer_invoice(order)
            if order.warehouse == "peoplevox":
                self._peoplevox_despatches(order)
            elif order.warehouse == "clarus":
                self._clarus_order(order)
            else:
                self._scend_order(order)
        self._returns()
        self._stock()
        self._malformed()

    def _order(self, number: int) -> Order:
        customer = self.rng.choice(self.customers)
        email, phone = customer.identity(self.rng)
        placed = self.start + timedelta(minutes=number * 37 + self.rng.randrange(30))
        warehouse = self.rng.choices(list(WAREHOUSES), weights=list(WAREHOUSES.values()))[0]
        lines = []
        for index, (sku, name, barcode, price) in enumerate(self.rng.sample(self.skus, self.rng.randint(1, 3)), 1):
            line_id = gid("LineItem", number * 10 + index)
            lines.append(Line(line_id, sku, name, barcode, self.rng.choice((1, 1, 1, 2, 3)), price))
        return Order(
            number=f"SO-{100000 + number}",
            invoice=50000 + number,
            placed_at=placed,
            customer=customer,
            email=email,
            phone=phone,
            seller=self.rng.choice(SELLERS),
            warehouse=warehouse,
            lines=lines,
        )

    def _method(self) -> tuple[str, str, str, str, str, str | None]:
        if self.rng.random() < 0.08:
            return self.rng.choice(UNMAPPED_METHODS)
        return self.rng.choice(SHIP_METHODS)

    def _tracking(self, prefix: str) -> str:
        body = "".join(str(self.rng.randrange(10)) for _ in range(9 if prefix == "TT" else 12))
        return f"{prefix}{body}GB" if prefix == "TT" else f"{prefix}{body}"

    def _fulfil(self, order: Order) -> None:
        roll = self.rng.random()
        if roll < 0.06:
            order.cancelled = True
            return
        if roll < 0.14:
            return  # placed, not yet despatched
        items = {line.sku: line.quantity for line in order.lines}
        units = [sku for sku, qty in items.items() for _ in range(qty)]
        split = len(units) > 1 and self.rng.random() < 0.3
        batches = [units[: len(units) // 2], units[len(units) // 2 :]] if split else [units]
        # A few split orders have only their first shipment so far (partially despatched).
        if split and self.rng.random() < 0.25:
            batches = batches[:1]
        at = order.placed_at + timedelta(hours=self.rng.randint(4, 30))
        for index, batch in enumerate(batches, 1):
            shipped: dict[str, int] = {}
            for sku in batch:
                shipped[sku] = shipped.get(sku, 0) + 1
            method = self._method()
            parcels = [(self._tracking(method[4]), shipped)]
            if sum(shipped.values()) > 2 and self.rng.random() < 0.5:
                first_sku = next(iter(shipped))
                rest = {sku: qty for sku, qty in shipped.items() if sku != first_sku}
                parcels = [
                    (self._tracking(method[4]), {first_sku: shipped[first_sku]}),
                    (self._tracking(method[4]), rest),
                ]
            final = index == len(batches) and sum(len(b) for b in batches) == len(units)
            order.shipments.append(Shipment(f"{order.invoice}{index}", at, method, shipped, parcels, final))
            if method[5] is None:
                self.plant(
                    "unmapped_ship_method",
                    order.warehouse,
                    f"{method[1]}/{method[3]} is not in the suggested [mapping.ship_methods]",
                    order_number=order.number,
                    ship_method=f"{method[1]}/{method[3]}",
                )
            at += timedelta(days=self.rng.randint(1, 3))
        if len(order.shipments) > 1:
            self.plant(
                "split_shipment", order.warehouse, "order despatched in two shipments", order_number=order.number
            )
        elif split:
            self.plant(
                "partial_despatch", order.warehouse, "first of two shipments despatched", order_number=order.number
            )

    def _marketplacer_invoice(self, order: Order) -> None:
        flags = ["PAID"]
        if order.cancelled:
            flags = ["CANCELLED", "REFUNDED"]
        elif order.shipments:
            flags.append("SENT" if order.shipments[-1].final else "PARTIALLY_SENT")
        updated = max([order.placed_at, *(s.at for s in order.shipments)])
        invoice = {
            "__typename": "Invoice",
            "id": gid("Invoice", order.invoice),
            "legacyId": order.invoice,
            "createdAt": iso(order.placed_at),
            "updatedAt": iso(updated),
            "statusFlags": flags,
            "currency": "GBP",
            "total": f"£{order.total:.2f}",
            "buyerFirstName": order.customer.first,
            "buyerSurname": order.customer.last,
            "buyerEmailAddress": order.email,
            "buyerPhone": order.phone,
            "shippingAddress": {
                "address": f"{self.rng.randint(1, 200)} High Street",
                "city": self.rng.choice(["London", "Leeds", "Bristol", "Glasgow", "Cardiff"]),
                "postcode": f"N{self.rng.randint(1, 20)} {self.rng.randint(1, 9)}AA",
                "state": None,
                "country": {"code": "GB"},
            },
            "seller": {"id": order.seller[0], "businessName": order.seller[1]},
            "order": {
                "id": gid("Order", order.invoice),
                "legacyId": order.invoice,
                "externalIds": [{"key": "storefront_order_number", "value": order.number}],
            },
            "lineItems": [
                {
                    "id": line.line_id,
                    "legacyId": order.invoice * 10 + i,
                    "variantId": gid("Variant", self.sku_index[line.sku] + 1),
                    "variantSku": line.sku,
                    "variantBarcode": line.barcode,
                    "variantName": line.name,
                    "quantity": line.quantity,
                    "status": "CANCELLED" if order.cancelled else "PAID",
                    "unitPrice": f"£{line.price:.2f}",
                    "totalPrice": f"£{line.price * line.quantity:.2f}",
                }
                for i, line in enumerate(order.lines, 1)
            ],
            "shipments": [
                {
                    "id": gid("Shipment", int(shipment.number)),
                    "trackingNumber": shipment.parcels[0][0],
                    "trackingLink": f"https://track.example.com/{shipment.parcels[0][0]}",
                    "carrier": shipment.method[1],
                    "postageCarrier": {
                        "id": gid("ShipmentCarrier", len(shipment.method[0])),
                        "name": shipment.method[1],
                    },
                    "dispatchedAt": iso(shipment.at),
                    "shippedItems": [
                        {
                            "id": gid("ShippedItem", int(shipment.number) * 10 + i),
                            "quantity": qty,
                            "lineItem": {"id": self._line(order, sku).line_id, "variantSku": sku},
                        }
                        for i, (sku, qty) in enumerate(shipment.items.items(), 1)
                    ],
                }
                for shipment in order.shipments
            ],
        }
        self.marketplacer["invoices"].append(invoice)
        if order.cancelled:
            self.marketplacer["refund_requests"].append(
                {
                    "__typename": "RefundRequest",
                    "id": gid("RefundRequest", order.invoice),
                    "legacyId": order.invoice,
                    "status": "REFUNDED",
                    "createdAt": iso(order.placed_at + timedelta(hours=2)),
                    "updatedAt": iso(order.placed_at + timedelta(hours=3)),
                    "invoice": {"id": invoice["id"], "legacyId": order.invoice},
                    "lineItems": [
                        {
                            "id": gid("RefundRequestLineItem", order.invoice * 10 + i),
                            "reason": "Cancelled before dispatch",
                            "quantity": line.quantity,
                            "status": "REFUNDED",
                            "amount": f"£{line.price * line.quantity:.2f}",
                            "lineItem": {"id": line.line_id, "variantSku": line.sku},
                        }
                        for i, line in enumerate(order.lines, 1)
                    ],
                }
            )

    @staticmethod
    def _line(order: Order, sku: str) -> Line:
        return next(line for line in order.lines if line.sku == sku)

    def _peoplevox_despatches(self, order: Order) -> None:
        rows = self.peoplevox["reports"]["Despatch summary"]["rows"]
        for shipment in order.shipments:
            carrier, carrier_name, service_code, service_name, _, _ = shipment.method
            for sku, qty in shipment.items.items():
                line = self._line(order, sku)
                rows.append(
                    {
                        "Salesorder number": order.number,
                        "Requested delivery date": pvx_date(order.placed_at + timedelta(days=2)),
                        "Despatch number": shipment.number,
                        "Carrier": carrier_name,
                        "Service": service_name,
                        "Despatch date": pvx_date(shipment.at),
                        "Tracking number": shipment.parcels[0][0],
                        "Item name": line.name,
                        "No of items": str(qty),
                        "Destination country": "United Kingdom",
                        "Site reference": "PrimarySite",
                        "Item code": sku,
                        "Carrier reference": carrier,
                        "Service type code": service_code,
                        "Customer order reference": f"#{order.invoice}",
                        "Shipping cost": "4.95",
                        "Email": order.email,
                        "Contact name": f"{order.customer.first} {order.customer.last}",
                        "Total sale": f"{order.total:.2f}",
                        "Tax paid": f"{order.total / 6:.2f}",
                        "Channel name": "Marketplacer",
                        "Item barcode": line.barcode,
                    }
                )

    def _clarus_order(self, order: Order) -> None:
        goods_out = {
            "id": str(order.invoice),
            "reference": f"GO-{order.invoice}",
            "external_system_reference1": order.number,
        }
        despatched: dict[str, int] = {}
        for shipment in order.shipments:
            for sku, qty in shipment.items.items():
                despatched[sku] = despatched.get(sku, 0) + qty
        last = max([order.placed_at, *(s.at for s in order.shipments)])
        for index, line in enumerate(order.lines, 1):
            self.clarus["goods_out_lines"].append(
                {
                    "id": str(order.invoice * 10 + index),
                    "order_quantity": line.quantity,
                    "allocated_quantity": 0 if order.cancelled else line.quantity,
                    "pick_quantity": despatched.get(line.sku, 0),
                    "dispatch_quantity": despatched.get(line.sku, 0),
                    "short_status": "",
                    "updated_at": iso(last),
                    "product": {"id": str(self.sku_index[line.sku] + 1000), "code": line.sku},
                    "goods_out": goods_out,
                    "carrier": {"id": "1"},
                }
            )
        for shipment in order.shipments:
            carrier, carrier_name, service_code, service_name, _, _ = shipment.method
            self.clarus["shipments"].append(
                {
                    "id": shipment.number,
                    "reference": f"SH-{shipment.number}",
                    "name": f"Shipment for {order.number}",
                    "status": "dispatched",
                    "delivery_notes": None,
                    "collection_datetime": iso(shipment.at),
                    "updated_at": iso(shipment.at),
                    "label_filename": f"label-SH-{shipment.number}.pdf",
                    "packages_count": len(shipment.parcels),
                    "carrier": {"id": carrier, "code": carrier, "name": carrier_name},
                    "carrier_service": {"id": service_code, "code": service_code, "name": service_name},
                    "warehouse": CLARUS_WAREHOUSE,
                    "goods_out": goods_out,
                }
            )
            for index, (tracking, _items) in enumerate(shipment.parcels, 1):
                self.clarus["packages"].append(
                    {
                        "id": f"{shipment.number}{index}",
                        "tracking_number": tracking,
                        "updated_at": iso(shipment.at),
                        "shipment": {"id": shipment.number, "reference": f"SH-{shipment.number}"},
                        "storage_unit_type": {"id": "1", "code": "PARCEL"},
                    }
                )
        if not order.shipments and not order.cancelled and self.rng.random() < 0.5:
            number = f"{order.invoice}9"
            self.clarus["shipments"].append(
                {
                    "id": number,
                    "reference": f"SH-{number}",
                    "name": f"Shipment for {order.number}",
                    "status": "packed",
                    "delivery_notes": None,
                    "collection_datetime": None,
                    "updated_at": iso(order.placed_at + timedelta(hours=6)),
                    "label_filename": None,
                    "packages_count": 1,
                    "carrier": {"id": "DPD", "code": "DPD", "name": "DPD"},
                    "carrier_service": {"id": "NEXT", "code": "NEXT", "name": "Next Day"},
                    "warehouse": CLARUS_WAREHOUSE,
                    "goods_out": goods_out,
                }
            )
            self.plant(
                "not_despatched",
                "clarus",
                "shipment packed but not dispatched: no shipment event may be sent",
                order_number=order.number,
                shipment_reference=f"SH-{number}",
            )

    def _scend_order(self, order: Order) -> None:
        client = "ACME"
        if order.cancelled:
            self.scend["order_status"].append(
                [client, order.number, "CANCELLED", iso(order.placed_at + timedelta(hours=2)), "Customer request"]
            )
        for shipment in order.shipments:
            carrier, carrier_name, service_code, service_name, _, _ = shipment.method
            for parcel_index, (tracking, items) in enumerate(shipment.parcels, 1):
                for sku, qty in items.items():
                    line = self._line(order, sku)
                    self.scend["despatches"].append(
                        [
                            client,
                            order.number,
                            f"#{order.invoice}",
                            f"DSP-{shipment.number}",
                            f"PCL-{parcel_index}",
                            iso(shipment.at),
                            carrier,
                            carrier_name,
                            service_code,
                            service_name,
                            tracking,
                            f"https://track.example.com/{tracking}",
                            sku,
                            line.barcode,
                            str(qty),
                            str(line.quantity),
                            "true" if shipment.final else "false",
                            "MK1",
                            order.email,
                        ]
                    )

    # ----- returns

    def _returns(self) -> None:
        despatched = [order for order in self.orders if order.shipments]
        for order in self.rng.sample(despatched, max(1, len(despatched) // 6)):
            shipped = {sku: qty for s in order.shipments for sku, qty in s.items.items()}
            sku = self.rng.choice(list(shipped))
            line = self._line(order, sku)
            code, reason = self.rng.choice(RETURN_REASONS)
            created = order.shipments[-1].at + timedelta(days=self.rng.randint(2, 10))
            received = created + timedelta(days=self.rng.randint(2, 5))
            processed = self.rng.random() < 0.6
            condition = "Damaged" if code == "FAULTY" else "Sellable"
            rma = str(1000 + len(self.swap["returns"]) + 1)
            return_id = f"ret_{order.invoice}"
            return_type = self.rng.choice(["Refund", "Refund", "Exchange", "Shop Now Credit"])
            self.swap["returns"].append(
                {
                    "return_id": return_id,
                    "rma_number": rma,
                    "rma": rma,
                    "order_name": order.number,
                    "order_id": str(5597137200000 + order.invoice),
                    "store_id": SANDBOX_CREDENTIALS.swap_store_id,
                    "date_created": iso(created),
                    "date_updated": iso(received + timedelta(days=1) if processed else created),
                    "type": [return_type],
                    "type_string": return_type,
                    "return_status": "Closed" if processed else "Open",
                    "delivery_status": "Delivered" if processed else "In-Transit",
                    "total": float(line.price),
                    "total_refund_value_customer_currency": float(line.price) if return_type == "Refund" else 0.0,
                    "customer_currency": "GBP",
                    "customer_name": f"{order.customer.first} {order.customer.last}",
                    "customer_email": order.email,
                    "customer_locale": "en-GB",
                    "shipping_carrier": "Royal Mail",
                    "return_shipments": [
                        {
                            "carrier": "Royal Mail",
                            "tracking_number": self._tracking("TT"),
                            "delivery_status": "Delivered" if processed else "In-Transit",
                        }
                    ],
                    "products": [
                        {
                            "sku": sku,
                            "product_name": line.name,
                            "variant_name": line.name.split(" ", 2)[-1],
                            "main_reason_id": code,
                            "main_reason_text": reason,
                            "sub_reason_id": None,
                            "sub_reason_text": None,
                            "comments": "",
                            "item_count": 1,
                            "cost": float(line.price),
                            "return_type": return_type,
                        }
                    ],
                }
            )
            if processed and order.warehouse == "peoplevox":
                self.peoplevox["reports"]["Return summary"]["rows"].append(
                    {
                        "Return code": f"RET{rma}",
                        "Return date": pvx_date(received),
                        "Quantity": "1",
                        "Item name": line.name,
                        "Sales order number": order.number,
                        "Despatch date": pvx_date(order.shipments[-1].at),
                        "Return reason": reason,
                        "Return condition": "DAMAGED" if condition == "Damaged" else "NEW",
                        "Return comments": "",
                        "Days since despatch": str((received - order.shipments[-1].at).days),
                        "Item barcode": line.barcode,
                        "Sales order contact name": f"{order.customer.first} {order.customer.last}",
                        "Customer phone number": order.phone,
                        "Item sale price": f"{line.price:.2f}",
                        "Sales order email": order.email,
                        "Channel name": "Marketplacer",
                        "Site reference": "Quarantine" if condition == "Damaged" else "PrimarySite",
                        "Is Reusable": "False" if condition == "Damaged" else "True",
                        "Item code": sku,
                    }
                )
            elif processed and order.warehouse == "scend":
                restock = condition == "Sellable"
                self.scend["returns"].append(
                    [
                        "ACME",
                        f"RET-{rma}",
                        rma,
                        order.number,
                        iso(received),
                        sku,
                        line.barcode,
                        "1",
                        code,
                        reason,
                        condition.upper(),
                        "RESTOCK" if restock else "QUARANTINE",
                        "1" if restock else "0",
                        "0" if restock else "1",
                        "",
                        "MK1",
                    ]
                )
            if processed and return_type == "Refund":
                self.marketplacer["refund_requests"].append(
                    {
                        "__typename": "RefundRequest",
                        "id": gid("RefundRequest", order.invoice * 10),
                        "legacyId": order.invoice * 10,
                        "status": "REFUNDED",
                        "createdAt": iso(created),
                        "updatedAt": iso(received + timedelta(days=1)),
                        "invoice": {"id": gid("Invoice", order.invoice), "legacyId": order.invoice},
                        "lineItems": [
                            {
                                "id": gid("RefundRequestLineItem", order.invoice * 100),
                                "reason": reason,
                                "quantity": 1,
                                "status": "REFUNDED",
                                "amount": f"£{line.price:.2f}",
                                "lineItem": {"id": line.line_id, "variantSku": sku},
                            }
                        ],
                    }
                )

    # ----- stock

    def _stock(self) -> None:
        snapshot = iso(self.start + timedelta(minutes=self.count * 37 + 60 * 24))
        inventory = self.peoplevox["reports"]["Item inventory summary all sites"]["rows"]
        for index, (sku, name, barcode, _) in enumerate(self.skus):
            on_hand = self.rng.choice([0, 0, 3, 8, 15, 40, 120])
            allocated = min(on_hand, self.rng.randint(0, 4))
            quarantine = self.rng.choice([0, 0, 0, 1, 2])
            damaged = self.rng.choice([0, 0, 0, 0, 1])
            goods_in = self.rng.choice([0, 0, 0, 12, 24])
            product = {"id": str(index + 1000), "code": sku}
            for site, level in (("PrimarySite", on_hand), ("Quarantine", quarantine), ("GoodsIn", goods_in)):
                if level or site == "PrimarySite":
                    alloc = allocated if site == "PrimarySite" else 0
                    inventory.append(
                        {
                            "Item code": sku,
                            "Item name": name,
                            "Item barcode": barcode,
                            "Site reference": site,
                            "On hand": str(level),
                            "Allocated": str(alloc),
                            "Available": str(level - alloc),
                        }
                    )
            self.clarus["stock_balances"].append(
                {
                    "available": on_hand - allocated,
                    "allocated": allocated,
                    "ordered": goods_in,
                    "received": on_hand + quarantine + damaged,
                    "picked": 0,
                    "product": product,
                    "account": {"id": "7", "code": "ACME"},
                    "warehouse": CLARUS_WAREHOUSE,
                }
            )
            for status, location, quantity in (
                ("available", f"AISLE-{index % 9 + 1:02d}", on_hand),
                ("quarantined", "QUARANTINE-01", quarantine),
                ("awaiting_qc", "GOODS-IN-01", goods_in),
                ("damaged", "DAMAGED-01", damaged),
            ):
                if quantity:
                    self.clarus["stocks"].append(
                        {
                            "id": f"{index + 1000}{len(self.clarus['stocks'])}",
                            "quantity": quantity,
                            "status": status,
                            "fifo_date": iso(self.start),
                            "product": product,
                            "location": {"id": location, "code": location},
                            "account": {"id": "7", "code": "ACME"},
                            "storage_unit": {"id": str(index), "reference": f"PAL{index:08d}"},
                            "warehouse": {"id": CLARUS_WAREHOUSE["id"], "code": CLARUS_WAREHOUSE["code"]},
                        }
                    )
            on_hold = self.rng.choice([0, 0, 0, 0, 2])
            self.scend["stock"].append(
                [
                    "ACME",
                    snapshot,
                    "MK1",
                    sku,
                    barcode,
                    str(on_hand + quarantine + damaged + on_hold),
                    str(allocated),
                    str(on_hand - allocated),
                    str(quarantine),
                    str(damaged),
                    str(on_hold),
                    str(goods_in),
                    "0",
                ]
            )
            self.marketplacer["variants"].append(
                {
                    "__typename": "Variant",
                    "id": gid("Variant", index + 1),
                    "sku": sku,
                    "barcode": barcode,
                    "countOnHand": on_hand - allocated,
                    "infiniteQuantity": False,
                    "updatedAt": snapshot,
                    "advert": {"id": gid("Advert", index // 9 + 1), "title": name.rsplit(" ", 2)[0]},
                }
            )
            buckets = {"quarantine": quarantine, "damaged": damaged, "goods_in": goods_in, "on_hold": on_hold}
            if any(buckets.values()):
                self.plant(
                    "non_sellable_stock",
                    "peoplevox,clarus,scend",
                    "stock in quarantine, damaged, on hold or goods-in must never count as sellable",
                    sku=sku,
                    **{k: v for k, v in buckets.items() if v},
                )

    # ----- malformed input

    def _malformed(self) -> None:
        despatches = self.peoplevox["reports"]["Despatch summary"]["rows"]
        if despatches:
            bad = dict(self.rng.choice(despatches))
            bad.update({"Despatch number": "BAD-QTY-1", "No of items": "two"})
            despatches.append(bad)
            self.plant("malformed_row", "peoplevox", "No of items is not a number", despatch_number="BAD-QTY-1")
            bad = dict(self.rng.choice(despatches))
            bad.update({"Despatch number": "BAD-DATE-1", "Despatch date": "31/02/2026 25:61"})
            despatches.append(bad)
            self.plant("malformed_row", "peoplevox", "Despatch date is not a date", despatch_number="BAD-DATE-1")
        if self.clarus["packages"]:
            bad = dict(self.rng.choice(self.clarus["packages"]))
            bad.update({"id": "BAD-PKG-1", "tracking_number": None})
            self.clarus["packages"].append(bad)
            self.plant("malformed_row", "clarus", "package without a tracking number", package_id="BAD-PKG-1")
        self.swap["returns"].append(
            {
                "return_id": "ret_malformed",
                "rma_number": "BAD-1",
                "order_name": None,
                "date_created": "yesterday",
                "date_updated": iso(self.start),
                "return_status": "Open",
                "products": None,
            }
        )
        self.plant("malformed_row", "swap", "return without order, products or a valid date", return_id="ret_malformed")
        if self.marketplacer["invoices"]:
            bad = json.loads(json.dumps(self.rng.choice(self.marketplacer["invoices"])))
            bad.update({"id": gid("Invoice", 99999), "legacyId": 99999, "buyerEmailAddress": "not-an-email"})
            for item in bad["lineItems"]:
                item["quantity"] = -1
            self.marketplacer["invoices"].append(bad)
            self.plant(
                "malformed_row",
                "marketplacer",
                "invoice with a negative quantity and an invalid email",
                invoice_legacy_id=99999,
            )
        if self.scend["despatches"]:
            self.scend["despatches"].append(["ACME", "SO-BROKEN", "#0", "DSP-BROKEN"])
            self.plant("malformed_row", "scend", "despatch CSV row with 4 of 19 columns", despatch_id="DSP-BROKEN")

    # ----- output

    def ship_method_mapping(self) -> dict[str, str]:
        return {f"{m[1]}/{m[3]}": m[5] for m in SHIP_METHODS if m[5]}

    def write(self, data_dir: Path) -> SeedResult:
        sources = data_dir / "sources"
        sources.mkdir(parents=True, exist_ok=True)
        for system in ("peoplevox", "clarus", "swap", "marketplacer"):
            (sources / f"{system}.json").write_text(json.dumps(getattr(self, system)), encoding="utf-8")
        drop = (data_dir / "scend" / "drop").resolve()
        drop.mkdir(parents=True, exist_ok=True)
        for old in drop.glob("*_*.csv"):
            old.unlink()
        stamp = (self.start + timedelta(minutes=self.count * 37 + 60 * 24)).strftime("%Y%m%d%H%M%S")
        for kind, columns in (
            ("despatches", SCEND_DESPATCH_COLUMNS),
            ("returns", SCEND_RETURN_COLUMNS),
            ("stock", SCEND_STOCK_COLUMNS),
            ("order_status", SCEND_STATUS_COLUMNS),
        ):
            with (drop / f"{kind}_{stamp}.csv").open("w", newline="", encoding="utf-8") as handle:
                writer = csv.writer(handle)
                writer.writerow(columns)
                writer.writerows(self.scend[kind])
        manifest = self.manifest(drop)
        (sources / MANIFEST).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
        return SeedResult(data_dir, manifest)

    def manifest(self, drop: Path) -> dict[str, Any]:
        pvx = self.peoplevox["reports"]
        counts = {
            "customers": len(self.customers),
            "orders": len(self.orders),
            "skus": len(self.skus),
            "peoplevox.despatch_rows": len(pvx["Despatch summary"]["rows"]),
            "peoplevox.return_rows": len(pvx["Return summary"]["rows"]),
            "peoplevox.inventory_rows": len(pvx["Item inventory summary all sites"]["rows"]),
            **{f"clarus.{name}": len(rows) for name, rows in self.clarus.items()},
            "swap.returns": len(self.swap["returns"]),
            **{f"marketplacer.{name}": len(rows) for name, rows in self.marketplacer.items()},
            **{f"scend.{name}_rows": len(rows) for name, rows in self.scend.items()},
        }
        by_type: dict[str, int] = {}
        for plant in self.planted:
            by_type[plant["type"]] = by_type.get(plant["type"], 0) + 1
        return {
            "seed": self.seed,
            "orders": self.count,
            "start": iso(self.start),
            "scend_drop_dir": str(drop),
            "counts": counts,
            "planted_counts": by_type,
            "planted": self.planted,
            "ship_methods": {
                "mapping": self.ship_method_mapping(),
                "unmapped": sorted({f"{m[1]}/{m[3]}" for m in UNMAPPED_METHODS}),
            },
            "warehouses": {order.number: order.warehouse for order in self.orders},
            "credentials": {"environment": SANDBOX_CREDENTIALS.environment()},
        }


def seed_sources(data_dir: Path, orders: int = 200, seed: int = 1, start: datetime = DEFAULT_START) -> SeedResult:
    """Write the synthetic retailer to `data_dir` (stand-in data, Scend drop folder, manifest)."""
    if orders < 1:
        raise ValueError("orders must be at least 1")
    retailer = Retailer(orders, seed, start)
    retailer.build()
    return retailer.write(data_dir)


__all__ = ["SeedResult", "seed_sources", "sources_config"]
