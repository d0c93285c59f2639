"""Running audits: grade each issue (severity, owner), compare with the last run, store everything."""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError
from sqlite_utils import Database

from cogent_cli.audits.context import AuditContext
from cogent_cli.audits.loader import AuditLoadError, Registry, error_line
from cogent_cli.audits.model import SEVERITY_RANK, Audit, Finding, Issue, Severity
from cogent_cli.config import AuditSettings, Config, format_validation_errors
from cogent_cli.errors import CogentError, ConfigError
from cogent_cli.state import Store

log = logging.getLogger(__name__)
FINDING_FIELDS = tuple(f.name for f in fields(Finding))


@dataclass
class AuditResult:
    audit: Audit
    run_id: int | None
    started_at: str
    findings: list[Finding] = field(default_factory=list)
    fixed: list[Finding] = field(default_factory=list)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def counts(self) -> dict[str, int]:
        by_severity = Counter(f.severity for f in self.findings)
        by_state = Counter(f.state for f in self.findings)
        return {
            "info": by_severity["info"],
            "warning": by_severity["warning"],
            "error": by_severity["error"],
            "new": by_state["new"],
            "persisting": by_state["persisting"],
            "fixed": len(self.fixed),
        }


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def grade(issue: Issue, audit: Audit, settings: AuditSettings) -> Severity:
    """The workspace's word first: a fixed severity, then its thresholds, then the audit's own judgement."""
    if settings.severity is not None:
        return settings.severity
    if settings.warning_from is None and settings.error_from is None and issue.severity is not None:
        return issue.severity
    custom = settings.warning_from is not None or settings.error_from is not None
    warning_from = settings.warning_from if custom else audit.warning_from
    error_from = settings.error_from if custom else audit.error_from
    if error_from is not None and issue.count >= error_from:
        return "error"
    if warning_from is not None and issue.count >= warning_from:
        return "warning"
    return "info"


def owner_of(issue: Issue, audit: Audit, settings: AuditSettings, config: Config) -> str:
    if settings.owner:
        return settings.owner
    owner_class = issue.owner_class or audit.owner_class
    if owner_class:
        return config.owner_of(owner_class)
    return audit.owner or "ecommerce"


def settings_for(config: Config, audit: Audit) -> tuple[AuditSettings, Any]:
    settings = config.audits.get(audit.name, AuditSettings())
    try:
        params = audit.params.model_validate(settings.params)
    except ValidationError as exc:
        problems = [f"audits.{audit.name}.params.{p}" for p in format_validation_errors(exc)]
        raise ConfigError(f"cogent.toml [audits.{audit.name}] has bad params:", problems=problems) from None
    return settings, params


def check_settings(config: Config, registry: Registry) -> None:
    unknown = sorted(set(config.audits) - set(registry.audits))
    if unknown:
        raise ConfigError(
            f"cogent.toml has settings for unknown audit(s): {', '.join(unknown)}",
            hint=f"Known audits: {', '.join(sorted(registry.audits))}. Fix the [audits.NAME] section names.",
        )


