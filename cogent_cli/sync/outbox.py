"""The outbox: every Klaviyo operation the events call for, with its delivery state.

Rows move pending -> in_flight -> sent, or -> exception (kept, with an open exception), each move in
one transaction. A row found in_flight when a run starts belonged to a run that died: it goes back to
pending and is re-sent, and Klaviyo's unique_id dedupe absorbs the copy that may have arrived.

Events are read from the `events` table in rowid order; the position read so far is committed in
the same transaction as the rows it produced, so a crash never skips or doubles an event.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import ValidationError
from sqlite_utils import Database

from cogent_cli.config import Config
from cogent_cli.events import NormalisedEvent, parse_event
from cogent_cli.state import Store
from cogent_cli.sync.exceptions import MappingError, now_iso, record_exception
from cogent_cli.sync.mapping import Mapped, Mapper, Op

POSITION_KEY = "sync.events_position"
READ_CHUNK = 500
# An undelivered predecessor in any of these states holds later stages of the same order.
UNSENT = ("pending", "in_flight", "deferred", "exception")
_INSERT_COLUMNS = (
    "op_key",
    "event_id",
    "event_rowid",
    "kind",
    "lane",
    "system",
    "event_type",
    "metric",
    "order_key",
    "stage",
    "occurred_at",
    "payload",
    "backfill",
    "status",
    "enqueued_at",
    "updated_at",
)


@dataclass
class EnqueueSummary:
    read: int = 0
    enqueued: int = 0
    duplicates: int = 0
    exceptions: int = 0
    skipped: Counter[str] = field(default_factory=Counter)

    def add(self, other: EnqueueSummary) -> None:
        self.read += other.read
        self.enqueued += other.enqueued
        self.duplicates += other.duplicates
        self.exceptions += other.exceptions
        self.skipped.update(other.skipped)


@dataclass(frozen=True)
class OutboxRow:
    id: int
    op_key: str
    event_id: str
    kind: str
    lane: int
    system: str | None
    event_type: str | None
    metric: str
    order_key: str | None
    stage: int
    payload: dict[str, Any]
    backfill: bool
    status: str
    attempts: int
    resends: int

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> OutboxRow:
        return cls(
            id=row["id"],
            op_key=row["op_key"],
            event_id=row["event_id"],
            kind=row["kind"],
            lane=row["lane"],
            system=row["system"],
            event_type=row["event_type"],
            metric=row["metric"],
            order_key=row["order_key"],
            stage=row["stage"],
            payload=json.loads(row["payload"]),
            backfill=bool(row["backfill"]),
            status=row["status"],
            attempts=row["attempts"],
            resends=row["resends"],
        )


def _parse_time(text: str) -> datetime:
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=UTC)


class Outbox:
    def __init__(self, store: Store, config: Config) -> None:
        self.store = store
        self.config = config
        self.mapper = Mapper(config)

    # -- reading events ----------------------------------------------------------------------------

    def position(self) -> int:
        value = self.store.get_meta(POSITION_KEY)
        return int(value) if value else 0

    def unread(self) -> int:
        return next(self.store.db.query("select count(*) as n from events where rowid > ?", [self.position()]))["n"]

    def _is_historical(self, event: NormalisedEvent, now: datetime) -> bool:
        if event.source.transport == "backfill":
            return True
        return event.occurred_at < now - timedelta(hours=self.config.sync.backfill_after_hours)

    def enqueue_new(self, now: datetime | None = None, limit: int | None = None) -> EnqueueSummary:
        """Map every event after the stored position into outbox rows, a chunk per transaction."""
        now = now or datetime.now(UTC)
        total = EnqueueSummary()
        while limit is None or total.read < limit:
            size = READ_CHUNK if limit is None else min(READ_CHUNK, limit - total.read)
            with self.store.transaction() as db:
                position = int(
                    next(db.query("select coalesce(max(value), 0) as v from meta where key = ?", [POSITION_KEY]))["v"]
                )
                rows = list(
                    db.query(
                        "select rowid, event_id, system, body from events where rowid > ? order by rowid limit ?",
                        [position, size],
                    )
                )
                if not rows:
                    break
                for row in rows:
                    total.add(self._enqueue_row(db, row, now=now, force_backfill=False))
                db["meta"].upsert({"key": POSITION_KEY, "value": str(rows[-1]["rowid"])}, pk="key")
        return total

    def enqueue_backfill(self, since: datetime, now: datetime | None = None) -> EnqueueSummary:
        """Queue every event since `since` that has no outbox row yet as history (backfill flag set).

        Events already queued or delivered keep their rows: Klaviyo would dedupe a re-send anyway."""
        now = now or datetime.now(UTC)
        total = EnqueueSummary()
        last = 0
        while True:
            with self.store.transaction() as db:
                rows = list(
                    db.query(
                        "select rowid, event_id, system, body from events where rowid > ? and occurred_at >= ? "
                        "and event_id not in (select event_id from outbox) order by rowid limit ?",
                        [last, since.astimezone(UTC).isoformat().replace("+00:00", "Z"), READ_CHUNK],
                    )
                )
                if not rows:
                    break
                for row in rows:
                    total.add(self._enqueue_row(db, row, now=now, force_backfill=True))
                last = rows[-1]["rowid"]
        return total

    def _enqueue_row(self, db: Database, row: dict[str, Any], *, now: datetime, force_backfill: bool) -> EnqueueSummary:
        summary = EnqueueSummary(read=1)
        try:
            event = parse_event(row["body"])
        except (ValidationError, ValueError) as exc:
            self._park(
                db,
                row["event_id"],
                row["rowid"],
                row["system"],
                None,
                "source_payload_invalid",
                str(exc)[:2000],
                None,
                None,
            )
            summary.exceptions += 1
            return summary
        backfill = force_backfill or self._is_historical(event, now)
        try:
            mapped = self.mapper.map(event, backfill=backfill)
        except MappingError as exc:
            self._park(
                db,
                event.event_id,
                row["rowid"],
                event.source.system,
                event.event_type,
                exc.exception_class,
                str(exc),
                exc.pointer,
                event,
            )
            summary.exceptions += 1
            return summary
        if mapped.skipped:
            summary.skipped[mapped.skipped] += 1
        for op in mapped.ops:
            if self._insert_op(db, event, row["rowid"], op, backfill=backfill):
                summary.enqueued += 1
            else:
                summary.duplicates += 1
        return summary

    def _park(
        self,
        db: Database,
        event_id: str,
        rowid: int,
        system: str | None,
        event_type: str | None,
        exception_class: str,
        error: str,
        pointer: str | None,
        event: NormalisedEvent | None,
    ) -> None:
        """An event that cannot be mapped: a placeholder row in `exception` plus an open exception."""
        op_key = f"{event_id}:mapping"
        existing = list(db.query("select id from outbox where op_key = ?", [op_key]))
        now = now_iso()
        if existing:
            outbox_id = existing[0]["id"]
            db["outbox"].update(outbox_id, {"status": "exception", "last_error": error, "updated_at": now})
        else:
            outbox_id = (
                db["outbox"]
                .insert(
                    {
                        "op_key": op_key,
                        "event_id": event_id,
                        "event_rowid": rowid,
                        "kind": "mapping",
                        "lane": 0,
                        "system": system,
                        "event_type": event_type,
                        "metric": event_type or "unreadable event",
                        "order_key": event.order_number if event else None,
                        "stage": 0,
                        "occurred_at": event.occurred_at.isoformat() if event else None,
                        "payload": "{}",
                        "status": "exception",
                        "last_error": error,
                        "enqueued_at": now,
                        "updated_at": now,
                    }
                )
                .last_pk
            )
        record_exception(
            db,
            self.config,
            exception_class=exception_class,
            error=error,
            outbox_id=outbox_id,
            event_id=event_id,
            system=system,
            metric=event_type,
            pointer=pointer,
            payload=json.loads(json.dumps(event.model_dump(mode="json"), default=str)) if event else None,
        )

    def _claim_clv(self, db: Database, op: Op, event_id: str) -> bool:
        """The first event of a metric per order takes the Placed Order's unique_id (CLV netting)."""
        db.execute(
            "insert or ignore into clv_claims (order_key, metric, event_id) values (?, ?, ?)",
            [op.clv_unique_id, op.metric, event_id],
        )
        holder = next(
            db.query(
                "select event_id from clv_claims where order_key = ? and metric = ?", [op.clv_unique_id, op.metric]
            )
        )
        return holder["event_id"] == event_id

    def _apply_stock(self, db: Database, op: Op, event_id: str, *, apply: bool) -> bool:
        """Fold a sellable stock change into the per-site table; the op carries the SKU's total."""
        change = op.stock
        assert change is not None
        if apply:
            rows = list(
                db.query(
                    "select available, as_of from sellable_stock where sku = ? and site = ?", [change.sku, change.site]
                )
            )
            current = rows[0] if rows else None
            if current and _parse_time(current["as_of"]) > _parse_time(change.as_of):
                return False  # an older snapshot arriving late must not overwrite a newer one
            if change.available is not None:
                available = change.available
            elif current is not None:
                available = current["available"] + (change.delta or 0)
            else:
                return False  # a delta without a known base would invent a quantity
            db["sellable_stock"].upsert(
                {
                    "sku": change.sku,
                    "site": change.site,
                    "available": available,
                    "as_of": change.as_of,
                    "event_id": event_id,
                },
                pk=("sku", "site"),
            )
        total = next(
            db.query("select coalesce(sum(max(available, 0)), 0) as n from sellable_stock where sku = ?", [change.sku])
        )["n"]
        op.payload["inventory_quantity"] = int(total)
        return True

    def _finish_op(self, db: Database, event: NormalisedEvent, op: Op, *, apply_stock: bool) -> bool:
        if op.clv_unique_id:
            netted = self._claim_clv(db, op, event.event_id)
            if netted:
                op.payload["unique_id"] = op.clv_unique_id
            op.payload["properties"]["ClvNetted"] = netted
        if op.stock is not None:
            return self._apply_stock(db, op, event.event_id, apply=apply_stock)
        return True

    def _insert_op(self, db: Database, event: NormalisedEvent, rowid: int, op: Op, *, backfill: bool) -> bool:
        op_key = f"{event.event_id}:{op.suffix}"
        if (op.clv_unique_id or op.stock) and list(db.query("select 1 from outbox where op_key = ?", [op_key])):
            return False  # already queued: its claim or stock change must not be applied twice
        if not self._finish_op(db, event, op, apply_stock=True):
            return False
        now = now_iso()
        # Plain SQL: this runs once per operation, and sqlite-utils' insert re-reads the schema each time.
        cursor = db.execute(
            f"insert or ignore into outbox ({', '.join(_INSERT_COLUMNS)}) values ({', '.join('?' * len(_INSERT_COLUMNS))})",
            [
                op_key,
                event.event_id,
                rowid,
                op.kind,
                op.lane,
                event.source.system,
                event.event_type,
                op.metric,
                event.order_number,
                op.stage,
                event.occurred_at.isoformat(),
                json.dumps(op.payload, default=str),
                int(backfill),
                "pending",
                now,
                now,
            ],
        )
        return cursor.rowcount == 1

    # -- replay ------------------------------------------------------------------------------------

    def remap(self, db: Database, outbox_id: int) -> list[int]:
        """Map an exception's event again under the current configuration and queue its operations.

        Returns the outbox ids now pending; raises MappingError if the mapping still fails."""
        row = next(db.query("select * from outbox where id = ?", [outbox_id]))
        body = next(db.query("select body from events where event_id = ?", [row["event_id"]]), None)
        if body is None:
            raise MappingError("source_payload_invalid", f"event {row['event_id']} is no longer in the events table")
        try:
            event = parse_event(body["body"])
        except (ValidationError, ValueError) as exc:
            raise MappingError("source_payload_invalid", str(exc)[:2000]) from None
        backfill = bool(row["backfill"]) or (row["kind"] == "mapping" and self._is_historical(event, datetime.now(UTC)))
        mapped: Mapped = self.mapper.map(event, backfill=backfill)
        now = now_iso()
        queued = []
        for op in mapped.ops:
            op_key = f"{event.event_id}:{op.suffix}"
            existing = next(db.query("select id, status from outbox where op_key = ?", [op_key]), None)
            if existing is None:
                if self._insert_op(db, event, row["event_rowid"], op, backfill=backfill):
                    queued.append(next(db.query("select id from outbox where op_key = ?", [op_key]))["id"])
            elif existing["status"] in ("exception", "resolved") or existing["id"] == outbox_id:
                # The claim and the stock table already hold this event's effect: read, do not re-apply.
                self._finish_op(db, event, op, apply_stock=False)
                db["outbox"].update(
                    existing["id"],
                    {
                        "payload": json.dumps(op.payload, default=str),
                        "status": "pending",
                        "attempts": 0,
                        "updated_at": now,
                    },
                )
                queued.append(existing["id"])
        if row["kind"] == "mapping":
            db["outbox"].update(outbox_id, {"status": "replaced", "updated_at": now})
        return queued

    # -- delivery state ----------------------------------------------------------------------------

    def recover_in_flight(self) -> int:
        """Rows a dead run left in flight go back to pending; they may have arrived, so count a resend."""
        with self.store.transaction() as db:
            stamp = now_iso()
            db.execute("update outbox set status = 'pending', updated_at = ? where status = 'deferred'", [stamp])
            cursor = db.execute(
                "update outbox set status = 'pending', resends = resends + 1, updated_at = ? where status = 'in_flight'",
                [stamp],
            )
            return cursor.rowcount

    def release_deferred(self) -> None:
        """Rows this run set aside (throttled, unavailable) are pending again for the next run."""
        with self.store.transaction() as db:
            db.execute("update outbox set status = 'pending', updated_at = ? where status = 'deferred'", [now_iso()])

    def claim_wave(
        self,
        run_id: int,
        *,
        limit: int,
        source: str | None = None,
        only_ids: Iterable[int] | None = None,
        now: datetime | None = None,
    ) -> list[OutboxRow]:
        """The next deliverable rows, lane by lane, marked in_flight for this run.

        A row is deliverable unless an earlier business stage of the same order, of the same kind,
        is still undelivered and the row has waited less than the hold time."""
        now = now or datetime.now(UTC)
        cutoff = (now - timedelta(minutes=self.config.sync.hold_minutes)).isoformat(timespec="microseconds")
        clauses = ["o.status = 'pending'"]
        params: list[Any] = []
        if source:
            clauses.append("o.system = ?")
            params.append(source)
        if only_ids is not None:
            ids = list(only_ids)
            if not ids:
                return []
            clauses.append(f"o.id in ({','.join('?' * len(ids))})")
            params.extend(ids)
        marks = ",".join(f"'{s}'" for s in UNSENT)
        sql = f"""
            select o.* from outbox o
            where {" and ".join(clauses)}
              and (o.order_key is null or o.enqueued_at <= ? or not exists (
                    select 1 from outbox p
                    where p.order_key = o.order_key and p.kind = o.kind and p.stage < o.stage
                      and p.status in ({marks})))
            order by o.lane, o.id
            limit ?
        """
        with self.store.transaction() as db:
            rows = [OutboxRow.from_row(r) for r in db.query(sql, [*params, cutoff, limit])]
            if rows:
                stamp = now_iso()
                for start in range(0, len(rows), 500):
                    chunk = [r.id for r in rows[start : start + 500]]
                    db.execute(
                        f"update outbox set status = 'in_flight', run_id = ?, attempts = attempts + 1, updated_at = ? "
                        f"where id in ({','.join('?' * len(chunk))})",
                        [run_id, stamp, *chunk],
                    )
        return rows

    def mark(
        self,
        ids: Iterable[int],
        status: str,
        error: str | None = None,
        payloads: dict[int, dict[str, Any]] | None = None,
    ) -> None:
        ids = list(ids)
        if not ids:
            return
        stamp = now_iso()
        with self.store.transaction() as db:
            self._mark(db, ids, status, error, stamp)
            for row_id, payload in (payloads or {}).items():
                db["outbox"].update(row_id, {"payload": json.dumps(payload, default=str)})

    @staticmethod
    def _mark(db: Database, ids: list[int], status: str, error: str | None, stamp: str) -> None:
        sent_at = stamp if status in ("sent", "superseded") else None
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            db.execute(
                f"update outbox set status = ?, last_error = coalesce(?, last_error), updated_at = ?, "
                f"sent_at = coalesce(?, sent_at) where id in ({','.join('?' * len(chunk))})",
                [status, error, stamp, sent_at, *chunk],
            )

    def fail(
        self,
        rows: list[OutboxRow],
        exception_class: str,
        error: str,
        *,
        pointer: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        """Rows nothing more can fix in this run: status exception, each with an open exception."""
        stamp = now_iso()
        with self.store.transaction() as db:
            self._mark(db, [r.id for r in rows], "exception", error, stamp)
            for row in rows:
                record_exception(
                    db,
                    self.config,
                    exception_class=exception_class,
                    error=error,
                    outbox_id=row.id,
                    event_id=row.event_id,
                    system=row.system,
                    metric=row.metric,
                    pointer=pointer,
                    payload=row.payload,
                    details=details,
                )

    def note_conflict(self, row: OutboxRow, conflict: dict[str, str]) -> None:
        """The row was delivered to the best match; record the disagreement for someone to review."""
        with self.store.transaction() as db:
            record_exception(
                db,
                self.config,
                exception_class="identity_conflict",
                error="identifiers point at different Klaviyo profiles: "
                + ", ".join(f"{k} -> {v}" for k, v in conflict.items())
                + f"; delivered to {next(iter(conflict.values()))}",
                outbox_id=row.id,
                event_id=row.event_id,
                system=row.system,
                metric=row.metric,
                payload=row.payload,
                details={"profile_ids": sorted(set(conflict.values())), "by_identifier": conflict},
            )

    def counts(self, source: str | None = None) -> dict[str, int]:
        where, params = ("where system = ?", [source]) if source else ("", [])
        return {
            r["status"]: r["n"]
            for r in self.store.db.query(f"select status, count(*) as n from outbox {where} group by status", params)
        }
