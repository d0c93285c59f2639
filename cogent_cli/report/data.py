"""What the health report shows, read from the state file and the configuration."""

from __future__ import annotations

import importlib
import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from cogent_cli.config import EXCEPTION_CLASSES, SOURCE_SYSTEMS, Config
from cogent_cli.health import Health, collect_health, parse_time
from cogent_cli.state import Store
from cogent_cli.sync.exceptions import FIX_HINTS

SEVERITIES = ("error", "warning", "info")


@dataclass
class DailySeries:
    days: list[str]
    series: dict[str, list[float | None]]

    @property
    def points(self) -> int:
        return sum(v is not None for values in self.series.values() for v in values)


@dataclass
class AuditSection:
    audit: str
    run_id: int
    finished_at: str | None
    by_severity: dict[str, list[dict[str, Any]]]
    new: int
    fixed: int


@dataclass
class ReportData:
    workspace: str
    generated_at: str
    since: str
    volume: DailySeries
    latency: DailySeries
    exceptions_opened: DailySeries
    exceptions_resolved: DailySeries
    open_exceptions: list[dict[str, Any]]
    audits: list[AuditSection]
    health: Health
    operating: dict[str, Any] = field(default_factory=dict)


def _days(since: date, until: date) -> list[str]:
    return [(since + timedelta(days=n)).isoformat() for n in range((until - since).days + 1)]


def _daily(rows: list[tuple[str, str, float]], days: list[str], fill: float | None = 0) -> DailySeries:
    """rows of (day, series name, value) -> one value per day per series."""
    grouped: dict[str, dict[str, float]] = defaultdict(dict)
    for day, name, value in rows:
        grouped[name][day] = value
    return DailySeries(days, {name: [by_day.get(d, fill) for d in days] for name, by_day in sorted(grouped.items())})


def _volume(store: Store, since: str, days: list[str]) -> DailySeries:
    rows = store.db.query(
        "select substr(sent_at, 1, 10) as day, metric, count(*) as n from outbox "
        "where kind = 'event' and status = 'sent' and sent_at >= ? group by day, metric",
        [since],
    )
    return _daily([(r["day"], r["metric"] or "(none)", r["n"]) for r in rows], days)


def _latency(store: Store, since: str, days: list[str]) -> DailySeries:
    """Minutes from the source's business time to Klaviyo's acceptance, as daily percentiles."""
    samples: dict[str, list[float]] = defaultdict(list)
    for row in store.db.query(
        "select occurred_at, sent_at from outbox where kind = 'event' and status = 'sent' and sent_at >= ? "
        "and occurred_at is not null and backfill = 0",
        [since],
    ):
        sent, occurred = parse_time(row["sent_at"]), parse_time(row["occurred_at"])
        if sent and occurred:
            samples[sent.date().isoformat()].append(max((sent - occurred).total_seconds() / 60, 0.0))
    rows: list[tuple[str, str, float]] = []
    for day, values in samples.items():
        cuts = statistics.quantiles(values, n=100, method="inclusive") if len(values) > 1 else values * 99
        rows += [(day, "p50", round(cuts[49], 1)), (day, "p90", round(cuts[89], 1)), (day, "p99", round(cuts[98], 1))]
    return _daily(rows, days, fill=None)


def _exceptions_per_day(store: Store, column: str, since: str, days: list[str]) -> DailySeries:
    rows = store.db.query(
        f"select substr({column}, 1, 10) as day, owner, count(*) as n from sync_exceptions "
        f"where {column} >= ? group by day, owner",
        [since],
    )
    return _daily([(r["day"], r["owner"], r["n"]) for r in rows], days)


def _open_exceptions(store: Store, limit: int = 200) -> list[dict[str, Any]]:
    return [
        {**row, "fix": FIX_HINTS.get(row["class"], "")}
        for row in store.db.query(
            "select id, class, owner, system, metric, pointer, last_error, created_at from sync_exceptions "
            "where status = 'open' order by created_at limit ?",
            [limit],
        )
    ]


