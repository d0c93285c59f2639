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
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

from pydantic import ValidationError
from pydantic_core import to_json
from sqlite_utils import Database

from cogent_cli.config import Config
from cogent_cli.events import NormalisedEvent, parse_event
from cogent_cli.normalise.json_text import loads as json_loads
from cogent_cli.state import Store
from cogent_cli.sync.exceptions import MappingError, RowRecord, now_iso, record_exception
from cogent_cli.sync.lanes import UNSENT
from cogent_cli.sync.mapping import Mapped, Mapper, Op

POSITION_KEY = "sync.events_position"
# Events mapped per transaction. The outbox's op_key and event_id indexes take random keys, so each
# transaction dirties index pages all over a large outbox: bigger chunks share those page writes.
READ_CHUNK = 10_000
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
# Plain SQL: sqlite-utils' insert re-reads the schema on every call.
_INSERT_SQL = (
    f"insert or ignore into outbox ({', '.join(_INSERT_COLUMNS)}) values ({', '.join('?' * len(_INSERT_COLUMNS))})"
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


# Not frozen: a frozen dataclass's __init__ costs several times more, and a run builds one per operation.
@dataclass(slots=True)
class OutboxRow(RowRecord):
    # orjson (with json's tolerance): a wave decodes tens of thousands of payloads.
    CONVERT: ClassVar[Mapping[str, Callable[[Any], Any]]] = {"payload": json_loads, "backfill": bool}

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
    import_job: str | None


@dataclass
class _Queued:
    """One operation of a mapped event, waiting to be inserted."""

    event: NormalisedEvent
    rowid: int
    op: Op
    backfill: bool

    @property
    def op_key(self) -> str:
        return f"{self.event.event_id}:{self.op.suffix}"


def _chunks(values: list[Any], size: int = 500) -> Iterator[list[Any]]:
    """Slices small enough for one `in (...)` list (SQLite caps bound parameters)."""
    for start in range(0, len(values), size):
        yield values[start : start + size]


def _marks(values: list[Any]) -> str:
    return ",".join("?" * len(values))


def _payload_json(payload: dict[str, Any]) -> str:
    # pydantic-core's encoder: several times faster than json.dumps on the payloads of a large queue.
    return to_json(payload, fallback=str).decode()


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

    def history_cutoff(self, now: datetime) -> datetime:
        """Events older than this are history: queued in the backfill lane with Klaviyo's backfill flag."""
        return now - timedelta(hours=self.config.sync.backfill_after_hours)

    @staticmethod
    def is_historical(event: NormalisedEvent, cutoff: datetime) -> bool:
        return event.source.transport == "backfill" or event.occurred_at < cutoff

    def enqueue_new(self, now: datetime | None = None, limit: int | None = None) -> EnqueueSummary:
        """Map every event after the stored position into outbox rows, a chunk per transaction."""
        cutoff = self.history_cutoff(now or datetime.now(UTC))
        total = EnqueueSummary()
        while limit is None or total.read < limit:
            size = READ_CHUNK if limit is None else min(READ_CHUNK, limit - total.read)
            with self.store.transaction() as db:
                stored = db.conn.execute("select value from meta where key = ?", [POSITION_KEY]).fetchone()
                rows = db.conn.execute(
                    "select rowid, event_id, system, body from events where rowid > ? order by rowid limit ?",
                    [int(stored[0]) if stored else 0, size],
                ).fetchall()
                if not rows:
                    break
                total.add(self._enqueue_rows(db, rows, cutoff=cutoff, force_backfill=False))
                db.conn.execute(
                    "insert into meta (key, value) values (?, ?) on conflict (key) do update set value = excluded.value",
                    [POSITION_KEY, str(rows[-1][0])],
                )
        return total

    def enqueue_backfill(self, since: datetime, now: datetime | None = None) -> EnqueueSummary:
        """Queue every event since `since` that has no outbox row yet as history (backfill flag set).

        Events already queued or delivered keep their rows: Klaviyo would dedupe a re-send anyway."""
        cutoff = self.history_cutoff(now or datetime.now(UTC))
        total = EnqueueSummary()
        last = 0
        while True:
            with self.store.transaction() as db:
                rows = db.conn.execute(
                    "select rowid, event_id, system, body from events where rowid > ? and occurred_at >= ? "
                    "and event_id not in (select event_id from outbox) order by rowid limit ?",
                    [last, since.astimezone(UTC).isoformat().replace("+00:00", "Z"), READ_CHUNK],
                ).fetchall()
                if not rows:
                    break
                total.add(self._enqueue_rows(db, rows, cutoff=cutoff, force_backfill=True))
                last = rows[-1][0]
        return total

    def _enqueue_rows(
        self, db: Database, rows: list[tuple[int, str, str, str]], *, cutoff: datetime, force_backfill: bool
    ) -> EnqueueSummary:
        """Map a chunk of events (each body parsed once) and insert their operations together."""
        summary = EnqueueSummary(read=len(rows))
        queued: list[_Queued] = []
        for rowid, event_id, system, body in rows:
            try:
                event = parse_event(body)
            except (ValidationError, ValueError) as exc:
                self._park(db, event_id, rowid, system, None, "source_payload_invalid", str(exc)[:2000], None, None)
                summary.exceptions += 1
                continue
            backfill = force_backfill or self.is_historical(event, cutoff)
            try:
                mapped = self.mapper.map(event, backfill=backfill)
            except MappingError as exc:
                self._park(
                    db,
                    event.event_id,
                    rowid,
                    event.source.system,
                    event.event_type,
                    exc.exception_class,
                    str(exc),
                    exc.pointer,
                    event,
                )
                summary.exceptions += 1
                continue
            if mapped.skipped:
                summary.skipped[mapped.skipped] += 1
            queued.extend(_Queued(event, rowid, op, backfill) for op in mapped.ops)
        inserted = self._insert_ops(db, queued)
        summary.enqueued += inserted
        summary.duplicates += len(queued) - inserted
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

    def _claim_clv(self, db: Database, claims: list[tuple[Op, str]]) -> None:
        """The first event of a metric per order takes the Placed Order's unique_id (CLV netting)."""
        if not claims:
            return
        db.conn.executemany(
            "insert or ignore into clv_claims (order_key, metric, event_id) values (?, ?, ?)",
            [(op.clv_unique_id, op.metric, event_id) for op, event_id in claims],
        )
        holders = {
            (order_key, metric): event_id
            for chunk in _chunks(sorted({op.clv_unique_id for op, _ in claims}))
            for order_key, metric, event_id in db.conn.execute(
                f"select order_key, metric, event_id from clv_claims where order_key in ({_marks(chunk)})", chunk
            )
        }
        for op, event_id in claims:
            netted = holders[(op.clv_unique_id, op.metric)] == event_id
            if netted:
                op.payload["unique_id"] = op.clv_unique_id
            op.payload["properties"]["ClvNetted"] = netted

    def _apply_stock(self, db: Database, changes: list[tuple[Op, str]], *, apply: bool) -> set[int]:
        """Fold sellable stock changes, in order, into the per-site table; each op carries its SKU's
        total at that point. Returns the ids of the ops whose change was not applied."""
        levels: dict[str, dict[str, tuple[int, str]]] = {}
        for chunk in _chunks(sorted({op.stock.sku for op, _ in changes if op.stock})):
            for sku, site, available, as_of in db.conn.execute(
                f"select sku, site, available, as_of from sellable_stock where sku in ({_marks(chunk)})", chunk
            ):
                levels.setdefault(sku, {})[site] = (available, as_of)
        changed: dict[tuple[str, str], tuple[int, str, str]] = {}
        unapplied: set[int] = set()
        for op, event_id in changes:
            change = op.stock
            assert change is not None
            sites = levels.setdefault(change.sku, {})
            if apply:
                current = sites.get(change.site)
                if current and _parse_time(current[1]) > _parse_time(change.as_of):
                    unapplied.add(id(op))  # an older snapshot arriving late must not overwrite a newer one
                    continue
                if change.available is not None:
                    available = change.available
                elif current is not None:
                    available = current[0] + (change.delta or 0)
                else:
                    unapplied.add(id(op))  # a delta without a known base would invent a quantity
                    continue
                sites[change.site] = (available, change.as_of)
                changed[(change.sku, change.site)] = (available, change.as_of, event_id)
            op.payload["inventory_quantity"] = sum(max(quantity or 0, 0) for quantity, _ in sites.values())
        if changed:
            db.conn.executemany(
                "insert into sellable_stock (sku, site, available, as_of, event_id) values (?, ?, ?, ?, ?) "
                "on conflict (sku, site) do update set available = excluded.available, as_of = excluded.as_of, "
                "event_id = excluded.event_id",
                [(sku, site, *values) for (sku, site), values in changed.items()],
            )
        return unapplied

    def _finish_ops(self, db: Database, ops: list[tuple[Op, str]], *, apply_stock: bool) -> set[int]:
        """Grant CLV claims and fold stock changes; returns the ids of the ops not to queue."""
        self._claim_clv(db, [(op, event_id) for op, event_id in ops if op.clv_unique_id])
        return self._apply_stock(db, [(op, event_id) for op, event_id in ops if op.stock], apply=apply_stock)

    def _insert_ops(self, db: Database, queued: list[_Queued]) -> int:
        """Insert operations with one statement (duplicates ignored); returns how many are new."""
        with_effects = [q for q in queued if q.op.clv_unique_id or q.op.stock]
        keys = [q.op_key for q in with_effects]
        # Already queued: its claim or stock change must not be applied twice.
        existing = {
            key
            for chunk in _chunks(keys)
            for (key,) in db.conn.execute(f"select op_key from outbox where op_key in ({_marks(chunk)})", chunk)
        }
        skipped = {id(q.op) for q in with_effects if q.op_key in existing}
        skipped |= self._finish_ops(
            db, [(q.op, q.event.event_id) for q in with_effects if q.op_key not in existing], apply_stock=True
        )
        now = now_iso()
        cursor = db.conn.executemany(
            _INSERT_SQL,
            [
                (
                    q.op_key,
                    q.event.event_id,
                    q.rowid,
                    q.op.kind,
                    q.op.lane,
                    q.event.source.system,
                    q.event.event_type,
                    q.op.metric,
                    q.event.order_number,
                    q.op.stage,
                    q.event.occurred_at.isoformat(),
                    _payload_json(q.op.payload),
                    int(q.backfill),
                    "pending",
                    now,
                    now,
                )
                for q in queued
                if id(q.op) not in skipped
            ],
        )
        return max(cursor.rowcount, 0)

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
        backfill = bool(row["backfill"]) or (
            row["kind"] == "mapping" and self.is_historical(event, self.history_cutoff(datetime.now(UTC)))
        )
        mapped: Mapped = self.mapper.map(event, backfill=backfill)
        now = now_iso()
        queued = []
        for op in mapped.ops:
            entry = _Queued(event, row["event_rowid"], op, backfill)
            existing = next(db.query("select id, status from outbox where op_key = ?", [entry.op_key]), None)
            if existing is None:
                if self._insert_ops(db, [entry]):
                    queued.append(next(db.query("select id from outbox where op_key = ?", [entry.op_key]))["id"])
            elif existing["status"] in ("exception", "resolved") or existing["id"] == outbox_id:
                # The claim and the stock table already hold this event's effect: read, do not re-apply.
                self._finish_ops(db, [(op, event.event_id)], apply_stock=False)
                db["outbox"].update(
                    existing["id"],
                    {
                        "payload": _payload_json(op.payload),
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
            select {", ".join(f"o.{f.name}" for f in fields(OutboxRow))} from outbox o
            where {" and ".join(clauses)}
              and (o.order_key is null or o.enqueued_at <= ? or not exists (
                    select 1 from outbox p
                    where p.order_key = o.order_key and p.kind = o.kind and p.stage < o.stage
                      and p.status in ({marks})))
            order by o.lane, o.id
            limit ?
        """
        with self.store.transaction() as db:
            rows = [OutboxRow.from_values(row) for row in db.conn.execute(sql, [*params, cutoff, limit])]
            stamp = now_iso()
            for chunk in _chunks([r.id for r in rows]):
                db.conn.execute(
                    f"update outbox set status = 'in_flight', run_id = ?, attempts = attempts + 1, updated_at = ? "
                    f"where id in ({_marks(chunk)})",
                    [run_id, stamp, *chunk],
                )
        return rows

    def mark(self, ids: Iterable[int], status: str, error: str | None = None, *, import_job: str | None = None) -> None:
        """Set the rows' status (and error); `import_job` names the profile import job they went in."""
        ids = list(ids)
        if not ids:
            return
        with self.store.transaction() as db:
            self._mark(db, ids, status, error, now_iso(), import_job)

    def forget_import_jobs(self, ids: Iterable[int]) -> None:
        """The rows' import jobs ended without delivering them: they are sent again as any others."""
        ids = list(ids)
        with self.store.transaction() as db:
            for chunk in _chunks(ids):
                db.conn.execute(f"update outbox set import_job = null where id in ({_marks(chunk)})", chunk)

    @staticmethod
    def _mark(
        db: Database, ids: list[int], status: str, error: str | None, stamp: str, import_job: str | None = None
    ) -> None:
        sent_at = stamp if status in ("sent", "superseded") else None
        for chunk in _chunks(ids):
            db.conn.execute(
                f"update outbox set status = ?, last_error = coalesce(?, last_error), updated_at = ?, "
                f"sent_at = coalesce(?, sent_at), import_job = coalesce(?, import_job) where id in ({_marks(chunk)})",
                [status, error, stamp, sent_at, import_job, *chunk],
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
