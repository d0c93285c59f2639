"""Helpers for the Peoplevox / Scend / ingest tests: write files, ingest them, read events back."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from cogent_cli.config import Config
from cogent_cli.events import NormalisedEvent, parse_event
from cogent_cli.ingest import IngestSummary, ingest_paths
from cogent_cli.state import Store

# The documented Despatch summary example (peoplevox.md §5), as the report's CSV columns.
PVX_DESPATCH = {
    "Salesorder number": "1234",
    "Requested delivery date": "01/07/2017 23:46",
    "Despatch number": "456",
    "Carrier": "DPD",
    "Service": "UK Standard 1-2 Days (Tracked)",
    "Despatch date": "03/07/2017 06:03",
    "Tracking number": "1234567890",
    "Item name": "Test item",
    "No of items": "7",
    "Destination country": "England",
    "Site reference": "PrimarySite",
    "Parent": "",
    "Item code": "XXXX",
    "Username": "JoeH",
    "Carrier reference": "DPD",
    "Service type code": "UK Standard 1-2 Days (Tracked)",
    "Customer order reference": "",
    "Shipping cost": "5.95",
    "Email": "joe@zynk.com",
    "Contact name": "",
    "Total sale": "29.89",
    "Discount": "",
    "Tax paid": "4.98",
    "Channel name": "",
    "Item barcode": "5038135173981",
}
# The documented Return summary example (peoplevox.md §5).
PVX_RETURN = {
    "Return code": "RET1",
    "Return date": "14/06/2018 16:55:07",
    "Quantity": "1",
    "Item name": "Sample Product",
    "Sales order number": "POO2",
    "Despatch date": "14/06/2018 16:52:17",
    "Return reason": "Why Not",
    "Return condition": "NEW",
    "Return comments": "Internal notes: ",
    "Days since despatch": "237",
    "Item barcode": "5060466510500",
    "Sales order contact name": "Zynk Software",
    "Customer phone number": "0191 303 7279",
    "Item sale price": "3.00",
    "Sales order email": "support@zynk.com",
    "Customer purchase order reference number": "INT001",
    "Channel name": "Web",
    "Payment type": "Card",
    "Site reference": "PrimarySite",
    "Is Reusable": "True",
    "Item code": "PROD001",
}
# Scend's proposed export rows (scend.md §A).
SCEND_DESPATCH = {
    "client_code": "ACME",
    "order_number": "SO-100234",
    "channel_order_ref": "#1001",
    "despatch_id": "DSP-778812",
    "parcel_id": "PCL-1",
    "despatched_at": "2025-05-01T14:03:11Z",
    "carrier_code": "RM",
    "carrier_name": "Royal Mail",
    "service_code": "TPN24",
    "service_name": "Tracked 24",
    "tracking_number": "TT123456789GB",
    "tracking_url": "https://www.royalmail.com/track-your-item#/tracking-results/TT123456789GB",
    "sku": "TSHIRT-M-BLK",
    "barcode": "5012345678901",
    "qty_despatched": "1",
    "qty_ordered": "2",
    "is_final_despatch": "false",
    "site_code": "MK1",
    "customer_email": "jane@example.com",
}
SCEND_RETURN = {
    "client_code": "ACME",
    "return_id": "RET-5521",
    "rma_number": "1042",
    "order_number": "SO-100234",
    "received_at": "2025-05-09T10:22:00Z",
    "sku": "TSHIRT-M-BLK",
    "barcode": "5012345678901",
    "qty_received": "1",
    "return_reason_code": "TOO_SMALL",
    "return_reason_text": "Too small",
    "condition": "SELLABLE",
    "disposition": "RESTOCK",
    "qty_restocked": "1",
    "qty_quarantined": "0",
    "notes": "",
    "site_code": "MK1",
}
SCEND_STOCK = {
    "client_code": "ACME",
    "snapshot_at": "2025-05-09T23:00:00Z",
    "site_code": "MK1",
    "sku": "TSHIRT-M-BLK",
    "barcode": "5012345678901",
    "on_hand": "120",
    "allocated": "8",
    "available": "112",
    "quarantine": "2",
    "damaged": "1",
    "on_hold": "0",
    "inbound_expected": "200",
    "inbound_received_not_putaway": "0",
}
SCEND_ORDER_STATUS = {
    "client_code": "ACME",
    "order_number": "SO-100234",
    "status": "CANCELLED",
    "status_at": "2025-05-01T09:00:00Z",
    "reason": "Customer request",
}
SCEND_WEBHOOK = {
    "event": "despatch.confirmed",
    "event_id": "evt_01HX",
    "occurred_at": "2025-05-01T14:03:11Z",
    "client_code": "ACME",
    "order_number": "SO-100234",
    "despatch_id": "DSP-778812",
    "is_final": False,
    "parcels": [
        {
            "parcel_id": "PCL-1",
            "carrier": {"code": "RM", "name": "Royal Mail"},
            "service": {"code": "TPN24", "name": "Tracked 24"},
            "tracking_number": "TT123456789GB",
            "items": [{"sku": "TSHIRT-M-BLK", "qty": 1}],
        }
    ],
}


def csv_text(rows: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def write(folder: Path, name: str, content: str | list[dict[str, Any]]) -> Path:
    path = folder / name
    path.write_text(csv_text(content) if isinstance(content, list) else content, encoding="utf-8")
    return path


def jsonl(records: list[Any]) -> str:
    return "".join(json.dumps(r) + "\n" for r in records)


def ingest(
    store: Store, config: Config, system: str, folder: Path, name: str, content: str | list[dict[str, Any]], **kw: Any
) -> IngestSummary:
    return ingest_paths(store, config, system, [write(folder, name, content)], **kw)


def events(store: Store, event_type: str | None = None) -> list[NormalisedEvent]:
    sql = "select body from events" + (" where event_type = ?" if event_type else "") + " order by rowid"
    return [parse_event(r["body"]) for r in store.db.query(sql, [event_type] if event_type else [])]


def quarantined(store: Store) -> list[tuple[int, str]]:
    return [(r["id"], r["reason"]) for r in store.db.query("select id, reason from inbox where status = 'quarantined'")]
