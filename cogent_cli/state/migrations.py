"""Append-only schema migrations of the state file. Never edit a migration once it has shipped."""

from __future__ import annotations

from sqlite_utils import Database
from sqlite_utils.migrations import Migrations

migrations = Migrations("cogent")


@migrations()
def m001_initial(db: Database) -> None:
    db["meta"].create({"key": str, "value": str}, pk="key")


@migrations()
def m002_inbox(db: Database) -> None:
    # Every payload, whatever its route, lands here raw before it is acknowledged.
    db["inbox"].create(
        {
            "id": int,
            "system": str,
            "route": str,
            "kind": str,
            "idempotency_key": str,
            "received_at": str,
            "headers": str,
            "body": str,
            "status": str,
            "reason": str,
            "attempts": int,
            "normalised_at": str,
        },
        pk="id",
        not_null={"system", "route", "kind", "idempotency_key", "received_at", "body", "status", "attempts"},
        defaults={"status": "pending", "attempts": 0},
    )
    db["inbox"].create_index(["system", "idempotency_key"], unique=True)
    db["inbox"].create_index(["status", "id"])
    db["events"].create(
        {
            "event_id": str,
            "event_type": str,
            "system": str,
            "tenant": str,
            "occurred_at": str,
            "received_at": str,
            "order_number": str,
            "email": str,
            "inbox_id": int,
            "body": str,
        },
        pk="event_id",
        not_null={"event_type", "system", "occurred_at", "body"},
    )
    db["events"].create_index(["order_number"])
    db["events"].create_index(["inbox_id"])
    db["events"].create_index(["event_type", "occurred_at"])


@migrations()
def m003_sources(db: Database) -> None:
    # Ordered quantity per storefront order and SKU, from whichever system knows it.
    db["order_lines"].create(
        {"order_number": str, "sku": str, "ordered": int, "system": str, "updated_at": str},
        pk=("order_number", "sku"),
    )
    # Every shipment seen, with the event that announced its latest version.
    db["shipments"].create(
        {
            "system": str,
            "shipment_id": str,
            "order_number": str,
            "despatched_at": str,
            "granularity": str,
            "fingerprint": str,
            "event_id": str,
            "body": str,
        },
        pk=("system", "shipment_id"),
    )
    db["shipments"].create_index(["order_number"])
    db["shipment_items"].create(
        {"system": str, "shipment_id": str, "order_number": str, "sku": str, "quantity": int, "despatched_at": str},
        pk=("system", "shipment_id", "sku"),
    )
    db["shipment_items"].create_index(["order_number", "sku"])
    db["stock_levels"].create(
        {"system": str, "sku": str, "site": str, "as_of": str, "available": int, "body": str},
        pk=("system", "sku", "site"),
    )
    db["cursors"].create({"system": str, "stream": str, "value": str, "updated_at": str}, pk=("system", "stream"))
    db["ship_methods_seen"].create(
        {
            "system": str,
            "carrier_code": str,
            "carrier_name": str,
            "service_code": str,
            "service_name": str,
            "known": int,
            "events": int,
            "first_seen": str,
            "last_seen": str,
            "last_event_id": str,
        },
        pk=("system", "carrier_code", "carrier_name", "service_code", "service_name"),
    )


@migrations()
def m004_sync(db: Database) -> None:
    # One row per Klaviyo operation derived from an event; its status is the delivery state machine.
    db["outbox"].create(
        {
            "id": int,
            "op_key": str,
            "event_id": str,
            "event_rowid": int,
            "kind": str,
            "lane": int,
            "system": str,
            "event_type": str,
            "metric": str,
            "order_key": str,
            "stage": int,
            "occurred_at": str,
            "payload": str,
            "backfill": int,
            "status": str,
            "attempts": int,
            "resends": int,
            "last_error": str,
            "run_id": int,
            "enqueued_at": str,
            "updated_at": str,
            "sent_at": str,
        },
        pk="id",
        not_null={"op_key", "event_id", "kind", "lane", "status", "payload", "enqueued_at"},
        defaults={"status": "pending", "attempts": 0, "resends": 0, "backfill": 0, "stage": 0},
    )
    db["outbox"].create_index(["op_key"], unique=True)
    db["outbox"].create_index(["status", "lane", "id"])
    db["outbox"].create_index(["order_key", "stage"])
    db["outbox"].create_index(["event_id"])
    db["identity_cache"].create({"key": str, "profile_id": str, "updated_at": str}, pk="key")
    db["catalog_cache"].create({"variant_id": str, "known": int, "checked_at": str}, pk="variant_id")
    # The first Cancelled/Refunded/Fulfilled Order of an order claims the Placed Order's unique_id.
    db["clv_claims"].create({"order_key": str, "metric": str, "event_id": str}, pk=("order_key", "metric"))
    db["sellable_stock"].create(
        {"sku": str, "site": str, "available": int, "as_of": str, "event_id": str}, pk=("sku", "site")
    )
    db["sync_exceptions"].create(
        {
            "id": int,
            "outbox_id": int,
            "event_id": str,
            "class": str,
            "owner": str,
            "system": str,
            "metric": str,
            "pointer": str,
            "payload": str,
            "last_error": str,
            "details": str,
            "status": str,
            "created_at": str,
            "updated_at": str,
            "resolved_at": str,
            "note": str,
        },
        pk="id",
        not_null={"class", "owner", "status", "created_at"},
        defaults={"status": "open"},
    )
    db["sync_exceptions"].create_index(["status", "class"])
    db["sync_exceptions"].create_index(["outbox_id"])
    db["sync_runs"].create(
        {
            "id": int,
            "command": str,
            "pid": int,
            "started_at": str,
            "finished_at": str,
            "status": str,
            "exit_status": int,
            "counts": str,
            "error": str,
        },
        pk="id",
    )
    db["sync_lock"].create(
        {"name": str, "pid": int, "process_started": str, "host": str, "acquired_at": str, "run_id": int}, pk="name"
    )
    db["schedules"].create(
        {"name": str, "cron": str, "command": str, "created_at": str, "last_due_at": str}, pk="name"
    )
    db["schedule_runs"].create(
        {
            "id": int,
            "schedule": str,
            "due_at": str,
            "started_at": str,
            "finished_at": str,
            "exit_status": int,
            "outcome": str,
            "output": str,
        },
        pk="id",
    )


