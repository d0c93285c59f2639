"""Alerts: one notification per incident (not per run) to the owning team's webhook or email command.

An incident opens when a breach is first seen, stays quiet while it persists, and resolves when a run
that evaluates it no longer sees it; if it comes back, it is a new incident and alerts again.
"""

from __future__ import annotations

import logging
import os
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import httpx

from cogent_cli.config import AlertTarget, Config, EnvRef
from cogent_cli.health import Breach, collect_health, parse_time
from cogent_cli.logs import redact, register_secret
from cogent_cli.state import Store

if TYPE_CHECKING:
    from cogent_cli.audits import AuditResult

log = logging.getLogger(__name__)
HEALTH_SCOPES = ("lag:", "quarantine:", "queue:", "exceptions:")


@dataclass(frozen=True)
class Delivery:
    key: str
    owner: str
    channel: str  # webhook | email | none
    ok: bool
    detail: str


def open_incidents(store: Store, breaches: Iterable[Breach], scopes: Iterable[str], now: datetime) -> list[Breach]:
    """Record what is breached now; returns the breaches whose incident has not been notified yet
    (new ones, and ones whose earlier notification failed).

    Open incidents within `scopes` (key prefixes this evaluation covers) that are no longer
    breached are resolved.
    """
    stamp = now.isoformat()
    current = {b.key: b for b in breaches}
    with store.transaction() as db:
        rows = {row["key"]: row for row in db.query("select * from incidents")}
        for key, breach in current.items():
            row = rows.get(key)
            if row is None or row["resolved_at"]:
                db["incidents"].upsert(
                    {
                        "key": key,
                        "kind": breach.kind,
                        "owner": breach.owner,
                        "summary": breach.summary,
                        "detail_command": breach.detail_command,
                        "opened_at": stamp,
                        "last_seen_at": stamp,
                        "notified_at": None,
                        "resolved_at": None,
                    },
                    pk="key",
                )
            else:
                db["incidents"].update(key, {"last_seen_at": stamp, "summary": breach.summary})
        prefixes = tuple(scopes)
        for key, row in rows.items():
            if key not in current and not row["resolved_at"] and key.startswith(prefixes):
                db["incidents"].update(key, {"resolved_at": stamp})
        unnotified = {row["key"] for row in db.query("select key from incidents where notified_at is null")}
    return [breach for key, breach in current.items() if key in unnotified]


def _target(config: Config, owner: str) -> AlertTarget | None:
    return config.alerts.get(owner) or config.alerts.get("default")


def _url(target: AlertTarget) -> str | None:
    url = os.environ.get(target.webhook_url.env) if isinstance(target.webhook_url, EnvRef) else target.webhook_url
    register_secret(url)
    return url


def message(config: Config, breach: Breach, opened_at: datetime) -> str:
    return (
        f"[cogent · {config.workspace.name}] {breach.summary}\n"
        f"Owner: {breach.owner} · Since: {opened_at:%Y-%m-%d %H:%M} UTC\n"
        f"Details: {breach.detail_command}"
    )


def notify(
    store: Store,
    config: Config,
    breaches: Iterable[Breach],
    now: datetime | None = None,
    transport: httpx.BaseTransport | None = None,
) -> list[Delivery]:
    """Send one alert per newly opened incident; failures are reported, never raised."""
    now = now or datetime.now(UTC)
    deliveries = []
    for breach in breaches:
        target = _target(config, breach.owner)
        opened = next(store.db.query("select opened_at from incidents where key = ?", [breach.key]), {})
        text = message(config, breach, parse_time(opened.get("opened_at")) or now)
        sent: list[Delivery] = []
        url = _url(target) if target else None
        if url:
            try:
                with httpx.Client(transport=transport, timeout=10.0) as client:
                    client.post(url, json={"text": text}).raise_for_status()
                sent.append(Delivery(breach.key, breach.owner, "webhook", True, "delivered"))
            except httpx.HTTPError as exc:
                sent.append(
                    Delivery(breach.key, breach.owner, "webhook", False, redact(f"{type(exc).__name__}: {exc}"))
                )
        if target and target.email_command:
            try:
                done = subprocess.run(
                    target.email_command,
                    shell=True,
                    input=text,
                    text=True,
                    capture_output=True,
                    timeout=60,
                    check=False,
                )
                ok = done.returncode == 0
                detail = "delivered" if ok else f"exit {done.returncode}: {done.stderr.strip()[:200]}"
            except (OSError, subprocess.SubprocessError) as exc:
                ok, detail = False, f"{type(exc).__name__}: {exc}"
            sent.append(Delivery(breach.key, breach.owner, "email", ok, redact(detail)))
        if not sent:
            sent.append(
                Delivery(breach.key, breach.owner, "none", False, f"no [alerts.{breach.owner}] or [alerts.default]")
            )
        if any(d.ok for d in sent):
            store.db["incidents"].update(breach.key, {"notified_at": now.isoformat()})
        for delivery in sent:
            if not delivery.ok:
                log.warning(
                    "alert %s for %s not delivered by %s: %s",
                    delivery.key,
                    delivery.owner,
                    delivery.channel,
                    delivery.detail,
                )
        deliveries.extend(sent)
    return deliveries


def raise_alerts(
    store: Store,
    config: Config,
    breaches: list[Breach],
    scopes: Iterable[str],
    now: datetime | None = None,
    transport: httpx.BaseTransport | None = None,
) -> list[Delivery]:
    now = now or datetime.now(UTC)
    return notify(store, config, open_incidents(store, breaches, scopes, now), now, transport)


def audit_breaches(results: Sequence[AuditResult]) -> tuple[list[Breach], list[str]]:
    """Error-level findings as breaches, and the scopes of the audits that ran (a fixed finding closes)."""
    breaches = [
        Breach(
            f"audit:{finding.audit}:{finding.key}",
            "audit_finding",
            finding.owner,
            f"{finding.audit}: {finding.title} ({finding.count} affected), first seen {finding.first_seen}",
            f"cogent audit {finding.audit}",
        )
        for result in results
        if result.ok
        for finding in result.findings
        if finding.severity == "error"
    ]
    return breaches, [f"audit:{result.audit.name}:" for result in results if result.ok]


def alert_after_run(
    store: Store,
    config: Config,
    audits: Sequence[AuditResult] = (),
    now: datetime | None = None,
    transport: httpx.BaseTransport | None = None,
) -> list[Delivery]:
    """What a command calls after its work: status-threshold breaches, plus the error-level findings of
    the audits it ran. Nothing is recorded or sent when the workspace configures no [alerts]."""
    if not config.alerts:
        return []
    now = now or datetime.now(UTC)
    deliveries = raise_alerts(store, config, collect_health(store, config, now).breaches, HEALTH_SCOPES, now, transport)
    if audits:
        breaches, scopes = audit_breaches(audits)
        deliveries += raise_alerts(store, config, breaches, scopes, now, transport)
    return deliveries
