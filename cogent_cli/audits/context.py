"""What an audit reads: the state file (mirror, events, outbox), the configuration and its own settings."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ValidationError
from sqlite_utils import Database

from cogent_cli.audits.profiles import DedupeRules, mailbox
from cogent_cli.config import AuditSettings, Config
from cogent_cli.errors import CogentError
from cogent_cli.events import NormalisedEvent, parse_event

log = logging.getLogger(__name__)

# Keys under which Klaviyo event properties carry the storefront order number.
ORDER_PROPERTY_KEYS = ("OrderId", "order_number", "OrderNumber", "order_id", "$order_id")


class MirrorMissingError(CogentError):
    def __init__(self) -> None:
        super().__init__(
            "This audit compares with Klaviyo, but the Klaviyo mirror is empty",
            hint="Run `cogent pull klaviyo` first (it copies profiles, catalog variants and events into the state file).",
        )


@dataclass(frozen=True)
class MirrorWindow:
    """The span of time the mirrored Klaviyo events cover: facts outside it cannot be judged."""

    start: str
    end: str


@dataclass
class AuditContext:
    db: Database
    config: Config
    settings: AuditSettings
    params: BaseModel
    now: datetime
    since: datetime | None = None

    def has_table(self, name: str) -> bool:
        return self.db[name].exists()

    def rows(self, sql: str, params: list[Any] | dict[str, Any] | None = None) -> Iterator[dict[str, Any]]:
        yield from self.db.query(sql, params or [])

    def events(self, *event_types: str) -> Iterator[tuple[dict[str, Any], NormalisedEvent]]:
        """Normalised facts of these types (all when none given), in arrival order, within `--since`.

        A row that no longer parses is skipped with a warning: audits report on facts, and the inbox
        commands are where a broken row is repaired.
        """
        if not self.has_table("events"):
            return
        where, args = [], []
        if event_types:
            where.append(f"event_type in ({', '.join('?' for _ in event_types)})")
            args.extend(event_types)
        if self.since is not None:
            where.append("occurred_at >= ?")
            args.append(self.since.strftime("%Y-%m-%dT%H:%M:%S"))
        clause = f"where {' and '.join(where)}" if where else ""
        for row in self.db.query(f"select rowid as _rowid, * from events {clause} order by rowid", args):
            try:
                yield row, parse_event(row["body"])
            except (ValidationError, ValueError) as exc:
                log.warning("events row %s does not parse as a normalised event: %s", row["event_id"], exc)

    def mirror_window(self) -> MirrorWindow:
        """Raises `MirrorMissingError` when `cogent pull klaviyo` has never completed."""
        if not self.has_table("mirror_cursors"):
            raise MirrorMissingError()
        pulled = list(self.db.query("select updated_at from mirror_cursors where stream = 'metrics'"))
        if not pulled:
            raise MirrorMissingError()
        start = next(self.db.query("select min(window_start) as s from mirror_cursors where stream like 'events:%'"))[
            "s"
        ]
        return MirrorWindow(start=start or "", end=pulled[0]["updated_at"])

    def klaviyo_events(self, *metric_names: str) -> Iterator[dict[str, Any]]:
        """Mirrored Klaviyo events of these metric names, with `properties` decoded."""
        if not metric_names:
            return
        marks = ", ".join("?" for _ in metric_names)
        args: list[Any] = list(metric_names)
        clause = ""
        if self.since is not None:
            clause = " and datetime >= ?"
            args.append(self.since.strftime("%Y-%m-%dT%H:%M:%S"))
        for row in self.db.query(f"select * from klaviyo_events where metric_name in ({marks}){clause}", args):
            row["properties"] = json.loads(row["properties"] or "{}")
            yield row

    def identity_rules(self) -> DedupeRules:
        identity = self.config.identity
        return DedupeRules(
            strip_plus_address=identity.strip_plus_address,
            dotless_domains=tuple(identity.dotless_domains),
            default_region=identity.default_region,
        )

    def profiles_by_email(self) -> dict[str, list[dict[str, Any]]]:
        """Mirrored profiles keyed by mailbox (the identity rules' normalised email)."""
        found: dict[str, list[dict[str, Any]]] = {}
        rules = self.identity_rules()
        for row in self.db.query("select * from klaviyo_profiles where email is not null"):
            key = mailbox(row["email"], rules)
            if key is not None:
                row["properties"] = json.loads(row["properties"] or "{}")
                found.setdefault(key, []).append(row)
        return found

    def email_keys(self, emails: list[str]) -> dict[str, str | None]:
        rules = self.identity_rules()
        return {email: mailbox(email, rules) for email in emails}


def order_number_of(properties: dict[str, Any]) -> str | None:
    for key in ORDER_PROPERTY_KEYS:
        value = properties.get(key)
        if value not in (None, ""):
            return str(value)
    return None
