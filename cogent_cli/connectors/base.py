"""What every pull connector shares: raw records, pages with their cursor, incremental passes, HTTP with retries.

A connector reads one source system and yields `Page`s. Each page carries the raw records to store
in the inbox and the cursor to persist once they are stored, so an interrupted run resumes at the
first page whose records were not yet stored, and re-reading a page only meets inbox duplicates.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import httpx

from cogent_cli.errors import CogentError, CredentialError, RemoteUnavailableError

log = logging.getLogger(__name__)

# Re-read this much before the last pass's start, so records committed at the source while that
# pass ran (or stamped by a clock slightly behind ours) are not missed; repeats are inbox duplicates.
DEFAULT_OVERLAP = timedelta(minutes=10)


class SourceResponseError(CogentError):
    """A source answered, but with something that is not what its API documents."""


@dataclass(frozen=True)
class RawRecord:
    """One raw payload as the source sent it, ready for `Inbox.receive`."""

    kind: str
    idempotency_key: str
    body: str
    headers: dict[str, str] | None = None


@dataclass(frozen=True)
class Page:
    stream: str
    records: list[RawRecord]
    # The cursor to persist once `records` are stored.
    cursor: dict[str, Any]
    # Records in the whole pass, when the source says (for progress bars).
    total: int | None = None


class Connector(Protocol):
    system: str
    streams: tuple[str, ...]

    def pages(self, stream: str, cursor: Mapping[str, Any] | None, since: datetime | None) -> Iterator[Page]: ...

    def close(self) -> None: ...


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def content_key(*parts: str, body: Any) -> str:
    """An idempotency key that changes exactly when the record's content changes."""
    digest = hashlib.sha256(canonical_json(body).encode()).hexdigest()[:24]
    return "|".join((*parts, digest))


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_iso(text: str) -> datetime:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@dataclass
class Pass:
    """One sweep over a stream: from `since` (None = everything), started at `started_at`.

    Persisted as `{"next_since": ..., "pass": {...}}`: while a pass runs, `position` (a page number
    or a relay cursor) says what is already stored; when it completes, the next pass starts from
    this pass's start time less the overlap.
    """

    since: datetime | None
    started_at: datetime
    position: Any = None

    @classmethod
    def begin(
        cls,
        cursor: Mapping[str, Any] | None,
        since: datetime | None,
        now: datetime | None = None,
    ) -> Pass:
        cursor = cursor or {}
        running = cursor.get("pass")
        if since is None and running:
            return cls(
                since=parse_iso(running["since"]) if running.get("since") else None,
                started_at=parse_iso(running["started_at"]),
                position=running.get("position"),
            )
        if since is None and cursor.get("next_since"):
            since = parse_iso(cursor["next_since"])
        return cls(since=since, started_at=now or datetime.now(UTC))

    def at(self, position: Any) -> dict[str, Any]:
        """The cursor to persist once everything up to `position` is stored."""
        self.position = position
        return {
            "pass": {
                "since": iso(self.since) if self.since else None,
                "started_at": iso(self.started_at),
                "position": position,
            }
        }

    def finished(self, overlap: timedelta = DEFAULT_OVERLAP) -> dict[str, Any]:
        return {"next_since": iso(self.started_at - overlap), "pass": None}

    @property
    def snapshot_id(self) -> str:
        """Names one snapshot of a stock stream; repeated reads of the same pass reuse it."""
        return iso(self.started_at)


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 4
    base_delay: float = 0.5
    max_delay: float = 30.0
    # Wait this long after a 429/503 without Retry-After (Marketplacer asks for at least 60 s).
    default_retry_after: float = 5.0
    sleep: Callable[[float], None] = field(default=time.sleep, compare=False)

    def backoff(self, attempt: int) -> float:
        return min(self.max_delay, self.base_delay * 2**attempt) * (0.5 + random.random() / 2)


RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})


class SourceHTTP:
    """An httpx client for one source: bounded retries on 429/5xx/network errors, clear errors after."""

    def __init__(
        self,
        system: str,
        base_url: str,
        *,
        transport: httpx.BaseTransport | None = None,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.system = system
        self.base_url = base_url.rstrip("/")
        self.retry = retry or RetryPolicy()
        self.client = httpx.Client(
            base_url=self.base_url,
            transport=transport,
            timeout=timeout,
            headers={"User-Agent": "cogent-cli", **(headers or {})},
        )

    def close(self) -> None:
        self.client.close()

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """Send, retrying what is transient; any other response is returned for the caller to judge."""
        problem = ""
        for attempt in range(self.retry.attempts):
            try:
                response = self.client.request(method, url, **kwargs)
            except httpx.TransportError as exc:
                problem = f"could not be reached ({type(exc).__name__})"
                delay = self.retry.backoff(attempt)
            else:
                if response.status_code not in RETRYABLE_STATUSES:
                    return response
                problem = f"answered HTTP {response.status_code}"
                delay = self._retry_after(response) or self.retry.backoff(attempt)
            if attempt + 1 < self.retry.attempts:
                log.info("%s %s; retrying in %.1f s", self.system, problem, delay)
                self.retry.sleep(delay)
        raise RemoteUnavailableError(
            f"{self.system} at {self.base_url} {problem} on {self.retry.attempts} attempts",
            hint=f"Check base_url under [sources.{self.system}] in cogent.toml and the system's status, then rerun "
            f"`cogent pull {self.system}`: it resumes after the last page stored.",
        )

    def _retry_after(self, response: httpx.Response) -> float | None:
        if response.status_code not in (429, 503):
            return None
        header = response.headers.get("Retry-After")
        if header is None:
            return self.retry.default_retry_after
        try:
            return max(0.0, float(header))
        except ValueError:
            return self.retry.default_retry_after

    def rejected(self, response: httpx.Response, what: str, fix: str) -> CredentialError:
        return CredentialError(
            f"{self.system} rejected the {what} (HTTP {response.status_code})",
            hint=fix,
        )

    def json(self, response: httpx.Response) -> Any:
        try:
            return response.json()
        except ValueError:
            raise SourceResponseError(
                f"{self.system} answered HTTP {response.status_code} with a body that is not JSON",
                hint=f"Check base_url under [sources.{self.system}] points at the API, not a web page.",
            ) from None

    def expect_ok(self, response: httpx.Response) -> None:
        if response.is_success:
            return
        raise SourceResponseError(
            f"{self.system} answered HTTP {response.status_code} to {response.request.method} "
            f"{response.request.url.path}: {response.text[:200]}",
            hint=f"Check the [sources.{self.system}] settings in cogent.toml; rerun with -vv to see the requests.",
        )
