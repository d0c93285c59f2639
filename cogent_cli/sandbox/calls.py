"""What an operation handler receives, the registry of handlers, and cursor pagination."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from starlette.datastructures import URL
from starlette.responses import Response

from cogent_cli.klaviyo.spec import Operation
from cogent_cli.sandbox.filters import Condition, filter_for
from cogent_cli.sandbox.jsonapi import ApiError, invalid
from cogent_cli.sandbox.store import SandboxStore


@dataclass
class Call:
    operation: Operation
    path_params: dict[str, str]
    query: dict[str, Any]  # validated against the operation's query parameters
    body: Any
    store: SandboxStore
    url: URL
    # Seconds a bulk job reads `processing` before `complete` (`--job-seconds`).
    job_seconds: float = 0.0

    @property
    def base_url(self) -> str:
        return f"{self.url.scheme}://{self.url.netloc}"

    def filters(self) -> list[Condition]:
        return filter_for(self.operation, self.query.get("filter"))

    def additional_fields(self, resource: str) -> list[str]:
        return self.query.get(f"additional-fields[{resource}]", [])

    def data(self) -> dict[str, Any]:
        return self.body["data"]


Handler = Callable[[Call], Response]
HANDLERS: dict[str, Handler] = {}


def handles(*operation_ids: str) -> Callable[[Handler], Handler]:
    def register(handler: Handler) -> Handler:
        for operation_id in operation_ids:
            HANDLERS[operation_id] = handler
        return handler

    return register


def _encode_cursor(value: Any, rowid: int) -> str:
    return base64.urlsafe_b64encode(json.dumps([value, rowid]).encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[Any, int]:
    try:
        value, rowid = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        return value, int(rowid)
    except (ValueError, TypeError, binascii.Error):
        raise invalid(
            "The page cursor is not valid; use the links.next URL as given.", parameter="page[cursor]"
        ) from None


def paginate(
    call: Call,
    table: str,
    where: list[str],
    params: list[Any],
    *,
    default_sort: str,
    size: int,
    columns: dict[str, str] | None = None,
) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """One page of `table` under the conditions, ordered by `sort` (or the default), and its links.

    The cursor holds the last row's sort value and rowid, so rows written while a client pages
    through neither repeat nor go missing.
    """
    sort = call.query.get("sort") or default_sort
    descending = sort.startswith("-")
    column = (columns or {}).get(sort.lstrip("-"), sort.lstrip("-"))
    key = f"coalesce({column}, '')"
    clauses, values = list(where), list(params)
    cursor = call.query.get("page[cursor]")
    if cursor:
        last_value, last_rowid = _decode_cursor(cursor)
        comparison = "<" if descending else ">"
        clauses.append(f"({key} {comparison} ? or ({key} = ? and rowid {comparison} ?))")
        values += [last_value, last_value, last_rowid]
    direction = "desc" if descending else "asc"
    sql = (
        f"select *, rowid as _rowid, {key} as _sort from {table}"
        + (f" where {' and '.join(clauses)}" if clauses else "")
        + f" order by {key} {direction}, rowid {direction} limit ?"
    )
    rows = list(call.store.db.query(sql, [*values, size + 1]))
    links = {"self": str(call.url)}
    if len(rows) > size:
        rows = rows[:size]
        links["next"] = str(
            call.url.include_query_params(**{"page[cursor]": _encode_cursor(rows[-1]["_sort"], rows[-1]["_rowid"])})
        )
    return rows, links


def require_same_id(call: Call) -> None:
    """PATCH bodies must name the resource of the path."""
    body_id = call.data().get("id")
    path_id = next(iter(call.path_params.values()))
    if body_id != path_id:
        raise ApiError.one(
            409,
            f"The id in the body ('{body_id}') does not match the id in the path ('{path_id}').",
            pointer="/data/id",
        )