class AuditRunner:
    def __init__(self, store: Store, config: Config, registry: Registry) -> None:
        self.store = store
        self.config = config
        self.registry = registry
        check_settings(config, registry)

    def run(
        self,
        names: Iterable[str],
        since: datetime | None = None,
        progress: Callable[[str], None] | None = None,
    ) -> list[AuditResult]:
        """Run each audit in turn; one that fails is recorded as failed and the others still run."""
        results = []
        for name in names:
            audit = self.registry.get(name)
            if progress:
                progress(name)
            results.append(self.run_one(audit, since))
        return results

    def enabled(self) -> list[str]:
        return [
            name
            for name, a in sorted(self.registry.audits.items())
            if self.config.audits.get(name, AuditSettings()).enabled
        ]

    def run_one(self, audit: Audit, since: datetime | None = None) -> AuditResult:
        started = _now()
        settings, params = settings_for(self.config, audit)
        ctx = AuditContext(
            db=self.store.db, config=self.config, settings=settings, params=params, now=datetime.now(UTC), since=since
        )
        try:
            issues = list(audit.run(ctx))
        except AuditLoadError as exc:
            return self._failed(audit, started, since, exc.message)
        except CogentError as exc:
            return self._failed(audit, started, since, f"{exc.message}. {exc.hint or ''}".strip())
        except Exception as exc:
            log.debug("audit %s failed", audit.name, exc_info=True)
            where = audit.path
            line = error_line(audit.path, exc) if audit.path else None
            location = f"{where}:{line}" if line else str(where)
            return self._failed(audit, started, since, f"{location}: {type(exc).__name__}: {exc}")
        return self._store(audit, settings, issues, started, since)

    def _previous(self, audit: str, since: datetime | None) -> tuple[dict[str, dict[str, Any]], int | None]:
        since_text = since.isoformat() if since else None
        rows = list(
            self.store.db.query(
                "select id from audit_runs where audit = ? and status = 'ok' and since is ? order by id desc limit 1",
                [audit, since_text],
            )
        )
        if not rows:
            return {}, None
        run_id = rows[0]["id"]
        previous = self.store.db.query("select * from audit_findings where run_id = ? and state != 'fixed'", [run_id])
        return {row["key"]: row for row in previous}, run_id

    def _store(
        self, audit: Audit, settings: AuditSettings, issues: list[Issue], started: str, since: datetime | None
    ) -> AuditResult:
        previous, _ = self._previous(audit.name, since)
        findings: list[Finding] = []
        seen: set[str] = set()
        for issue in issues:
            if issue.key in seen:
                continue
            seen.add(issue.key)
            before = previous.get(issue.key)
            findings.append(
                Finding(
                    audit=audit.name,
                    key=issue.key,
                    title=issue.title,
                    severity=grade(issue, audit, settings),
                    owner=owner_of(issue, audit, settings, self.config),
                    count=issue.count,
                    state="persisting" if before else "new",
                    fix=issue.fix or audit.fix,
                    order_number=issue.order_number,
                    sku=issue.sku,
                    profile_id=issue.profile_id,
                    email=issue.email,
                    evidence=issue.evidence,
                    first_seen=before["first_seen"] if before else started,
                )
            )
        findings.sort(key=lambda f: (-SEVERITY_RANK[f.severity], -f.count, f.key))
        fixed = [
            Finding(
                audit=audit.name,
                key=row["key"],
                title=row["title"],
                severity=row["severity"],
                owner=row["owner"],
                count=row["count"],
                state="fixed",
                fix=row["fix"] or "",
                order_number=row["order_number"],
                sku=row["sku"],
                profile_id=row["profile_id"],
                email=row["email"],
                evidence=json.loads(row["evidence"] or "{}"),
                first_seen=row["first_seen"],
            )
            for key, row in previous.items()
            if key not in seen
        ]
        result = AuditResult(audit=audit, run_id=None, started_at=started, findings=findings, fixed=fixed)
        with self.store.transaction() as db:
            result.run_id = _insert_run(db, audit, started, since, "ok", result.counts())
            db.conn.executemany(
                f"insert into audit_findings (run_id, {', '.join(FINDING_FIELDS)}) "
                f"values (:run_id, {', '.join(':' + name for name in FINDING_FIELDS)})",
                (
                    {**f.to_dict(), "run_id": result.run_id, "evidence": json.dumps(f.evidence, default=str)}
                    for f in findings + fixed
                ),
            )
        return result

    def _failed(self, audit: Audit, started: str, since: datetime | None, error: str) -> AuditResult:
        with self.store.transaction() as db:
            run_id = _insert_run(db, audit, started, since, "failed", {}, error)
        return AuditResult(audit=audit, run_id=run_id, started_at=started, error=error)


def _insert_run(
    db: Database,
    audit: Audit,
    started: str,
    since: datetime | None,
    status: str,
    counts: dict[str, int],
    error: str | None = None,
) -> int:
    row = {
        "audit": audit.name,
        "started_at": started,
        "finished_at": _now(),
        "status": status,
        "error": error,
        "since": since.isoformat() if since else None,
        "counts": json.dumps(counts),
    }
    return int(db["audit_runs"].insert(row).last_pk)


def reached(results: list[AuditResult], fail_on: Severity) -> bool:
    """Whether any current (not fixed) finding is at or above the failing severity."""
    floor = SEVERITY_RANK[fail_on]
    return any(SEVERITY_RANK[f.severity] >= floor for r in results for f in r.findings)
