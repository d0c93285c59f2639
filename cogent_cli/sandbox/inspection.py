"""What "Klaviyo" received, for a consultant: recent events, profiles with their consent, counters.

Served under /sandbox/... (no API key, no rate limit, no faults) and read by `cogent sandbox events|profiles`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlite_utils import Database
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from cogent_cli.errors import UsageError
from cogent_cli.sandbox.store import DB_FILE

if TYPE_CHECKING:
    from cogent_cli.sandbox.app import SandboxState

DEFAULT_LIMIT = 50
TABLES = (
    "profiles",
    "metrics",
    "events",
    "subscriptions",
    "suppressions",
    "catalog_items",
    "catalog_variants",
    "back_in_stock_subscriptions",
    "jobs",
)


def open_data(data_dir: Path) -> Database:
    """The sandbox data of a folder, for reading; a clear error if there is none yet."""
    path = data_dir / DB_FILE
    if not path.exists():
        raise UsageError(
            f"No sandbox data in {data_dir}.",
            hint=f"Start the sandbox with `cogent sandbox serve --data {data_dir}` and send it something first.",
        )
    return Database(path)


def list_events(db: Database, metric: str | None = None, limit: int = DEFAULT_LIMIT) -> list[dict[str, Any]]:
    """Most recent first: when, metric, whose profile, unique_id, value and properties."""
    where, params = ("where e.metric_name = ?", [metric]) if metric else ("", [])
    rows = db.query(
        "select e.time, e.metric_name as metric, p.email, p.phone_number, p.external_id, e.profile_id,"
        " e.unique_id, e.value, e.value_currency, e.properties, e.received_at"
        f" from events e left join profiles p on p.id = e.profile_id {where}"
        " order by e.rowid desc limit ?",
        [*params, limit],
    )
    return [{**row, "properties": json.loads(row["properties"] or "{}")} for row in rows]


def list_profiles(db: Database, search: str | None = None, limit: int = DEFAULT_LIMIT) -> list[dict[str, Any]]:
    """Most recently updated first, with email consent, suppressions and event count."""
    where, params = "", []
    if search:
        where = "where p.email like ? or p.phone_number like ? or p.external_id like ? or p.id = ?"
        params = [f"%{search.lower()}%", f"%{search}%", f"%{search}%", search]
    rows = db.query(
        "select p.id, p.email, p.phone_number, p.external_id, p.first_name, p.last_name, p.updated,"
        " (select consent from subscriptions s where s.profile_id = p.id and s.channel = 'email'"
        "   and s.purpose = 'marketing') as email_consent,"
        " (select consent from subscriptions s where s.profile_id = p.id and s.channel = 'sms'"
        "   and s.purpose = 'marketing') as sms_consent,"
        " (select group_concat(reason) from suppressions x where x.profile_id = p.id and x.list_id = '')"
        "   as suppressed,"
        " (select count(*) from events e where e.profile_id = p.id) as events"
        f" from profiles p {where} order by p.updated desc, p.rowid desc limit ?",
        [*params, limit],
    )
    return list(rows)


def counts(db: Database) -> dict[str, int]:
    return {table: db[table].count for table in TABLES if db[table].exists()}


def _limit(request: Request) -> int:
    try:
        return max(1, min(int(request.query_params.get("limit", DEFAULT_LIMIT)), 10_000))
    except ValueError:
        return DEFAULT_LIMIT


def inspection_routes(state: SandboxState) -> list[Route]:
    db = state.store.db

    async def events(request: Request) -> JSONResponse:
        return JSONResponse(list_events(db, request.query_params.get("metric"), _limit(request)))

    async def profiles(request: Request) -> JSONResponse:
        return JSONResponse(list_profiles(db, request.query_params.get("search"), _limit(request)))

    async def stats(_: Request) -> JSONResponse:
        return JSONResponse({"counts": counts(db), "requests": dict(sorted(state.stats.items()))})

    return [
        Route("/sandbox/events", events),
        Route("/sandbox/profiles", profiles),
        Route("/sandbox/stats", stats),
    ]
