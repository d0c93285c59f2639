"""`cogent pull SYSTEM`: read a source system's records into the inbox, then normalise them.

Each stream of a connector is read page by page. A page's raw records are stored in the inbox in one
transaction, and only then is the stream's cursor advanced to the end of that page, so a run that
stops anywhere (crash, Ctrl-C, a source outage) resumes at the first page not yet stored, and a page
read twice only meets inbox duplicates. Progress goes to an optional callback; the library never prints.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx

from cogent_cli.connectors.base import Connector, Page, RawRecord
from cogent_cli.connectors.scend import DropFolder
from cogent_cli.cursors import all_cursors, get_cursor, set_cursor
from cogent_cli.errors import UsageError
from cogent_cli.inbox import Inbox, InboxItem, NormaliseSummary
from cogent_cli.ingest import record_key
from cogent_cli.normalise.base import load_normalisers
from cogent_cli.workspace import Workspace

log = logging.getLogger(__name__)

PULL_SYSTEMS = ("peoplevox", "clarus", "swap", "marketplacer", "scend")


@dataclass
class StreamResult:
    stream: str
    pages: int = 0
    records: int = 0
    stored: int = 0
    duplicates: int = 0
    total: int | None = None


@dataclass
class PullResult:
    system: str
    streams: list[StreamResult] = field(default_factory=list)
    normalised: NormaliseSummary | None = None
    # Scend: files moved to processed/, and files left in the drop folder with the reason.
    processed_files: list[str] = field(default_factory=list)
    skipped_files: dict[str, str] = field(default_factory=dict)

    @property
    def stored(self) -> int:
        return sum(s.stored for s in self.streams)

    @property
    def duplicates(self) -> int:
        return sum(s.duplicates for s in self.streams)

    def as_dict(self) -> dict[str, Any]:
        summary = self.normalised or NormaliseSummary()
        return {
            "system": self.system,
            "streams": [vars(s) for s in self.streams],
            "stored": self.stored,
            "duplicates": self.duplicates,
            "normalised": {
                "processed": summary.processed,
                "normalised": summary.normalised,
                "quarantined": summary.quarantined,
                "events_written": summary.events_written,
            },
            "processed_files": self.processed_files,
            "skipped_files": self.skipped_files,
        }


# Called after every stored page with the stream's running totals.
ProgressCallback = Callable[[str, StreamResult], None]


def check_system(system: str) -> str:
    if system not in PULL_SYSTEMS:
        raise UsageError(
            f"Cannot pull from {system!r}",
            hint=f"Use one of: {', '.join((*PULL_SYSTEMS, 'klaviyo'))}.",
        )
    return system


def _check_enabled(workspace: Workspace, system: str) -> None:
    settings = getattr(workspace.config.sources, check_system(system))
    if settings is not None and not settings.enabled:
        raise UsageError(
            f"{system} is disabled in cogent.toml",
            hint=f"Set enabled = true under [sources.{system}] to pull from it.",
        )


def connector_for(workspace: Workspace, system: str, transport: httpx.BaseTransport | None = None) -> Connector:
    """The connector of an API source, built from the workspace's config and credentials."""
    config = workspace.config
    _check_enabled(workspace, system)
    if system == "peoplevox":
        from cogent_cli.connectors.peoplevox import PeoplevoxConnector

        return PeoplevoxConnector(config, transport=transport)
    if system == "clarus":
        from cogent_cli.connectors.clarus import ClarusConnector

        return ClarusConnector(config, transport=transport)
    if system == "swap":
        from cogent_cli.connectors.swap import SwapConnector

        return SwapConnector(config, transport=transport)
    if system == "marketplacer":
        from cogent_cli.connectors.marketplacer import MarketplacerConnector

        return MarketplacerConnector(config, transport=transport)
    raise UsageError(f"{system} has no API to pull from", hint="Scend exports are read from [sources.scend] drop_dir.")


def load_cursor(store: Any, system: str, stream: str) -> dict[str, Any] | None:
    value = get_cursor(store, system, stream)
    return json.loads(value) if value else None


