"""What an audit is and what it reports: definitions, the issues an audit yields, resolved findings."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel

if TYPE_CHECKING:
    from cogent_cli.audits.context import AuditContext

Severity = Literal["info", "warning", "error"]
SEVERITIES: tuple[Severity, ...] = ("info", "warning", "error")
SEVERITY_RANK: dict[str, int] = {name: rank for rank, name in enumerate(SEVERITIES)}
FindingState = Literal["new", "persisting", "fixed"]
BUSINESS_KEYS = ("order_number", "sku", "profile_id", "email")


class NoParams(BaseModel):
    """Audits without settings of their own."""

    model_config = {"extra": "forbid"}


@dataclass(frozen=True)
class Issue:
    """One problem as an audit sees it; the runner turns it into a `Finding` (severity, owner, state).

    `key` identifies the problem across runs (so a later run can say new, persisting or fixed);
    `count` is how many things it affects (orders, profiles, units), which severity thresholds compare against.
    """

    key: str
    title: str
    count: int = 1
    severity: Severity | None = None
    order_number: str | None = None
    sku: str | None = None
    profile_id: str | None = None
    email: str | None = None
    evidence: dict[str, Any] = field(default_factory=dict)
    fix: str | None = None
    # An exception class from [owners] in cogent.toml, when this issue belongs to a different team.
    owner_class: str | None = None


@dataclass(frozen=True)
class Finding:
    audit: str
    key: str
    title: str
    severity: Severity
    owner: str
    count: int
    state: FindingState
    fix: str
    order_number: str | None = None
    sku: str | None = None
    profile_id: str | None = None
    email: str | None = None
    evidence: dict[str, Any] = field(default_factory=dict)
    first_seen: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "audit": self.audit,
            "key": self.key,
            "state": self.state,
            "severity": self.severity,
            "owner": self.owner,
            "title": self.title,
            "count": self.count,
            "order_number": self.order_number,
            "sku": self.sku,
            "profile_id": self.profile_id,
            "email": self.email,
            "evidence": self.evidence,
            "fix": self.fix,
            "first_seen": self.first_seen,
        }


AuditFunction = Callable[["AuditContext"], Iterable[Issue]]


@dataclass(frozen=True)
class Audit:
    """A registered audit: built-in or from a workspace's `audits/` folder, Python or SQL."""

    name: str
    description: str
    run: AuditFunction
    # The owning team, or an exception class from [owners] whose team owns it.
    owner: str | None = None
    owner_class: str | None = None
    # Default severity rules on an issue's `count`; cogent.toml [audits.NAME] may override them.
    warning_from: int | None = 1
    error_from: int | None = None
    fix: str = ""
    params: type[BaseModel] = NoParams
    path: Path | None = None
    kind: Literal["python", "sql"] = "python"


def audit(
    *,
    name: str,
    description: str,
    owner: str | None = None,
    owner_class: str | None = None,
    warning_from: int | None = 1,
    error_from: int | None = None,
    fix: str = "",
    params: type[BaseModel] = NoParams,
) -> Callable[[AuditFunction], Audit]:
    """Declare an audit; the loader finds every `Audit` defined at the top level of a module in `audits/`.

    Example:
        @audit(name="ship-methods", description="...", owner_class="unmapped_ship_method", error_from=50)
        def ship_methods(ctx: AuditContext) -> Iterator[Issue]: ...
    """

    def wrap(function: AuditFunction) -> Audit:
        return Audit(
            name=name,
            description=description,
            run=function,
            owner=owner,
            owner_class=owner_class,
            warning_from=warning_from,
            error_from=error_from,
            fix=fix,
            params=params,
            path=Path(function.__code__.co_filename),
        )

    return wrap
