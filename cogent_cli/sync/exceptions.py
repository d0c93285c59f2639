"""Sync exceptions: every failure that retries could not fix, kept with its class, owner, payload and
last error until someone resolves or replays it. Nothing is dropped.

Classes (owners come from `[owners]` in cogent.toml):

    validation_error       Klaviyo rejected a field (the JSON pointer says which)
    identity_conflict      identifiers of one customer point at different Klaviyo profiles
    unknown_sku            a stock change for a SKU the Klaviyo catalog does not have
    unmapped_ship_method   a despatch with a ship method missing from [mapping.ship_methods]
    rate_budget_exhausted  still throttled after the allowed waits, on every attempt
    auth_scope             the API key lacks a scope the operation needs
    source_payload_invalid the normalised event cannot be read or lacks what Klaviyo needs
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from functools import cache
from typing import Any, ClassVar, Self

from sqlite_utils import Database

from cogent_cli.config import EXCEPTION_CLASSES, Config
from cogent_cli.errors import CogentError, UsageError
from cogent_cli.state import Store


class SyncError(CogentError):
    pass


class MappingError(SyncError):
    """An event cannot become a Klaviyo operation under the current mapping."""

    def __init__(self, exception_class: str, message: str, *, pointer: str | None = None, hint: str | None = None):
        super().__init__(message, hint)
        self.exception_class = exception_class
        self.pointer = pointer


class ExceptionNotFoundError(UsageError):
    pass


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


class RowRecord:
    """A dataclass read from a table row: each field from its column (same name unless `COLUMNS`
    says otherwise), passed through its `CONVERT` function when it has one (JSON text, flags)."""

    __slots__ = ()
    COLUMNS: ClassVar[Mapping[str, str]] = {}
    CONVERT: ClassVar[Mapping[str, Callable[[Any], Any]]] = {}

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Self:
        columns, _conversions = _row_plan(cls)
        return cls.from_values([row[column] for column in columns])

    @classmethod
    def from_values(cls, values: Sequence[Any]) -> Self:
        """From a plain row whose columns are the fields in order: no look-ups by name, which add up
        over the tens of thousands of rows a wave claims."""
        _columns, conversions = _row_plan(cls)
        values = list(values)
        for index, convert in conversions:
            values[index] = convert(values[index])
        return cls(*values)


@cache
def _row_plan(cls: type[RowRecord]) -> tuple[tuple[str, ...], tuple[tuple[int, Callable[[Any], Any]], ...]]:
    names = [f.name for f in fields(cls)]  # type: ignore[arg-type]
    columns = tuple(cls.COLUMNS.get(name, name) for name in names)
    return columns, tuple((i, cls.CONVERT[name]) for i, name in enumerate(names) if name in cls.CONVERT)


@dataclass(frozen=True)
class ExceptionRecord(RowRecord):
    COLUMNS: ClassVar[Mapping[str, str]] = {"exception_class": "class"}
    CONVERT: ClassVar[Mapping[str, Callable[[Any], Any]]] = {
        "payload": lambda text: json.loads(text) if text else None,
        "details": lambda text: json.loads(text) if text else {},
    }

    id: int
    outbox_id: int | None
    event_id: str | None
    exception_class: str
    owner: str
    system: str | None
    metric: str | None
    pointer: str | None
    payload: Any
    last_error: str | None
    details: dict[str, Any]
    status: str
    created_at: str
    updated_at: str | None
    resolved_at: str | None
    note: str | None

    def to_json(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        data["class"] = data.pop("exception_class")
        return data


def record_exception(
    db: Database,
    config: Config,
    *,
    exception_class: str,
    error: str,
    outbox_id: int | None = None,
    event_id: str | None = None,
    system: str | None = None,
    metric: str | None = None,
    pointer: str | None = None,
    payload: Any = None,
    details: dict[str, Any] | None = None,
) -> int:
    """Open an exception, or refresh the open one of the same class for the same operation/event.

    Call inside the transaction that moves the outbox row, so the two never disagree."""
    if exception_class not in EXCEPTION_CLASSES:
        raise ValueError(f"unknown exception class {exception_class}")
    now = now_iso()
    where, params = ("outbox_id = ?", [outbox_id]) if outbox_id is not None else ("event_id = ?", [event_id])
    existing = list(
        db.query(
            f"select id from sync_exceptions where {where} and class = ? and status = 'open'",
            [*params, exception_class],
        )
    )
    values = {
        "last_error": error,
        "pointer": pointer,
        "payload": json.dumps(payload, default=str) if payload is not None else None,
        "details": json.dumps(details or {}, default=str),
        "updated_at": now,
    }
    if existing:
        db["sync_exceptions"].update(existing[0]["id"], values)
        return existing[0]["id"]
    return (
        db["sync_exceptions"]
        .insert(
            {
                "outbox_id": outbox_id,
                "event_id": event_id,
                "class": exception_class,
                "owner": config.owner_of(exception_class),
                "system": system,
                "metric": metric,
                "status": "open",
                "created_at": now,
                **values,
            }
        )
        .last_pk
    )


def list_exceptions(
    store: Store,
    *,
    owner: str | None = None,
    exception_class: str | None = None,
    source: str | None = None,
    since: datetime | None = None,
    status: str | None = "open",
    ids: list[int] | None = None,
) -> list[ExceptionRecord]:
    if exception_class is not None and exception_class not in EXCEPTION_CLASSES:
        raise UsageError(
            f"Unknown exception class {exception_class!r}", hint=f"Use one of: {', '.join(EXCEPTION_CLASSES)}."
        )
    clauses, params = ["1 = 1"], []
    for column, value in (("owner", owner), ("class", exception_class), ("system", source), ("status", status)):
        if value is not None:
            clauses.append(f"{column} = ?")
            params.append(value)
    if since is not None:
        clauses.append("created_at >= ?")
        params.append(since.astimezone(UTC).isoformat())
    if ids:
        clauses.append(f"id in ({','.join('?' * len(ids))})")
        params.extend(ids)
    rows = store.db.query(f"select * from sync_exceptions where {' and '.join(clauses)} order by id", params)
    return [ExceptionRecord.from_row(row) for row in rows]


def get_exception(store: Store, exception_id: int) -> ExceptionRecord:
    rows = list(store.db.query("select * from sync_exceptions where id = ?", [exception_id]))
    if not rows:
        raise ExceptionNotFoundError(
            f"No exception with id {exception_id}", hint="`cogent exceptions list --status all` shows every id."
        )
    return ExceptionRecord.from_row(rows[0])


def resolve_exception(store: Store, exception_id: int, note: str) -> ExceptionRecord:
    """Close an exception by hand (the fix happened elsewhere); its operation is not re-sent."""
    record = get_exception(store, exception_id)
    if record.status != "open":
        raise UsageError(
            f"Exception {exception_id} is already {record.status}",
            hint="Only open exceptions can be resolved; `cogent exceptions show ID` has its history.",
        )
    now = now_iso()
    with store.transaction() as db:
        db["sync_exceptions"].update(
            exception_id, {"status": "resolved", "resolved_at": now, "updated_at": now, "note": note}
        )
        if record.outbox_id is not None:
            db.execute(
                "update outbox set status = 'resolved', updated_at = ? where id = ? and status = 'exception'",
                [now, record.outbox_id],
            )
    return get_exception(store, exception_id)


# What to do about each class; shown in `cogent report` and the handover playbook.
FIX_HINTS: dict[str, str] = {
    "validation_error": "Klaviyo rejected the field at the pointer: fix the source data or the mapping, "
    "then `cogent replay ID`.",
    "identity_conflict": "Two Klaviyo profiles share this customer's identifiers: review them with "
    "`cogent audit klaviyo-profiles --export-merges merges.json`, merge, then resolve the exception.",
    "unknown_sku": "The catalog has no variant for this SKU: create it in Klaviyo (or fix the SKU in the "
    "source), then `cogent replay --class unknown_sku`.",
    "unmapped_ship_method": "Add the ship method to [mapping.ship_methods] in cogent.toml, then "
    "`cogent replay --class unmapped_ship_method`.",
    "rate_budget_exhausted": "Klaviyo kept throttling: spread schedules out or lower max_in_flight, then "
    "`cogent replay --class rate_budget_exhausted`.",
    "auth_scope": "The Klaviyo key lacks a scope: create a key with the scope named in the error, "
    "`cogent auth set klaviyo`, then `cogent replay --class auth_scope`.",
    "source_payload_invalid": "The source sent data cogent cannot use: check `cogent inbox show` for the "
    "payload, fix it at the source or in the mapping, then `cogent inbox retry`.",
}
