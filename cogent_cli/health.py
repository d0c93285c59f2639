"""The integration's health at a glance, and the threshold breaches that `status`, alerts and the report share.

Breaches are owned by a team: source lag and quarantine by whoever owns invalid source payloads
(ops by default), queue age by whoever owns the rate budget (ecommerce by default), open exceptions
by the team that owns them.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from cogent_cli.config import SOURCE_SYSTEMS, Config
from cogent_cli.klaviyo.spec import operations
from cogent_cli.state import Store
from cogent_cli.sync.lanes import LANE_NAMES, UNSENT
from cogent_cli.sync.schedule import list_schedules


def parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _minutes(since: datetime | None, now: datetime) -> float | None:
    return None if since is None else round((now - since).total_seconds() / 60, 1)


@dataclass(frozen=True)
class SourceHealth:
    system: str
    last_received: dict[str, str | None]  # by route: pull, file, webhook
    newest_business_time: str | None
    lag_minutes: float | None
    quarantined: int


@dataclass(frozen=True)
class LaneHealth:
    lane: str
    depth: int
    oldest_enqueued_at: str | None
    oldest_age_minutes: float | None


@dataclass(frozen=True)
class ExceptionGroup:
    exception_class: str
    owner: str
    open: int
    oldest_created_at: str | None


@dataclass(frozen=True)
class Breach:
    key: str  # stable per incident, e.g. "lag:peoplevox"
    kind: str
    owner: str
    summary: str
    detail_command: str


@dataclass
class Health:
    generated_at: str
    sources: list[SourceHealth]
    lanes: list[LaneHealth]
    exceptions: list[ExceptionGroup]
    runs: list[dict[str, Any]]
    schedules: list[dict[str, Any]]
    rate_budget: dict[str, Any]
    breaches: list[Breach] = field(default_factory=list)

    teams: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """Everything, plus flat summaries that playbook checks and monitors can address by path."""
        data = asdict(self)
        data["healthy"] = not self.breaches
        data["open_exceptions_by_owner"] = self.open_by_owner()
        data["oldest_open_exception_minutes"] = self.oldest_exception_minutes()
        data["outbox_depth"] = {lane.lane: lane.depth for lane in self.lanes}
        data["outbox_oldest_minutes"] = {lane.lane: lane.oldest_age_minutes or 0 for lane in self.lanes}
        data["quarantined_total"] = sum(s.quarantined for s in self.sources)
        return data

    def open_by_owner(self) -> dict[str, int]:
        totals = dict.fromkeys(self.teams, 0)
        for group in self.exceptions:
            totals[group.owner] = totals.get(group.owner, 0) + group.open
        return totals

    def oldest_exception_minutes(self) -> dict[str, float]:
        now = parse_time(self.generated_at)
        ages = dict.fromkeys(self.teams, 0.0)
        for group in self.exceptions:
            age = _minutes(parse_time(group.oldest_created_at), now) if now else None
            ages[group.owner] = max(ages.get(group.owner, 0.0), age or 0.0)
        return ages


def _sources(store: Store, config: Config, now: datetime) -> list[SourceHealth]:
    db = store.db
    seen = {row["system"] for row in db.query("select distinct system from inbox")}
    systems = [s for s in SOURCE_SYSTEMS if s in seen or s in config.sources.enabled()]
    found = []
    for system in systems:
        routes = {
            row["route"]: row["last"]
            for row in db.query(
                "select route, max(received_at) as last from inbox where system = ? group by route", [system]
            )
        }
        newest = next(db.query("select max(occurred_at) as t from events where system = ?", [system]))["t"]
        quarantined = next(
            db.query("select count(*) as n from inbox where system = ? and status = 'quarantined'", [system])
        )["n"]
        found.append(
            SourceHealth(
                system=system,
                last_received={route: routes.get(route) for route in ("pull", "file", "webhook")},
                newest_business_time=newest,
                lag_minutes=_minutes(parse_time(newest), now),
                quarantined=quarantined,
            )
        )
    return found


def _lanes(store: Store, now: datetime) -> list[LaneHealth]:
    marks = ",".join("?" * len(UNSENT))
    rows = {
        row["lane"]: row
        for row in store.db.query(
            f"select lane, count(*) as depth, min(enqueued_at) as oldest from outbox "
            f"where status in ({marks}) group by lane",
            list(UNSENT),
        )
    }
    lanes = []
    for number, name in LANE_NAMES.items():
        row = rows.get(number)
        oldest = row["oldest"] if row else None
        lanes.append(LaneHealth(name, row["depth"] if row else 0, oldest, _minutes(parse_time(oldest), now)))
    return lanes


def _exceptions(store: Store) -> list[ExceptionGroup]:
    return [
        ExceptionGroup(row["class"], row["owner"], row["n"], row["oldest"])
        for row in store.db.query(
            "select class, owner, count(*) as n, min(created_at) as oldest from sync_exceptions "
            "where status = 'open' group by class, owner order by n desc"
        )
    ]


def _runs(store: Store, limit: int = 5) -> list[dict[str, Any]]:
    return [
        {
            "id": row["id"],
            "started_at": row["started_at"],
            "finished_at": row["finished_at"],
            "status": row["status"],
            "exit_status": row["exit_status"],
            "sent": json.loads(row["counts"] or "{}").get("sent"),
        }
        for row in store.db.query(
            "select id, started_at, finished_at, status, exit_status, counts from sync_runs order by id desc limit ?",
            [limit],
        )
    ]


def _rate_budget(store: Store, now: datetime) -> dict[str, Any]:
    """Requests of the last hour against each operation's hourly steady allowance; the busiest one counts."""
    since = (now - timedelta(hours=1)).isoformat()
    used: dict[str, int] = {}
    for row in store.db.query("select counts from sync_runs where started_at >= ?", [since]):
        for operation_id, count in json.loads(row["counts"] or "{}").get("klaviyo_requests", {}).items():
            used[operation_id] = used.get(operation_id, 0) + int(count)
    known = operations() if used else {}  # reading the spec is the slow part of `cogent status`
    shares = {op: round(count / (known[op].rate_limit.steady * 60), 4) for op, count in used.items() if op in known}
    busiest = max(shares, key=lambda op: shares[op], default=None)
    return {
        "requests_last_hour": sum(used.values()),
        "by_operation": used,
        "busiest_operation": busiest,
        "share_used": shares.get(busiest, 0.0) if busiest else 0.0,
    }