def _audits(store: Store) -> list[AuditSection]:
    sections = []
    latest = store.db.query(
        "select audit, max(id) as run_id from audit_runs where finished_at is not null group by audit order by audit"
    )
    for run in list(latest):
        findings = list(
            store.db.query("select * from audit_findings where run_id = ? order by severity, id", [run["run_id"]])
        )
        current = [f for f in findings if f["state"] != "fixed"]
        finished = next(store.db.query("select finished_at from audit_runs where id = ?", [run["run_id"]]))
        sections.append(
            AuditSection(
                audit=run["audit"],
                run_id=run["run_id"],
                finished_at=finished["finished_at"],
                by_severity={s: [f for f in current if f["severity"] == s] for s in SEVERITIES},
                new=sum(f["state"] == "new" for f in current),
                fixed=sum(f["state"] == "fixed" for f in findings),
            )
        )
    return sections


def _status_maps(config: Config) -> dict[str, dict[str, str]]:
    """Effective native status -> normalised status per source: the normaliser's defaults, then cogent.toml."""
    maps = {}
    for system in SOURCE_SYSTEMS:
        module = importlib.import_module(f"cogent_cli.normalise.{system}")
        defaults = getattr(module, "DEFAULT_STATUSES", {})
        merged = {**defaults, **config.mapping.status.get(system, {})}
        if merged:
            maps[system] = dict(sorted(merged.items()))
    return maps


def operating_documentation(store: Store, config: Config) -> dict[str, Any]:
    metrics = config.metrics
    triggers = {
        "despatched": f"shipment.despatched -> {metrics.shipment}"
        + (f" (+ {metrics.order_fulfilled} on the final shipment)" if metrics.emit_fulfilled_order else ""),
        "cancelled": f"order.cancelled -> {metrics.order_cancelled}",
    }
    status_rows = [
        {"system": system, "native": native, "normalised": normalised, "klaviyo": triggers.get(normalised, "no event")}
        for system, mapping in _status_maps(config).items()
        for native, normalised in mapping.items()
    ]
    seen = list(
        store.db.query(
            "select system, carrier_name, service_code, service_name, known, events, last_seen from ship_methods_seen "
            "order by known, events desc"
        )
    )
    return {
        "status_triggers": status_rows,
        "fixed_metrics": {
            "return.lodged / approved / received / restocked": ", ".join(
                [metrics.return_lodged, metrics.return_approved, metrics.return_received, metrics.return_restocked]
            ),
            "refund.processed": metrics.refund,
            "order.cancelled": metrics.order_cancelled,
            "stock.level_changed": "catalog variant inventory_quantity (sellable stock only)",
            "consent.changed": "subscribe / unsubscribe jobs",
        },
        "ship_methods": dict(sorted(config.mapping.ship_methods.items())),
        "ship_methods_seen": seen,
        "sellable_sites": config.stock.sellable_sites or ["(every site)"],
        "non_sellable_locations": config.stock.non_sellable_locations,
        "owners": {cls: config.owner_of(cls) for cls in EXCEPTION_CLASSES},
        "fix_hints": FIX_HINTS,
    }


def collect_report(store: Store, config: Config, since: date | None = None, now: datetime | None = None) -> ReportData:
    now = now or datetime.now(UTC)
    since = since or (now - timedelta(days=29)).date()
    days = _days(since, now.date())
    since_text = since.isoformat()
    return ReportData(
        workspace=config.workspace.name,
        generated_at=now.strftime("%Y-%m-%d %H:%M UTC"),
        since=since_text,
        volume=_volume(store, since_text, days),
        latency=_latency(store, since_text, days),
        exceptions_opened=_exceptions_per_day(store, "created_at", since_text, days),
        exceptions_resolved=_exceptions_per_day(store, "resolved_at", since_text, days),
        open_exceptions=_open_exceptions(store),
        audits=_audits(store),
        health=collect_health(store, config, now),
        operating=operating_documentation(store, config),
    )
