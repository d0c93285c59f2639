"""Append-only migrations of the sandbox's own SQLite file (`klaviyo.db` in its data folder)."""

from __future__ import annotations

import re

from sqlite_utils import Database
from sqlite_utils.migrations import Migrations

migrations = Migrations("cogent-sandbox")
# An event id as the API shows it: its number (the events table's integer key) in 16 hex digits.
_EVENT_ID_FORM = re.compile(r"[0-9a-f]{16}")


def event_api_id(number: int) -> str:
    return f"{number:016x}"


def event_number(api_id: str) -> int | None:
    """The stored number of an event id as the API shows it; None for text no event id can be."""
    return int(api_id, 16) if _EVENT_ID_FORM.fullmatch(api_id) else None


@migrations()
def m001_klaviyo(db: Database) -> None:
    db["profiles"].create(
        {
            "id": str,
            "email": str,
            "phone_number": str,
            "external_id": str,
            "anonymous_id": str,
            "first_name": str,
            "last_name": str,
            "organization": str,
            "locale": str,
            "title": str,
            "image": str,
            "location": str,
            "properties": str,
            "created": str,
            "updated": str,
            "last_event_date": str,
        },
        pk="id",
        not_null={"created", "updated"},
    )
    # One profile per identifier value is the rule behind 409 duplicate_profile.
    for identifier in ("email", "phone_number", "external_id"):
        db["profiles"].create_index([identifier], unique=True)
    db["metrics"].create({"id": str, "name": str, "created": str, "updated": str}, pk="id", not_null={"name"})
    db["metrics"].create_index(["name"], unique=True)
    db["events"].create(
        {
            "id": str,
            "uuid": str,
            "metric_id": str,
            "metric_name": str,
            "profile_id": str,
            "unique_id": str,
            "dedupe_key": str,
            "time": str,
            "timestamp": int,
            "value": float,
            "value_currency": str,
            "properties": str,
            "backfill": int,
            "received_at": str,
        },
        pk="id",
        not_null={"metric_id", "metric_name", "profile_id", "dedupe_key", "time", "received_at"},
    )
    # Klaviyo keeps the first event per (profile, metric, unique_id); later ones are dropped silently.
    db["events"].create_index(["profile_id", "metric_id", "dedupe_key"], unique=True)
    db["events"].create_index(["metric_id", "time"])
    db["events"].create_index(["time"])
    db["subscriptions"].create(
        {
            "profile_id": str,
            "channel": str,
            "purpose": str,
            "consent": str,
            "consent_timestamp": str,
            "method": str,
            "method_detail": str,
            "custom_method_detail": str,
            "double_optin": int,
            "historical_import": int,
            "last_updated": str,
        },
        pk=("profile_id", "channel", "purpose"),
    )
    db["suppressions"].create(
        {"profile_id": str, "reason": str, "list_id": str, "timestamp": str},
        pk=("profile_id", "reason", "list_id"),
    )
    db["list_members"].create({"list_id": str, "profile_id": str, "added_at": str}, pk=("list_id", "profile_id"))
    db["jobs"].create(
        {"id": str, "type": str, "attributes": str, "relationships": str, "created_at": str},
        pk="id",
        not_null={"type", "attributes", "created_at"},
    )
    db["import_errors"].create(
        {"id": str, "job_id": str, "code": str, "title": str, "detail": str, "pointer": str, "original_payload": str},
        pk="id",
    )
    db["import_errors"].create_index(["job_id"])
    db["catalog_items"].create(
        {
            "id": str,
            "external_id": str,
            "title": str,
            "published": int,
            "categories": str,
            "attributes": str,
            "created": str,
            "updated": str,
        },
        pk="id",
    )
    db["catalog_variants"].create(
        {
            "id": str,
            "item_id": str,
            "external_id": str,
            "sku": str,
            "title": str,
            "inventory_quantity": float,
            "inventory_policy": int,
            "published": int,
            "attributes": str,
            "created": str,
            "updated": str,
        },
        pk="id",
    )
    db["catalog_variants"].create_index(["item_id"])
    db["catalog_variants"].create_index(["sku"])
    db["back_in_stock_subscriptions"].create(
        {"id": str, "profile_id": str, "variant_id": str, "channels": str, "created": str},
        pk="id",
    )
    db["back_in_stock_subscriptions"].create_index(["variant_id", "profile_id"], unique=True)


@migrations()
def m002_last_event_date_from_events(db: Database) -> None:
    # A profile's last event date is read from its events (see `SandboxStore.last_event_date`), so bulk
    # requests no longer update a thousand profile rows each.
    db["profiles"].transform(drop={"last_event_date"})


@migrations()
def m003_event_numbers(db: Database) -> None:
    # An event's id is its row number, shown in hex (`event_api_id`), and its uuid is derived from the
    # id (resources.py `event_resource`): bulk requests then write neither a second key index nor a
    # thousand random UUIDs.
    # Ids already in the hex form keep their number; older ones (random letters) are numbered after them.
    rows = db.conn.execute("select rowid, id from events order by rowid").fetchall()
    numbers = {rowid: number for rowid, text in rows if (number := event_number(text)) is not None}
    following = max(numbers.values(), default=0) + 1
    for rowid, _ in rows:
        if rowid not in numbers:
            numbers[rowid], following = following, following + 1
    # Negated while the ids are still text, so that no new id meets an old one that reads the same.
    db.conn.executemany("update events set id = ? where rowid = ?", [(str(-n), rowid) for rowid, n in numbers.items()])
    db["events"].transform(types={"id": int}, drop={"uuid"})
    db.execute("update events set id = -id")


@migrations()
def m004_job_ready_at(db: Database) -> None:
    # When a job reads complete (epoch seconds); until then it reads processing. NULL: at once.
    db["jobs"].add_column("ready_at", float)