def cursors(workspace: Workspace) -> dict[str, dict[str, Any]]:
    """Every stored pull cursor as {"system/stream": cursor}."""
    with workspace.store() as store:
        return {f"{system}/{stream}": json.loads(value) for (system, stream), value in all_cursors(store).items()}


def idempotency_key(system: str, record: RawRecord) -> str:
    """The kind's natural key when it has one (so a record pulled and ingested from a file is stored
    once), else the connector's key."""
    normaliser = load_normalisers().get((system, record.kind))
    if normaliser is None or normaliser.natural_key is None:
        return record.idempotency_key
    return record_key(normaliser, json.loads(record.body), record.idempotency_key)


def store_page(inbox: Inbox, system: str, page: Page, result: StreamResult) -> list[int]:
    """Store a page's records, then its cursor; returns the ids of newly stored rows."""
    receipts = inbox.receive_many(
        InboxItem(system, "pull", record.kind, idempotency_key(system, record), record.body, record.headers)
        for record in page.records
    )
    with inbox.store.transaction():
        set_cursor(inbox.store, system, page.stream, json.dumps(page.cursor))
    fresh = [receipt.id for receipt in receipts if not receipt.duplicate]
    result.pages += 1
    result.records += len(page.records)
    result.stored += len(fresh)
    result.duplicates += len(receipts) - len(fresh)
    if page.total is not None:
        result.total = page.total
    return fresh


def pull(
    workspace: Workspace,
    system: str,
    *,
    since: datetime | None = None,
    streams: tuple[str, ...] | None = None,
    progress: ProgressCallback | None = None,
    normalise: bool = True,
    connector: Connector | None = None,
) -> PullResult:
    """Pull every stream of `system` (or just `streams`) into the inbox, then normalise what is new.

    `since` starts each incremental stream afresh from that time instead of its stored cursor.
    """
    if system == "scend":
        return pull_drop_folder(workspace, progress=progress, normalise=normalise)
    source = connector or connector_for(workspace, system)
    unknown = sorted(set(streams or ()) - set(source.streams))
    if unknown:
        raise UsageError(
            f"{system} has no stream {', '.join(unknown)}",
            hint=f"{system} streams: {', '.join(source.streams)}.",
        )
    result = PullResult(system)
    fresh: list[int] = []
    try:
        with workspace.store() as store:
            inbox = Inbox(store)
            for stream in streams or source.streams:
                stream_result = StreamResult(stream)
                result.streams.append(stream_result)
                cursor = load_cursor(store, system, stream)
                for page in source.pages(stream, cursor, since):
                    fresh.extend(store_page(inbox, system, page, stream_result))
                    if progress is not None:
                        progress(stream, stream_result)
                log.info(
                    "%s/%s: %d records, %d new, %d duplicates",
                    system,
                    stream,
                    stream_result.records,
                    stream_result.stored,
                    stream_result.duplicates,
                )
            if normalise and fresh:
                result.normalised = inbox.normalise_pending(workspace.config, ids=fresh)
    finally:
        source.close()
    return result


def pull_drop_folder(
    workspace: Workspace, *, progress: ProgressCallback | None = None, normalise: bool = True
) -> PullResult:
    """Scend: store every export waiting in the drop folder, moving each to processed/ once stored."""
    _check_enabled(workspace, "scend")
    folder = DropFolder(workspace.config, workspace.root)
    result = PullResult("scend")
    files = StreamResult("files")
    result.streams.append(files)
    with workspace.store() as store:
        for outcome in folder.collect(store):
            if outcome.summary is None:
                result.skipped_files[outcome.name] = outcome.problem or "unreadable"
                continue
            result.processed_files.append(outcome.name)
            files.pages += 1
            files.records += outcome.summary.records
            files.stored += outcome.summary.stored
            files.duplicates += outcome.summary.duplicates
            if progress is not None:
                progress("files", files)
        for name in folder.waiting()[1]:
            result.skipped_files[name] = "not a .csv, .json, .jsonl or .ndjson export"
        if normalise and files.stored:
            result.normalised = Inbox(store).normalise_pending(workspace.config)
    return result