@migrations()
def m005_audits(db: Database) -> None:
    # The Klaviyo mirror that audits read (`cogent pull klaviyo`); JSON columns keep the raw detail.
    db["klaviyo_profiles"].create(
        {
            "id": str,
            "email": str,
            "phone_number": str,
            "external_id": str,
            "first_name": str,
            "last_name": str,
            "organization": str,
            "address1": str,
            "address2": str,
            "city": str,
            "region": str,
            "zip": str,
            "country": str,
            "properties": str,
            "subscriptions": str,
            "email_consent": str,
            "email_consent_at": str,
            "sms_consent": str,
            "sms_consent_at": str,
            "created": str,
            "updated": str,
            "last_event_date": str,
            "mirrored_at": str,
        },
        pk="id",
    )
    db["klaviyo_profiles"].create_index(["email"])
    db["klaviyo_metrics"].create(
        {"id": str, "name": str, "integration_name": str, "integration_category": str, "created": str, "updated": str},
        pk="id",
    )
    db["klaviyo_events"].create(
        {
            "id": str,
            "metric_id": str,
            "metric_name": str,
            "integration_name": str,
            "profile_id": str,
            "datetime": str,
            "unique_id": str,
            "value": float,
            "order_number": str,
            # The normalised event behind it, when cogent sent it (property SourceEventId).
            "source_event_id": str,
            "properties": str,
        },
        pk="id",
    )
    db["klaviyo_events"].create_index(["metric_name", "order_number"])
    db["klaviyo_events"].create_index(["source_event_id"])
    db["klaviyo_events"].create_index(["unique_id"])
    db["klaviyo_events"].create_index(["profile_id"])
    db["klaviyo_variants"].create(
        {
            "id": str,
            "sku": str,
            "external_id": str,
            "item_id": str,
            "title": str,
            "inventory_quantity": int,
            "inventory_policy": int,
            "published": int,
            "updated": str,
            "mirrored_at": str,
        },
        pk="id",
    )
    db["klaviyo_variants"].create_index(["sku"])
    # Where each mirror stream got to, so an interrupted pull resumes instead of starting over.
    db["mirror_cursors"].create(
        {"stream": str, "window_start": str, "window_end": str, "high_water": str, "done": int, "updated_at": str},
        pk="stream",
    )
    db["audit_runs"].create(
        {
            "id": int,
            "audit": str,
            "started_at": str,
            "finished_at": str,
            "status": str,
            "error": str,
            "since": str,
            "counts": str,
        },
        pk="id",
    )
    db["audit_runs"].create_index(["audit", "id"])
    db["audit_findings"].create(
        {
            "id": int,
            "run_id": int,
            "audit": str,
            "key": str,
            "state": str,
            "severity": str,
            "owner": str,
            "title": str,
            "count": int,
            "order_number": str,
            "sku": str,
            "profile_id": str,
            "email": str,
            "evidence": str,
            "fix": str,
            "first_seen": str,
        },
        pk="id",
        foreign_keys=[("run_id", "audit_runs", "id")],
    )
    db["audit_findings"].create_index(["run_id"])
    db["audit_findings"].create_index(["audit", "key"])
    # Every profile merge asked of Klaviyo (or rehearsed with --dry-run), one row per source profile.
    db["profile_merges"].create(
        {
            "id": int,
            "batch": str,
            "cluster": str,
            "destination_id": str,
            "source_id": str,
            "status": str,
            "error": str,
            "at": str,
        },
        pk="id",
    )


@migrations()
def m006_ops(db: Database) -> None:
    db["playbook_runs"].create(
        {
            "id": int,
            "playbook": str,
            "mode": str,
            "operator": str,
            "started_at": str,
            "finished_at": str,
            "outcome": str,
        },
        pk="id",
    )
    db["playbook_steps"].create(
        {
            "run_id": int,
            "step_index": int,
            "title": str,
            "owner": str,
            "command": str,
            "exit_status": int,
            "outcome": str,
            "checks": str,
            "note": str,
            "at": str,
        },
        pk=("run_id", "step_index"),
        foreign_keys=[("run_id", "playbook_runs", "id")],
    )
    # One row per open or past incident, so alerts go out once per incident, not once per run.
    db["incidents"].create(
        {
            "key": str,
            "kind": str,
            "owner": str,
            "summary": str,
            "detail_command": str,
            "opened_at": str,
            "last_seen_at": str,
            "notified_at": str,
            "resolved_at": str,
        },
        pk="key",
    )


@migrations()
def m007_outbox_import_job(db: Database) -> None:
    # The profile import job a row went in when a run stopped waiting on it (Klaviyo may still be
    # running it): the next run asks how it ended before sending the row again.
    db["outbox"].add_column("import_job", str)
