"""The inbox: every source payload, whatever its route, stored raw before it is acknowledged.

`Inbox.receive` writes the raw body in its own transaction and only then returns, so a caller (a
webhook handler, a pull connector, `cogent ingest`) acknowledges only what is safely stored. A second
delivery with the same (system, idempotency_key) is recognised and not stored again.
`Inbox.normalise_pending` turns pending rows into `events` rows with the normalisers registered in
`cogent_cli.normalise`; a row that fails is quarantined with a precise reason (field, value, rule) and
never holds up the rows beside it. `events` are written with INSERT OR IGNORE on `event_id`, so the same
fact is never stored twice, whichever route brought it and however often it is re-normalised.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, Literal, TypeVar
from urllib.parse import parse_qsl

from cogent_cli.collector import fewer_collections
from cogent_cli.config import SOURCE_SYSTEMS, Config
from cogent_cli.errors import CogentError, UsageError
from cogent_cli.events import NormalisedEvent
from cogent_cli.normalise import json_text
from cogent_cli.normalise.base import (
    NormaliseContext,
    NormaliseError,
    Normaliser,
    Record,
    ShipMethodsSeen,
    load_normalisers,
    tenant_for,
)
from cogent_cli.normalise.ledger import ShipmentWrites
from cogent_cli.state import Store

log = logging.getLogger(__name__)

ROUTES = ("pull", "file", "webhook")
STATUSES = ("pending", "normalised", "quarantined")
InboxStatus = Literal["pending", "normalised", "quarantined"]
NORMALISE_BATCH = 2000
T = TypeVar("T")
# (kind, idempotency key, raw body, the body already decoded or None)
Payload = tuple[str, str, str, "Record | None"]


class InboxError(UsageError):
    """A payload cannot be accepted into the inbox as given."""


class InboxRowNotFoundError(CogentError):
    pass


@dataclass(frozen=True)
class Receipt:
    id: int
    duplicate: bool


@dataclass(frozen=True)
class InboxItem:
    """One payload to receive; `Inbox.receive_many` stores many in one transaction."""

    system: str
    route: str
    kind: str
    idempotency_key: str
    body: str
    headers: Mapping[str, str] | None = None
    received_at: datetime | None = None


@dataclass(frozen=True)
class InboxRow:
    id: int
    system: str
    route: str
    kind: str
    idempotency_key: str
    received_at: str
    headers: dict[str, str]
    body: str
    status: str
    reason: str | None
    attempts: int
    normalised_at: str | None


@dataclass
class NormaliseSummary:
    processed: int = 0
    normalised: int = 0
    quarantined: int = 0
    events_written: int = 0
    events_duplicate: int = 0
    quarantined_ids: list[int] = field(default_factory=list)

    def add(self, other: NormaliseSummary) -> None:
        self.processed += other.processed
        self.normalised += other.normalised
        self.quarantined += other.quarantined
        self.events_written += other.events_written
        self.events_duplicate += other.events_duplicate
        self.quarantined_ids.extend(other.quarantined_ids)


def utc_now() -> datetime:
    return datetime.now(UTC)


@lru_cache(maxsize=1024)
def _iso(value: datetime) -> str:
    # Cached: every event of a delivery repeats its receipt time. Equal instants give the same text.
    if value.tzinfo is None:
        raise InboxError(f"received_at {value.isoformat()} has no time zone", hint="Pass a timezone-aware datetime.")
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _check(item: InboxItem) -> None:
    if item.system not in SOURCE_SYSTEMS:
        raise InboxError(f"Unknown system {item.system!r}", hint=f"Use one of: {', '.join(SOURCE_SYSTEMS)}.")
    if item.route not in ROUTES:
        raise InboxError(f"Unknown route {item.route!r}", hint=f"Use one of: {', '.join(ROUTES)}.")
    if not item.kind:
        raise InboxError("A payload needs a kind", hint="Name the kind of payload, e.g. despatch_summary.")
    if not item.idempotency_key:
        raise InboxError(
            f"A {item.system} payload arrived without an idempotency key",
            hint="Derive one from the source's natural key, or hash the body.",
        )


_INSERT = (
    "INSERT INTO inbox (system, route, kind, idempotency_key, received_at, headers, body, status, attempts)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, 'pending', 0) ON CONFLICT (system, idempotency_key) DO NOTHING"
)


def _insert_row(item: InboxItem, now: str) -> tuple[str | None, ...]:
    """An item's values in `_INSERT`'s column order; items without a receipt time were received `now`."""
    return (
        item.system,
        item.route,
        item.kind,
        item.idempotency_key,
        _iso(item.received_at) if item.received_at else now,
        json.dumps(dict(item.headers or {})),
        item.body,
    )


# Set by `cogent ingest` on a CSV row whose cell count differs from its header's.
CSV_ERROR_KEY = "__csv_error__"


def decode_body(body: str, normaliser: Normaliser | None) -> Record:
    """The raw body as a record: a JSON object, or for form kinds also a query string."""
    text = body.strip()
    if normaliser is not None and normaliser.body == "form" and not text.startswith("{"):
        return dict(parse_qsl(text.lstrip("?"), keep_blank_values=True))
    try:
        record = json_text.loads(text)
    except ValueError as exc:
        raise NormaliseError("body", text[:40], f"not valid JSON ({exc})") from None
    return checked_record(record, text)


def checked_record(record: Any, body: str) -> Record:
    """A decoded body as a record: a JSON object that is not a malformed CSV row."""
    if not isinstance(record, dict):
        raise NormaliseError("body", body.strip()[:40], "must be a JSON object")
    if CSV_ERROR_KEY in record:
        raise NormaliseError("row", record.pop(CSV_ERROR_KEY), "malformed CSV row")
    return record


class Inbox:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.conn: sqlite3.Connection = store.db.conn

    # -- receiving ---------------------------------------------------------------------------------

    def receive(
        self,
        system: str,
        route: str,
        kind: str,
        idempotency_key: str,
        body: str | bytes,
        headers: Mapping[str, str] | None = None,
        received_at: datetime | None = None,
    ) -> Receipt:
        """Store one raw payload (committed before returning); a repeated key is a duplicate."""
        text = body.decode("utf-8", errors="replace") if isinstance(body, bytes) else body
        item = InboxItem(system, route, kind, idempotency_key, text, headers, received_at)
        return self.receive_many([item])[0]

    def receive_many(self, items: Iterable[InboxItem]) -> list[Receipt]:
        """Store many payloads in one transaction; receipts come back in the same order."""
        batch = list(items)
        for item in batch:
            _check(item)
        now = _iso(utc_now())
        receipts: list[Receipt] = []
        with self.store.transaction():
            for item in batch:
                cursor = self.conn.execute(_INSERT, _insert_row(item, now))
                if cursor.rowcount:
                    receipts.append(Receipt(int(cursor.lastrowid or 0), False))
                else:
                    existing = self.conn.execute(
                        "SELECT id FROM inbox WHERE system = ? AND idempotency_key = ?",
                        (item.system, item.idempotency_key),
                    ).fetchone()
                    receipts.append(Receipt(int(existing[0]), True))
        return receipts

    def store_many(self, items: Iterable[InboxItem]) -> int:
        """Store many payloads in one transaction; returns how many were new (the rest were duplicates)."""
        batch = list(items)
        for item in batch:
            _check(item)
        now = _iso(utc_now())
        rows = [_insert_row(item, now) for item in batch]
        with self.store.transaction():
            before = self.conn.total_changes
            self.conn.executemany(_INSERT, rows)
            return self.conn.total_changes - before

    # -- reading -----------------------------------------------------------------------------------

    def get(self, row_id: int) -> InboxRow:
        row = self.conn.execute("SELECT * FROM inbox WHERE id = ?", (row_id,)).fetchone()
        if row is None:
            raise InboxRowNotFoundError(f"No inbox row {row_id}", hint="`cogent inbox list` shows the rows that exist.")
        return self._row(row)

    def list(
        self, status: str | None = None, system: str | None = None, kind: str | None = None, limit: int | None = 100
    ) -> list[InboxRow]:
        if status is not None and status not in STATUSES:
            raise InboxError(f"Unknown inbox status {status!r}", hint=f"Use one of: {', '.join(STATUSES)}.")
        clauses, params = self._filters(status, system, kind)
        sql = "SELECT * FROM inbox" + (" WHERE " + " AND ".join(clauses) if clauses else "") + " ORDER BY id"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        return [self._row(row) for row in self.conn.execute(sql, params)]

    def counts(self) -> dict[str, dict[str, int]]:
        """Rows per system and status."""
        result: dict[str, dict[str, int]] = {}
        for system, status, count in self.conn.execute(
            "SELECT system, status, count(*) FROM inbox GROUP BY system, status ORDER BY system"
        ):
            result.setdefault(system, {})[status] = count
        return result

    @staticmethod
    def _filters(status: str | None, system: str | None, kind: str | None) -> tuple[list[str], list[Any]]:
        clauses: list[str] = []
        params: list[Any] = []
        for column, value in (("status", status), ("system", system), ("kind", kind)):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        return clauses, params

    def _row(self, row: sqlite3.Row | tuple[Any, ...]) -> InboxRow:
        (row_id, system, route, kind, key, received_at, headers, body, status, reason, attempts, normalised_at) = row
        return InboxRow(
            row_id, system, route, kind, key, received_at, json.loads(headers or "{}"), body, status, reason,
            attempts, normalised_at,
        )  # fmt: skip

    # -- normalising -------------------------------------------------------------------------------

    def retry(self, ids: Sequence[int] | None = None, *, all_quarantined: bool = False) -> list[int]:
        """Put rows back to pending (the quarantined ones, or the given ids); returns their ids."""
        if ids:
            missing = [i for i in ids if not self.conn.execute("SELECT 1 FROM inbox WHERE id = ?", (i,)).fetchone()]
            if missing:
                raise InboxRowNotFoundError(
                    f"No inbox row {', '.join(map(str, missing))}",
                    hint="`cogent inbox list` shows the rows that exist.",
                )
            chosen = list(ids)
        elif all_quarantined:
            chosen = [r[0] for r in self.conn.execute("SELECT id FROM inbox WHERE status = 'quarantined' ORDER BY id")]
        else:
            raise InboxError("Name the rows to retry", hint="Pass inbox ids, or --all for every quarantined row.")
        with self.store.transaction():
            self.conn.executemany(
                "UPDATE inbox SET status = 'pending', reason = NULL WHERE id = ?", [(i,) for i in chosen]
            )
        return chosen

    def store_and_normalise(
        self,
        config: Config,
        system: str,
        route: str,
        payloads: Sequence[Payload],
        *,
        headers: Mapping[str, str] | None = None,
        received_at: datetime | None = None,
    ) -> tuple[int, NormaliseSummary]:
        """Store one delivery's payloads and normalise the new ones, all in one transaction.

        Each payload is (kind, idempotency key, raw body, the body already decoded or None). Nothing is
        acknowledged before the commit, so a crash leaves neither the raw rows nor their events; keys
        already stored (or repeated within the batch) are duplicates and are not normalised again.
        Returns how many payloads were new, and what normalising them gave.
        """
        _check(InboxItem(system, route, "-", "-", ""))
        for kind, key, _, _ in payloads:
            if not kind or not key:
                _check(InboxItem(system, route, kind, key, ""))
        registry = load_normalisers()
        received = _iso(received_at or utc_now())
        headers_json = json.dumps(dict(headers or {}))
        batch = _Batch(self, config, registry, {system: tenant_for(config, system)})
        with self.store.transaction():
            seen = {
                key
                for (key,) in self.conn.execute(
                    "SELECT idempotency_key FROM inbox WHERE system = ?"
                    " AND idempotency_key IN (SELECT value FROM json_each(?))",
                    (system, json.dumps([key for _, key, _, _ in payloads])),
                )
            }
            next_id = self.conn.execute("SELECT coalesce(max(id), 0) + 1 FROM inbox").fetchone()[0]
            rows: list[tuple[Any, ...]] = []
            records: list[Record | None] = []
            stored: dict[int, tuple[Any, ...]] = {}
            for kind, key, body, record in payloads:
                if key in seen:
                    continue
                seen.add(key)
                rows.append((next_id, system, route, kind, received, body, headers_json))
                records.append(record)
                stored[next_id] = (system, route, kind, key, received, headers_json, body)
                next_id += 1
            batch.run(rows, records, stored=stored)
        return len(rows), batch.summary

    def normalise_pending(
        self,
        config: Config,
        ids: Iterable[int] | None = None,
        *,
        progress: Callable[[int], None] | None = None,
        batch_size: int = NORMALISE_BATCH,
    ) -> NormaliseSummary:
        """Normalise pending rows (all, or only `ids`) in batches, one transaction per batch."""
        registry = load_normalisers()
        tenants = {system: tenant_for(config, system) for system in SOURCE_SYSTEMS}
        summary = NormaliseSummary()
        with fewer_collections():
            for rows in self._pending_batches(ids, batch_size, registry, config):
                batch = _Batch(self, config, registry, tenants)
                with self.store.transaction():
                    batch.run(rows)
                summary.add(batch.summary)
                if progress is not None:
                    progress(len(rows))
        return summary

    def _pending_batches(
        self,
        ids: Iterable[int] | None,
        batch_size: int,
        registry: Mapping[tuple[str, str], Normaliser],
        config: Config,
    ) -> Iterator[list[tuple[Any, ...]]]:
        columns = "id, system, route, kind, received_at, body, headers"
        if ids is not None:
            wanted = sorted(set(ids))
            for start in range(0, len(wanted), batch_size):
                chunk = wanted[start : start + batch_size]
                marks = ",".join("?" * len(chunk))
                yield self.conn.execute(
                    f"SELECT {columns} FROM inbox WHERE status = 'pending' AND id IN ({marks}) ORDER BY id", chunk
                ).fetchall()
            return
        after = 0
        while True:
            rows = self.conn.execute(
                f"SELECT {columns} FROM inbox WHERE status = 'pending' AND id > ? ORDER BY id LIMIT ?",
                (after, batch_size),
            ).fetchall()
            if not rows:
                return
            if len(rows) == batch_size:
                rows = rows[: open_group_start(rows, lambda row: _group_of(row, registry, config))]
            after = rows[-1][0]
            yield rows


def open_group_start(rows: Sequence[T], group_of: Callable[[T], tuple[Any, ...] | None]) -> int:
    """Where a trailing run of rows of one group begins, so a batch can leave it for the next batch
    (which may hold the rest of the group); the whole batch when its last row is in no group, or when
    the batch is one group."""
    last = group_of(rows[-1])
    if last is None:
        return len(rows)
    cut = len(rows)
    while cut > 0 and group_of(rows[cut - 1]) == last:
        cut -= 1
    return cut or len(rows)


def group_of_record(normaliser: Normaliser | None, record: Record | None, config: Config) -> tuple[Any, ...] | None:
    """(kind, group key) of a record of a grouped kind; None when it belongs to no group."""
    if normaliser is None or not normaliser.grouped or record is None:
        return None
    try:
        return (normaliser.kind, normaliser.group_key(record, config))  # type: ignore[misc]
    except Exception:
        return (normaliser.kind, None)


def _group_of(
    row: tuple[Any, ...], registry: Mapping[tuple[str, str], Normaliser], config: Config
) -> tuple[Any, ...] | None:
    normaliser = registry.get((row[1], row[3]))
    if normaliser is None or not normaliser.grouped:
        return None
    try:
        record = decode_body(row[5], normaliser)
    except NormaliseError:
        return (row[1], normaliser.kind, None)
    return (row[1], *(group_of_record(normaliser, record, config) or ()))


def _collect(
    fn: Callable[[NormaliseContext], Iterable[NormalisedEvent] | None], ctx: NormaliseContext
) -> list[NormalisedEvent]:
    return list(fn(ctx) or ())


class _WroteThenFailed(Exception):
    """A record or group failed after writing to the state; its writes cannot be undone alone."""


class _Batch:
    """One transaction's worth of normalisation: each record or group gives all its events and state
    changes, or a quarantine that undoes them. Most records fail before writing anything, so there is
    no savepoint per record unless one is needed (see `savepoints`)."""

    def __init__(
        self,
        inbox: Inbox,
        config: Config,
        registry: Mapping[tuple[str, str], Normaliser],
        tenants: Mapping[str, str],
    ) -> None:
        self.inbox = inbox
        self.conn = inbox.conn
        self.config = config
        self.registry = registry
        self.tenants = tenants
        self.now = _iso(utc_now())
        # Off until a record fails after writing to the state directly: then the batch is run again
        # with a savepoint per record, so only the failing record's writes are undone.
        self.savepoints = False
        # Rows whose normaliser crashed, logged once even when the batch is normalised again.
        self.crashed: set[int] = set()
        self.start()

    def start(self) -> None:
        """Forget what normalising the batch gave so far."""
        self.summary = NormaliseSummary()
        self.done: list[tuple[str, str | None, str | None, int]] = []
        self.event_rows: list[tuple[Any, ...]] = []
        self.contexts: dict[tuple[Any, ...], NormaliseContext] = {}
        self.ship_methods = ShipMethodsSeen()
        self.shipment_writes = ShipmentWrites()

    def context(self, row: tuple[Any, ...]) -> NormaliseContext:
        """The context of a row; rows delivered alike share one (it is only valid during the call)."""
        row_id, system, route, kind, received_at = row[:5]
        headers = row[6] if len(row) > 6 else None
        key = (system, route, kind, received_at, headers)
        ctx = self.contexts.get(key)
        if ctx is None:
            ctx = self.contexts[key] = NormaliseContext(
                config=self.config,
                conn=self.conn,
                system=system,
                kind=kind,
                route=route,
                inbox_id=row_id,
                received_at=datetime.fromisoformat(received_at),
                tenant=self.tenants[system],
                headers=json.loads(headers or "{}"),
                ship_methods=self.ship_methods,
                shipment_writes=self.shipment_writes,
            )
        ctx.inbox_id = row_id
        return ctx

    def run(
        self,
        rows: Sequence[tuple[Any, ...]],
        records: Sequence[Record | None] | None = None,
        *,
        stored: Mapping[int, tuple[Any, ...]] | None = None,
    ) -> None:
        """Normalise rows (id, system, route, kind, received_at, body, headers); `records` may hold their
        bodies already decoded. With `stored` (id -> the inbox columns), the rows are new and are inserted
        with their outcome instead of updated."""
        self.conn.execute("SAVEPOINT batch")
        try:
            self.normalise(rows, records)
        except _WroteThenFailed:
            self.conn.execute("ROLLBACK TO batch")
            self.start()
            self.savepoints = True
            # Decoded afresh: a normaliser may have changed the records it was given.
            self.normalise(rows)
        self.conn.execute("RELEASE batch")
        self.flush(stored)

    def normalise(self, rows: Sequence[tuple[Any, ...]], records: Sequence[Record | None] | None = None) -> None:
        groups: dict[tuple[str, str, str], list[tuple[tuple[Any, ...], Any]]] = {}
        for index, row in enumerate(rows):
            self.summary.processed += 1
            normaliser = self.registry.get((row[1], row[3]))
            decoded = records[index] if records is not None else None
            try:
                record = decode_body(row[5], normaliser) if decoded is None else checked_record(decoded, row[5])
                if normaliser is None:
                    raise NormaliseError("kind", row[3], self._unknown_kind(row[1]))
                if not normaliser.grouped:
                    self.attempt([row], lambda ctx, n=normaliser, r=record: n.normalise(r, ctx))  # type: ignore[misc]
                    continue
                ctx = self.context(row)
                parsed = self.guarded(ctx, normaliser.parse_row, record, ctx)  # type: ignore[arg-type]
                key = self.guarded(ctx, normaliser.group_key, record, self.config)  # type: ignore[arg-type]
            except NormaliseError as exc:
                self.quarantine(row, exc)
                continue
            groups.setdefault((row[1], row[3], str(key)), []).append((row, parsed))
        for (system, kind, _), members in groups.items():
            normaliser = self.registry[(system, kind)]
            parsed_rows = [parsed for _, parsed in members]
            self.attempt(
                [row for row, _ in members],
                lambda ctx, n=normaliser, p=parsed_rows: n.build_group(p, ctx),  # type: ignore[misc]
            )

    def _unknown_kind(self, system: str) -> str:
        known = sorted(kind for (sys_name, kind) in self.registry if sys_name == system)
        return f"no {system} normaliser for this kind (known: {', '.join(known) or 'none'})"

    def guarded(self, ctx: NormaliseContext, fn: Callable[..., Any], *args: Any) -> Any:
        """Run normaliser code; anything but a NormaliseError is a bug, reported and quarantined."""
        try:
            return fn(*args)
        except NormaliseError:
            raise
        except Exception as exc:
            if ctx.inbox_id not in self.crashed:
                self.crashed.add(ctx.inbox_id)
                log.exception("%s normaliser failed on inbox row %s", ctx.kind, ctx.inbox_id)
            raise NormaliseError("(record)", None, f"normaliser error {type(exc).__name__}: {exc}") from None

    def attempt(
        self, rows: Sequence[tuple[Any, ...]], fn: Callable[[NormaliseContext], Iterable[NormalisedEvent] | None]
    ) -> None:
        """Normalise rows as one unit: all their events and state changes, or a quarantine."""
        ctx = self.context(rows[0])
        if self.savepoints:
            self.conn.execute("SAVEPOINT record")
        changes = self.conn.total_changes
        try:
            events = self.guarded(ctx, _collect, fn, ctx)
            self.write_events(events, ctx.inbox_id)
        except NormaliseError as exc:
            if self.savepoints:
                self.conn.execute("ROLLBACK TO record")
                self.conn.execute("RELEASE record")
            elif self.conn.total_changes != changes:
                raise _WroteThenFailed from None
            self.shipment_writes.drop_unit()
            self.ship_methods.drop_unit()
            for row in rows:
                self.quarantine(row, exc)
            return
        if self.savepoints:
            self.conn.execute("RELEASE record")
        self.shipment_writes.keep_unit()
        self.ship_methods.keep_unit()
        for row in rows:
            self.summary.normalised += 1
            self.done.append(("normalised", None, self.now, row[0]))

    def write_events(self, events: Sequence[NormalisedEvent], inbox_id: int) -> None:
        """Queue the events' rows; `flush` writes them with the row statuses, in the same transaction."""
        rows = []
        for event in events:
            customer = event.customer
            rows.append(
                (
                    event.event_id,
                    event.event_type,
                    event.source.system,
                    event.source.tenant,
                    _iso(event.occurred_at),
                    _iso(event.received_at) if event.received_at else None,
                    event.order_number,
                    customer.email if customer else None,
                    inbox_id,
                    # The same JSON as json.dumps(dump_event(event)), serialised by pydantic-core.
                    event.model_dump_json(exclude_unset=True),
                )
            )
        self.event_rows.extend(rows)

    def quarantine(self, row: tuple[Any, ...], exc: NormaliseError) -> None:
        self.summary.quarantined += 1
        self.summary.quarantined_ids.append(row[0])
        self.done.append(("quarantined", exc.reason, None, row[0]))

    def flush(self, stored: Mapping[int, tuple[Any, ...]] | None = None) -> None:
        if stored is not None:
            self.conn.executemany(
                "INSERT INTO inbox (id, system, route, kind, idempotency_key, received_at, headers, body, status,"
                " reason, normalised_at, attempts) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1)",
                [(row_id, *stored[row_id], status, reason, at) for status, reason, at, row_id in self.done],
            )
        before = self.conn.total_changes
        self.conn.executemany(
            "INSERT OR IGNORE INTO events (event_id, event_type, system, tenant, occurred_at, received_at,"
            " order_number, email, inbox_id, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            self.event_rows,
        )
        written = self.conn.total_changes - before
        self.ship_methods.flush(self.conn)
        self.shipment_writes.flush(self.conn)
        self.summary.events_written += written
        self.summary.events_duplicate += len(self.event_rows) - written
        if stored is None:
            self.conn.executemany(
                "UPDATE inbox SET status = ?, reason = ?, normalised_at = ?, attempts = attempts + 1 WHERE id = ?",
                self.done,
            )