def _breaches(config: Config, health: Health) -> list[Breach]:
    limits = config.status
    source_owner = config.owner_of("source_payload_invalid")
    queue_owner = config.owner_of("rate_budget_exhausted")
    found = []
    for source in health.sources:
        limit = limits.lag_minutes.get(source.system, limits.max_lag_minutes)
        if source.lag_minutes is not None and source.lag_minutes > limit:
            found.append(
                Breach(
                    f"lag:{source.system}",
                    "source_lag",
                    source_owner,
                    f"{source.system}: newest fact is {source.lag_minutes:.0f} min old (limit {limit:.0f} min), "
                    f"since {source.newest_business_time}",
                    f"cogent pull {source.system}",
                )
            )
        if source.quarantined > limits.max_quarantined:
            found.append(
                Breach(
                    f"quarantine:{source.system}",
                    "quarantine",
                    source_owner,
                    f"{source.system}: {source.quarantined} payload(s) quarantined (limit {limits.max_quarantined})",
                    f"cogent inbox list --status quarantined --system {source.system}",
                )
            )
    for lane in health.lanes:
        if lane.oldest_age_minutes is not None and lane.oldest_age_minutes > limits.max_queue_age_minutes:
            found.append(
                Breach(
                    f"queue:{lane.lane}",
                    "queue_age",
                    queue_owner,
                    f"{lane.lane} lane: oldest undelivered item waiting {lane.oldest_age_minutes:.0f} min "
                    f"(limit {limits.max_queue_age_minutes:.0f} min), since {lane.oldest_enqueued_at}",
                    "cogent sync",
                )
            )
    for owner, count in health.open_by_owner().items():
        allowed = limits.max_open_exceptions.get(owner)
        if allowed is not None and count > allowed:
            oldest = min(
                (g.oldest_created_at for g in health.exceptions if g.owner == owner and g.oldest_created_at),
                default=None,
            )
            found.append(
                Breach(
                    f"exceptions:{owner}",
                    "open_exceptions",
                    owner,
                    f"{count} open exception(s) owned by {owner} (limit {allowed}), oldest since {oldest}",
                    f"cogent exceptions list --owner {owner}",
                )
            )
    return found


def collect_health(store: Store, config: Config, now: datetime | None = None) -> Health:
    now = now or datetime.now(UTC)
    health = Health(
        generated_at=now.isoformat(),
        sources=_sources(store, config, now),
        lanes=_lanes(store, now),
        exceptions=_exceptions(store),
        runs=_runs(store),
        schedules=[
            {"name": s.name, "cron": s.cron, "command": s.command, "next_run": s.next_run.isoformat()}
            for s in list_schedules(store, now)
        ],
        rate_budget=_rate_budget(store, now),
        teams=sorted({*config.owners.values(), *config.status.max_open_exceptions, *config.alerts} - {"default"}),
    )
    health.breaches = _breaches(config, health)
    return health
