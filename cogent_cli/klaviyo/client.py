"""The one client everything in cogent uses to talk to Klaviyo (API revision 2026-07-15).

Async httpx with many requests in flight (`max_in_flight`), each paced by the rate limiter of its
operation and retried when that is safe:

- 429: wait `Retry-After` (+ jitter), pause the operation's bucket for everyone, retry.
- 5xx, timeouts, connection resets: exponential backoff with jitter, bounded (`RetryPolicy`).
- A failure is *ambiguous* when the request may have reached Klaviyo (5xx, read timeout, reset
  mid-response). Ambiguous failures are retried only for operations where applying twice equals
  applying once (`RETRY_AMBIGUOUS` below); the others raise `TransientError(maybe_applied=True)`
  so nothing is ever applied twice behind the caller's back.

    async with KlaviyoClient(api_key) as klaviyo:
        await klaviyo.bulk_create_events(events)
        async for profile in klaviyo.get_profiles(ProfileFilter(email="ada@example.org")):
            ...
"""

from __future__ import annotations

import asyncio
import email.utils
import random
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple, TypeVar
from urllib.parse import quote, urlencode

import httpx
import orjson
from pydantic_core import to_json

from cogent_cli import __version__
from cogent_cli.klaviyo.errors import (
    AUTH_HINT,
    AuthError,
    BulkDeliveryError,
    KlaviyoError,
    KlaviyoValidationError,
    TransientError,
    error_for_response,
    parse_error_body,
)
from cogent_cli.klaviyo.filters import Filter, ProfileFilter, and_, equals, greater_or_equal, less_than
from cogent_cli.klaviyo.models import (
    BackInStockIn,
    BatchFailure,
    BulkJob,
    BulkOutcome,
    CatalogItem,
    CatalogItemIn,
    CatalogVariant,
    CatalogVariantIn,
    CatalogVariantUpdate,
    EventIn,
    KlaviyoEvent,
    Metric,
    Profile,
    ProfileImportFailure,
    ProfileIn,
    SubscriptionIn,
    UnsubscriptionIn,
    VariantInventory,
    catalog_id,
    iso,
    jsonable,
)
from cogent_cli.klaviyo.ratelimit import Clock, RateLimiter, RetryPolicy, SystemClock
from cogent_cli.klaviyo.spec import operation
from cogent_cli.logs import register_secret

T = TypeVar("T")

DEFAULT_BASE_URL = "https://a.klaviyo.com"
REVISION = "2026-07-15"
JSON_API = "application/vnd.api+json"

# Request limits from the spec (operation descriptions) and Klaviyo's global 5 MB payload limit.
MAX_REQUEST_BYTES = 5_000_000
MAX_EVENTS_PER_REQUEST = 1000
MAX_PROFILES_PER_IMPORT = 10_000
MAX_PROFILES_PER_SUBSCRIBE = 1000
MAX_PROFILES_PER_UNSUBSCRIBE = 100
MAX_EMAILS_PER_SUPPRESSION = 100
MAX_VARIANTS_PER_JOB = 100

# Statuses worth retrying; 501/505 mean the request can never work.
RETRY_STATUSES = frozenset({500, 502, 503, 504, 520, 522, 524})

# Whether an operation may be retried after an ambiguous failure, and why.
RETRY_AMBIGUOUS: dict[str, bool] = {
    # Reads change nothing.
    "get_profiles": True,
    "get_events": True,
    "get_metrics": True,
    "get_catalog_items": True,
    "get_catalog_variants": True,
    "get_bulk_import_profiles_job": True,
    "get_errors_for_bulk_import_profiles_job": True,
    "get_bulk_update_variants_job": True,
    # Klaviyo keeps the first event per (profile, metric, unique_id), or per explicit time when there
    # is no unique_id; an event with neither is only retried when it surely did not arrive.
    "create_event": True,
    "bulk_create_events": True,
    # Setting attributes, consent, suppression or stock to a value twice leaves the same state;
    # profile writes with patch_properties append/unappend are the exception (decided per call).
    "update_profile": True,
    "create_or_update_profile": True,
    "bulk_import_profiles": True,
    "bulk_subscribe_profiles": True,
    "bulk_unsubscribe_profiles": True,
    "bulk_suppress_profiles": True,
    "bulk_unsuppress_profiles": True,
    "update_catalog_variant": True,
    "bulk_update_catalog_variants": True,
    "create_back_in_stock_subscription": True,
    # A second create after a success answers 409 and a second merge 404 (the source is deleted):
    # retrying would turn a success into a misleading error, so the caller decides.
    "create_profile": False,
    "merge_profiles": False,
    "create_catalog_item": False,
    "create_catalog_variant": False,
}

# Transport errors raised before the request could reach Klaviyo.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


@dataclass
class OperationStats:
    requests: int = 0
    throttled: int = 0
    retries: int = 0
    failures: int = 0


class ClientStats:
    """Counts per operation: HTTP requests sent, 429s received, retries made, calls that failed."""

    def __init__(self) -> None:
        self.operations: defaultdict[str, OperationStats] = defaultdict(OperationStats)

    def _total(self, name: str) -> int:
        return sum(getattr(s, name) for s in self.operations.values())

    @property
    def requests(self) -> int:
        return self._total("requests")

    @property
    def throttled(self) -> int:
        return self._total("throttled")

    @property
    def retries(self) -> int:
        return self._total("retries")

    @property
    def failures(self) -> int:
        return self._total("failures")

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "throttled": self.throttled,
            "retries": self.retries,
            "failures": self.failures,
            "operations": {name: asdict(s) for name, s in sorted(self.operations.items())},
        }


def encode_body(body: Any) -> bytes:
    """Compact UTF-8 JSON (pydantic-core's encoder: bulk bodies encode thousands of items)."""
    return to_json(body)


def _query_value(value: Any) -> str:
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value)
    return str(value)


def _retry_after(value: str | None) -> float | None:
    """Seconds from a `Retry-After` header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _split(
    items: Iterable[T], max_count: int, max_bytes: int, size: Callable[[T], int] | None = None
) -> Iterator[list[T]]:
    """Consecutive batches of at most `max_count` items and `max_bytes` bytes (an oversized item goes alone)."""
    current: list[T] = []
    used = 0
    for item in items:
        weight = size(item) if size else 0
        if current and (len(current) >= max_count or used + weight > max_bytes):
            yield current
            current, used = [], 0
        current.append(item)
        used += weight
    if current:
        yield current


# Room for the JSON:API envelope around the items of a bulk body.
_ENVELOPE_BYTES = 512


def import_batches(items: Iterable[T], profile_of: Callable[[T], ProfileIn]) -> Iterator[list[T]]:
    """Consecutive bulk import jobs of at most 10,000 profiles and 5 MB each, in the items' order."""
    return _split(
        items,
        MAX_PROFILES_PER_IMPORT,
        MAX_REQUEST_BYTES - _ENVELOPE_BYTES,
        lambda item: len(encode_body(profile_of(item).resource())) + 1,  # and its comma
    )


_BULK_EVENTS_HEAD = b'{"data":{"type":"event-bulk-create-job","attributes":{"events-bulk-create":{"data":['
_BULK_EVENTS_TAIL = b"]}}}}"
_ENTRY_HEAD = b'{"type":"event-bulk-create","attributes":{"profile":{"data":'
_ENTRY_EVENTS = b'},"events":{"data":['
_ENTRY_TAIL = b"]}}}"
_EVENT_HEAD = b'{"type":"event","attributes":'
_EVENT_TAIL = b"}"
_BETWEEN_EVENTS = _EVENT_TAIL + b"," + _EVENT_HEAD
_ENTRY_CLOSE = _EVENT_TAIL + _ENTRY_TAIL + b","
_LAST_ENTRY_CLOSE = _EVENT_TAIL + _ENTRY_TAIL + _BULK_EVENTS_TAIL
# Upper bound of what an event adds to a body when it is its own per-profile entry.
_EVENT_OVERHEAD = len(_ENTRY_HEAD + _ENTRY_EVENTS + _ENTRY_TAIL + _EVENT_HEAD + _EVENT_TAIL) + 1


class _PlannedEvent(NamedTuple):
    event: EventIn
    profile: bytes  # the encoded profile resource, also what groups events by profile
    attributes: bytes  # the encoded event attributes
    size: int


def plan_event_batches(
    events: Iterable[EventIn], *, max_events: int = MAX_EVENTS_PER_REQUEST, max_bytes: int = MAX_REQUEST_BYTES
) -> list[list[list[EventIn]]]:
    """Waves of bulk requests: within a wave no request holds two events with the same unique_id.

    Klaviyo rejects a whole bulk request that repeats a unique_id, so the n-th occurrence of an id
    goes into wave n, sent only after wave n-1 finished (which also keeps "first one wins").
    """
    return [
        [[p.event for p in batch] for batch in _event_batches(wave, max_events, max_bytes)]
        for wave in _waves(events, max_events)
    ]


def _waves(events: Iterable[EventIn], max_events: int) -> list[list[EventIn]]:
    """The events split so that no unique_id occurs twice in a wave (see `plan_event_batches`)."""
    if not 1 <= max_events <= MAX_EVENTS_PER_REQUEST:
        raise ValueError(f"batch size must be between 1 and {MAX_EVENTS_PER_REQUEST}")
    seen: Counter[str] = Counter()
    waves: list[list[EventIn]] = []
    for event in events:
        occurrence = 0
        if event.unique_id is not None:
            occurrence = seen[event.unique_id]
            seen[event.unique_id] += 1
        if occurrence == len(waves):
            waves.append([])
        waves[occurrence].append(event)
    return waves


# orjson refuses (TypeError) every value that jsonable would change: Decimal, times and dates (passed
# through to a missing default), sets, models, dataclasses, subclasses, non-str keys, integers past 64 bits.
_PLAIN_JSON = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_SUBCLASS


def encode_plain(value: Any) -> bytes:
    """The bytes of `encode_body(jsonable(value))`. A value that is plain JSON already (as a stored
    payload decodes) is encoded by orjson in one pass, without the conversion."""
    try:
        encoded = orjson.dumps(value, option=_PLAIN_JSON)
    except TypeError:
        return encode_body(jsonable(value))
    # orjson writes NaN and infinities as null where pydantic-core writes NaN and Infinity.
    # (find, not `in`: the operator goes through the buffer protocol, several times slower here.)
    return encoded if encoded.find(b"null") < 0 else encode_body(jsonable(value))


def _planned(event: EventIn) -> _PlannedEvent:
    # Each event is encoded once, here; request bodies are assembled from these pieces.
    profile = encode_plain(event.profile_resource())
    # The same object as event_attributes(), its properties not yet converted.
    attributes = encode_plain({"properties": event.properties, **event.attributes_besides_properties()})
    return _PlannedEvent(event, profile, attributes, len(profile) + len(attributes) + _EVENT_OVERHEAD)


def _event_batches(wave: Iterable[EventIn], max_events: int, max_bytes: int) -> Iterator[list[_PlannedEvent]]:
    """A wave's requests, encoded as they are taken: the first is sent while later ones are still encoded."""
    return _split(map(_planned, wave), max_events, max_bytes - _ENVELOPE_BYTES, lambda p: p.size)


def _bulk_events_content(batch: Sequence[_PlannedEvent]) -> bytes:
    """The encoded event-bulk-create-job body: one entry per profile, holding that profile's events."""
    grouped: dict[bytes, list[bytes]] = {}
    for planned in batch:
        grouped.setdefault(planned.profile, []).append(planned.attributes)
    # Pieces joined once: a thousand events are copied into the body once.
    parts = [_BULK_EVENTS_HEAD]
    for profile, events in grouped.items():
        parts += (_ENTRY_HEAD, profile, _ENTRY_EVENTS, _EVENT_HEAD, _BETWEEN_EVENTS.join(events), _ENTRY_CLOSE)
    parts[-1] = _LAST_ENTRY_CLOSE
    return b"".join(parts)


def _subscriptions(sub: SubscriptionIn, historical_import: bool) -> dict[str, Any]:
    consent: dict[str, Any] = {"consent": "SUBSCRIBED"}
    if historical_import and sub.consented_at is not None:
        consent["consented_at"] = iso(sub.consented_at)
    return {channel: {"marketing": dict(consent)} for channel in sub.channels}


def _check_consent(subs: Sequence[SubscriptionIn], historical_import: bool, now: datetime) -> None:
    """Klaviyo: historical imports need a past `consented_at`; live subscribes must not send one."""
    for index, sub in enumerate(subs):
        pointer = (
            f"/data/attributes/profiles/data/{index}/attributes/subscriptions/{sub.channels[0]}/marketing/consented_at"
        )
        problem = None
        if historical_import and sub.consented_at is None:
            problem = "historical_import needs consented_at (when the person consented)"
        elif historical_import and sub.consented_at is not None and sub.consented_at >= now:
            problem = f"consented_at {iso(sub.consented_at)} is not in the past"
        elif not historical_import and sub.consented_at is not None:
            problem = "consented_at is only accepted with historical_import=True"
        if problem:
            raise KlaviyoValidationError(
                f"bulk_subscribe_profiles: profile {index} ({sub.email or sub.phone_number}): {problem}",
                "Pass historical_import=True with a past consented_at for consent collected earlier, "
                "or leave consented_at unset for consent given now.",
                pointer=pointer,
                operation_id="bulk_subscribe_profiles",
            )


def _list_relationship(list_id: str | None) -> dict[str, Any]:
    return {"relationships": {"list": {"data": {"type": "list", "id": list_id}}}} if list_id else {}


class KlaviyoClient:
    """Async Klaviyo client; one instance per run, used as `async with KlaviyoClient(...) as k:`."""

    def __init__(
        self,
        api_key: str,
        base_url: str = DEFAULT_BASE_URL,
        revision: str = REVISION,
        max_in_flight: int = 32,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: float = 30.0,
        *,
        rate_scale: float = 1.0,
        retry: RetryPolicy | None = None,
        clock: Clock | None = None,
        seed: int | None = None,
    ) -> None:
        if not api_key:
            raise AuthError("No Klaviyo API key was given", AUTH_HINT)
        register_secret(api_key)
        self._api_key = api_key
        self.base_url = base_url.rstrip("/")
        self.revision = revision
        self.max_in_flight = max_in_flight
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self.clock = clock or SystemClock()
        self.limiter = RateLimiter(self.clock, scale=rate_scale)
        self.stats = ClientStats()
        self._transport = transport
        self._rng = random.Random(seed)
        self._slots = asyncio.Semaphore(max_in_flight)
        self._http: httpx.AsyncClient | None = None

    def __repr__(self) -> str:
        return (
            f"KlaviyoClient(base_url={self.base_url!r}, revision={self.revision!r}, max_in_flight={self.max_in_flight})"
        )

    async def __aenter__(self) -> KlaviyoClient:
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            transport=self._transport,
            timeout=self.timeout,
            limits=httpx.Limits(max_connections=self.max_in_flight, max_keepalive_connections=self.max_in_flight),
            headers={
                "Authorization": f"Klaviyo-API-Key {self._api_key}",
                "revision": self.revision,
                "Accept": JSON_API,
                "User-Agent": f"cogent-cli/{__version__}",
            },
        )
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    # Transport ----------------------------------------------------------------------------------

    def _target(self, path: str, path_params: Mapping[str, str] | None, params: Mapping[str, Any] | None) -> str:
        for name, value in (path_params or {}).items():
            path = path.replace("{" + name + "}", quote(value, safe=""))
        query = {k: _query_value(v) for k, v in (params or {}).items() if v is not None}
        return path + ("?" + urlencode(query, quote_via=quote, safe="") if query else "")

    def _check_origin(self, url: str, operation_id: str) -> None:
        """Follow `links.next` only on Klaviyo's own host: the API key must never go anywhere else."""
        target, base = httpx.URL(url), httpx.URL(self.base_url)
        if (target.scheme, target.host, target.port) != (base.scheme, base.host, base.port):
            raise KlaviyoError(
                f"{operation_id}: refusing to follow a pagination link to another host ({target.host})",
                "The response did not come from Klaviyo; check base_url in cogent.toml.",
                operation_id=operation_id,
            )

    async def _call(
        self,
        operation_id: str,
        *,
        path_params: Mapping[str, str] | None = None,
        params: Mapping[str, Any] | None = None,
        body: Any = None,
        content: bytes | None = None,
        url: str | None = None,
        retry_ambiguous: bool | None = None,
    ) -> Any:
        """Send one operation (retrying as allowed) and return its parsed JSON body, or None.

        The request body is `body` encoded, or `content` when it comes encoded already."""
        if self._http is None:
            raise RuntimeError("use the client inside `async with KlaviyoClient(...)`")
        op = operation(operation_id)
        bucket = self.limiter.bucket(operation_id)
        stats = self.stats.operations[operation_id]
        safe = RETRY_AMBIGUOUS[operation_id] if retry_ambiguous is None else retry_ambiguous
        target = url or self._target(op.path, path_params, params)
        if body is not None:
            content = encode_body(body)
        headers = {"Content-Type": JSON_API} if content is not None else None
        throttled = transient = 0
        reached = False  # whether any failed attempt may have reached Klaviyo
        while True:
            response: httpx.Response | None = None
            failure: httpx.TransportError | None = None
            # Wait for the rate limit before taking a connection slot, so an operation that is
            # waiting out its window never starves the others.
            await bucket.acquire()
            async with self._slots:
                stats.requests += 1
                try:
                    response = await self._http.request(op.method, target, content=content, headers=headers)
                except httpx.TransportError as exc:
                    failure = exc
            if response is not None and response.is_success:
                bucket.observe(
                    response.headers.get("RateLimit-Limit"),
                    response.headers.get("RateLimit-Remaining"),
                    response.headers.get("RateLimit-Reset"),
                )
                return response.json() if response.content else None
            if response is not None and response.status_code == 429:
                stats.throttled += 1
                throttled += 1
                wait = _retry_after(response.headers.get("Retry-After"))
                wait = 1.0 if wait is None else wait
                bucket.pause_until(self.clock.now() + wait)
                if throttled > self.retry.max_throttled_retries or wait > self.retry.max_retry_after:
                    stats.failures += 1
                    raise error_for_response(
                        429, response.content, operation_id=operation_id, scopes=op.scopes, retry_after=wait
                    )
                stats.retries += 1
                await self.clock.sleep(self.retry.throttle_delay(wait, self._rng))
                continue
            if response is not None and response.status_code not in RETRY_STATUSES:
                stats.failures += 1
                raise error_for_response(
                    response.status_code, response.content, operation_id=operation_id, scopes=op.scopes
                )
            ambiguous = response is not None or not isinstance(failure, _NOT_SENT)
            reached = reached or ambiguous
            transient += 1
            if (ambiguous and not safe) or transient > self.retry.max_retries:
                stats.failures += 1
                raise self._transient(
                    operation_id,
                    response,
                    failure,
                    maybe_applied=reached,
                    resendable=safe or not reached,
                    attempts=transient,
                )
            stats.retries += 1
            await self.clock.sleep(self.retry.backoff(transient, self._rng))

    def _transient(
        self,
        operation_id: str,
        response: httpx.Response | None,
        failure: httpx.TransportError | None,
        *,
        maybe_applied: bool,
        resendable: bool,
        attempts: int,
    ) -> TransientError:
        what = f"HTTP {response.status_code}" if response is not None else type(failure).__name__
        common: dict[str, Any] = {
            "status": response.status_code if response is not None else None,
            "errors": parse_error_body(response.content) if response is not None else [],
            "operation_id": operation_id,
            "maybe_applied": maybe_applied,
        }
        if not resendable:
            return TransientError(
                f"{operation_id}: {what}; the request may or may not have been applied, so it was not resent",
                "Check in Klaviyo whether it took effect before sending it again.",
                **common,
            )
        return TransientError(
            f"{operation_id}: Klaviyo still failing after {attempts} attempts ({what})",
            "Klaviyo or the network is having trouble; run again later (resending is safe).",
            **common,
        )

    async def _pages(
        self, operation_id: str, *, path_params: Mapping[str, str] | None = None, params: Mapping[str, Any]
    ) -> AsyncIterator[dict[str, Any]]:
        """Every resource of a collection, one page at a time, following `links.next`."""
        url: str | None = None
        while True:
            page = await self._call(
                operation_id, path_params=path_params, params=params if url is None else None, url=url
            )
            for resource in page.get("data") or []:
                yield resource
            url = (page.get("links") or {}).get("next")
            if not url:
                return
            self._check_origin(url, operation_id)

    async def _run_batches(
        self, batches: Iterable[list[T]], send: Callable[[list[T]], Awaitable[BulkJob | None]]
    ) -> BulkOutcome[T]:
        """Send batches concurrently (as many as `max_in_flight`, each taken from `batches` when a
        sender is free); collect what each achieved. Auth problems stop everything."""
        outcome: BulkOutcome[T] = BulkOutcome()
        fatal: list[AuthError] = []

        async def run(batch: list[T]) -> None:
            if fatal:
                outcome.failures.append(BatchFailure(batch, fatal[0]))
                return
            try:
                job = await send(batch)
            except AuthError as exc:
                fatal.append(exc)
                outcome.failures.append(BatchFailure(batch, exc))
                return
            except KlaviyoError as exc:
                outcome.failures.append(BatchFailure(batch, exc))
                return
            outcome.requests += 1
            outcome.accepted += len(batch)
            if job is not None:
                outcome.jobs.append(job)

        pending = iter(batches)

        async def sender() -> None:
            for batch in pending:
                await run(batch)

        await asyncio.gather(*(sender() for _ in range(self.max_in_flight)))
        if fatal:
            raise fatal[0]
        return outcome

    @staticmethod
    def _raise_failures(outcome: BulkOutcome[T], operation_id: str) -> BulkOutcome[T]:
        if outcome.failures:
            raise BulkDeliveryError(outcome, operation_id)
        return outcome

    # Events -------------------------------------------------------------------------------------

    async def create_event(self, event: EventIn) -> None:
        """POST /api/events (202)."""
        attributes = {**event.event_attributes(), "profile": {"data": event.profile_resource()}}
        await self._call(
            "create_event",
            body={"data": {"type": "event", "attributes": attributes}},
            retry_ambiguous=event.retry_safe,
        )

    async def bulk_create_events(
        self, events: Sequence[EventIn], *, batch_size: int = MAX_EVENTS_PER_REQUEST
    ) -> BulkOutcome[EventIn]:
        """POST /api/event-bulk-create-jobs in as many requests as the limits need.

        Raises BulkDeliveryError (carrying the outcome) when any request was rejected.
        """
        total: BulkOutcome[EventIn] = BulkOutcome()
        for wave in _waves(events, batch_size):

            async def send(batch: list[_PlannedEvent]) -> None:
                await self._call(
                    "bulk_create_events",
                    content=_bulk_events_content(batch),
                    retry_ambiguous=all(p.event.retry_safe for p in batch),
                )

            outcome = await self._run_batches(_event_batches(wave, batch_size, MAX_REQUEST_BYTES), send)
            total.requests += outcome.requests
            total.accepted += outcome.accepted
            total.failures += [BatchFailure([p.event for p in f.items], f.error) for f in outcome.failures]
        return self._raise_failures(total, "bulk_create_events")

    async def get_events(
        self,
        metric_id: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        *,
        profile_id: str | None = None,
        page_size: int = 200,
        sort: str = "datetime",
    ) -> AsyncIterator[KlaviyoEvent]:
        """GET /api/events, optionally one metric and the window since <= datetime < until."""
        parts = []
        if metric_id:
            parts.append(equals("metric_id", metric_id))
        if profile_id:
            parts.append(equals("profile_id", profile_id))
        if since:
            parts.append(greater_or_equal("datetime", since))
        if until:
            parts.append(less_than("datetime", until))
        params = {"filter": and_(*parts) if parts else None, "page[size]": page_size, "sort": sort}
        async for resource in self._pages("get_events", params=params):
            yield KlaviyoEvent.from_resource(resource)

    async def get_metrics(self) -> AsyncIterator[Metric]:
        """GET /api/metrics (the only way to find a metric's id from its name)."""
        async for resource in self._pages("get_metrics", params={}):
            yield Metric.from_resource(resource)

    # Profiles -----------------------------------------------------------------------------------

    async def get_profiles(
        self,
        filter: ProfileFilter | str | None = None,
        additional_fields: Sequence[str] = ("subscriptions",),
        page_size: int = 100,
        sort: str | None = None,
    ) -> AsyncIterator[Profile]:
        """GET /api/profiles, e.g. `get_profiles(ProfileFilter(email=["a@x.com", "b@x.com"]))`."""
        rendered = filter.render() if isinstance(filter, ProfileFilter) else filter
        params = {
            "filter": rendered or None,
            "additional-fields[profile]": list(additional_fields) or None,
            "page[size]": page_size,
            "sort": sort,
        }
        async for resource in self._pages("get_profiles", params=params):
            yield Profile.from_resource(resource)

    async def create_profile(self, profile: ProfileIn) -> Profile:
        """POST /api/profiles (201); DuplicateProfileError when an identifier is taken. Prefer upsert_profile."""
        if profile.id is not None or profile.patch_properties is not None:
            raise ValueError("create_profile takes neither id nor patch_properties; use upsert_profile")
        body = {"data": {"type": "profile", "attributes": profile.attributes()}}
        return Profile.from_resource((await self._call("create_profile", body=body))["data"])

    async def update_profile(self, id: str, profile: ProfileIn) -> Profile:
        """PATCH /api/profiles/{id}: set fields (None clears); unset fields stay as they are."""
        data = {**profile.resource(with_id=False), "id": id}
        response = await self._call(
            "update_profile", path_params={"id": id}, body={"data": data}, retry_ambiguous=not profile.appends
        )
        return Profile.from_resource(response["data"])

    async def upsert_profile(self, profile: ProfileIn) -> Profile:
        """POST /api/profile-import: create or update the profile matching any identifier."""
        response = await self._call(
            "create_or_update_profile", body={"data": profile.resource()}, retry_ambiguous=not profile.appends
        )
        return Profile.from_resource(response["data"])

    async def bulk_import_profiles(self, profiles: Sequence[ProfileIn], list_id: str | None = None) -> BulkJob:
        """POST /api/profile-bulk-import-jobs: one job of at most 10,000 profiles / 5 MB."""
        if not 1 <= len(profiles) <= MAX_PROFILES_PER_IMPORT:
            raise ValueError(f"a bulk import takes 1 to {MAX_PROFILES_PER_IMPORT} profiles, got {len(profiles)}")
        data: dict[str, Any] = {
            "type": "profile-bulk-import-job",
            "attributes": {"profiles": {"data": [p.resource() for p in profiles]}},
        }
        if list_id:
            data["relationships"] = {"lists": {"data": [{"type": "list", "id": list_id}]}}
        body = {"data": data}
        if len(encode_body(body)) > MAX_REQUEST_BYTES:
            raise ValueError("the profiles exceed Klaviyo's 5 MB request limit; import them in smaller jobs")
        response = await self._call(
            "bulk_import_profiles", body=body, retry_ambiguous=not any(p.appends for p in profiles)
        )
        return BulkJob.from_resource(response["data"])

    async def get_bulk_import_job(self, job_id: str) -> BulkJob:
        response = await self._call("get_bulk_import_profiles_job", path_params={"job_id": job_id})
        return BulkJob.from_resource(response["data"])

    async def get_bulk_import_errors(self, job_id: str, page_size: int = 100) -> AsyncIterator[ProfileImportFailure]:
        async for resource in self._pages(
            "get_errors_for_bulk_import_profiles_job", path_params={"id": job_id}, params={"page[size]": page_size}
        ):
            yield ProfileImportFailure.from_resource(resource)

    async def merge_profiles(self, destination_id: str, source_id: str) -> str:
        """POST /api/profile-merge: merge source into destination (source is deleted); returns destination id."""
        body = {
            "data": {
                "type": "profile-merge",
                "id": destination_id,
                "relationships": {"profiles": {"data": [{"type": "profile", "id": source_id}]}},
            }
        }
        response = await self._call("merge_profiles", body=body)
        return (response or {}).get("data", {}).get("id", destination_id)

    # Consent ------------------------------------------------------------------------------------

    async def subscribe_profiles(
        self,
        subscriptions: Sequence[SubscriptionIn],
        historical_import: bool = False,
        list_id: str | None = None,
        custom_source: str | None = None,
    ) -> BulkOutcome[SubscriptionIn]:
        """POST /api/profile-subscription-bulk-create-jobs, 1,000 profiles per request.

        historical_import=True records consent given earlier (each needs a past consented_at) and
        skips double opt-in and "added to list" flows.
        """
        _check_consent(subscriptions, historical_import, datetime.now(UTC))

        async def send(batch: list[SubscriptionIn]) -> None:
            profiles = []
            for sub in batch:
                attributes: dict[str, Any] = {"subscriptions": _subscriptions(sub, historical_import)}
                for name in ("email", "phone_number"):
                    if getattr(sub, name):
                        attributes[name] = getattr(sub, name)
                if sub.age_gated_date_of_birth:
                    attributes["age_gated_date_of_birth"] = sub.age_gated_date_of_birth.isoformat()
                entry: dict[str, Any] = {"type": "profile", "attributes": attributes}
                if sub.profile_id:
                    entry["id"] = sub.profile_id
                profiles.append(entry)
            attributes = {"profiles": {"data": profiles}, "historical_import": historical_import}
            if custom_source:
                attributes["custom_source"] = custom_source
            data = {"type": "profile-subscription-bulk-create-job", "attributes": attributes}
            await self._call("bulk_subscribe_profiles", body={"data": data | _list_relationship(list_id)})

        batches = _split(subscriptions, MAX_PROFILES_PER_SUBSCRIBE, MAX_REQUEST_BYTES)
        return self._raise_failures(await self._run_batches(batches, send), "bulk_subscribe_profiles")

    async def unsubscribe_profiles(
        self, unsubscriptions: Sequence[UnsubscriptionIn], list_id: str | None = None
    ) -> BulkOutcome[UnsubscriptionIn]:
        """POST /api/profile-subscription-bulk-delete-jobs, 100 profiles per request.

        Without list_id, or for profiles not in that list, Klaviyo unsubscribes globally.
        """

        async def send(batch: list[UnsubscriptionIn]) -> None:
            profiles = []
            for unsub in batch:
                attributes: dict[str, Any] = {
                    "subscriptions": {c: {"marketing": {"consent": "UNSUBSCRIBED"}} for c in unsub.channels}
                }
                for name in ("email", "phone_number"):
                    if getattr(unsub, name):
                        attributes[name] = getattr(unsub, name)
                profiles.append({"type": "profile", "attributes": attributes})
            data = {"type": "profile-subscription-bulk-delete-job", "attributes": {"profiles": {"data": profiles}}}
            await self._call("bulk_unsubscribe_profiles", body={"data": data | _list_relationship(list_id)})

        batches = _split(unsubscriptions, MAX_PROFILES_PER_UNSUBSCRIBE, MAX_REQUEST_BYTES)
        return self._raise_failures(await self._run_batches(batches, send), "bulk_unsubscribe_profiles")

    async def _suppression(self, operation_id: str, job_type: str, emails: Sequence[str]) -> BulkOutcome[str]:
        async def send(batch: list[str]) -> BulkJob:
            profiles = [{"type": "profile", "attributes": {"email": e}} for e in batch]
            body = {"data": {"type": job_type, "attributes": {"profiles": {"data": profiles}}}}
            return BulkJob.from_resource((await self._call(operation_id, body=body))["data"])

        batches = _split(emails, MAX_EMAILS_PER_SUPPRESSION, MAX_REQUEST_BYTES)
        return self._raise_failures(await self._run_batches(batches, send), operation_id)

    async def suppress_profiles(self, emails: Sequence[str]) -> BulkOutcome[str]:
        """POST /api/profile-suppression-bulk-create-jobs, 100 emails per job."""
        return await self._suppression("bulk_suppress_profiles", "profile-suppression-bulk-create-job", emails)

    async def unsuppress_profiles(self, emails: Sequence[str]) -> BulkOutcome[str]:
        """POST /api/profile-suppression-bulk-delete-jobs (only lifts USER_SUPPRESSED), 100 emails per job."""
        return await self._suppression("bulk_unsuppress_profiles", "profile-suppression-bulk-delete-job", emails)

    # Catalog ------------------------------------------------------------------------------------

    async def get_catalog_items(self, filter: Filter | str | None = None) -> AsyncIterator[CatalogItem]:
        async for resource in self._pages("get_catalog_items", params={"filter": filter or None, "page[size]": 100}):
            yield CatalogItem.from_resource(resource)

    async def get_catalog_variants(self, filter: Filter | str | None = None) -> AsyncIterator[CatalogVariant]:
        """GET /api/catalog-variants, e.g. filter=equals("sku", "SKU-1")."""
        params = {"filter": filter or None, "page[size]": 100}
        async for resource in self._pages("get_catalog_variants", params=params):
            yield CatalogVariant.from_resource(resource)

    async def create_catalog_item(self, item: CatalogItemIn) -> CatalogItem:
        response = await self._call("create_catalog_item", body={"data": item.resource()})
        return CatalogItem.from_resource(response["data"])

    async def create_catalog_variant(self, variant: CatalogVariantIn) -> CatalogVariant:
        response = await self._call("create_catalog_variant", body={"data": variant.resource()})
        return CatalogVariant.from_resource(response["data"])

    async def update_catalog_variant(self, id: str, update: CatalogVariantUpdate) -> CatalogVariant:
        """PATCH /api/catalog-variants/{id}; id as from `catalog_id("SKU-1")`."""
        body = {"data": {"type": "catalog-variant", "id": id, "attributes": update.attributes()}}
        response = await self._call("update_catalog_variant", path_params={"id": id}, body=body)
        return CatalogVariant.from_resource(response["data"])

    async def bulk_update_catalog_variants(self, variants: Sequence[VariantInventory]) -> BulkJob:
        """POST /api/catalog-variant-bulk-update-jobs: one job of at most 100 stock levels."""
        if not 1 <= len(variants) <= MAX_VARIANTS_PER_JOB:
            raise ValueError(f"a variant bulk update takes 1 to {MAX_VARIANTS_PER_JOB} variants, got {len(variants)}")
        entries = [{"type": "catalog-variant", "id": v.id, "attributes": v.attributes()} for v in variants]
        body = {"data": {"type": "catalog-variant-bulk-update-job", "attributes": {"variants": {"data": entries}}}}
        return BulkJob.from_resource((await self._call("bulk_update_catalog_variants", body=body))["data"])

    async def get_bulk_update_catalog_variants_job(self, job_id: str) -> BulkJob:
        response = await self._call("get_bulk_update_variants_job", path_params={"job_id": job_id})
        return BulkJob.from_resource(response["data"])

    async def create_back_in_stock_subscription(self, subscription: BackInStockIn) -> None:
        """POST /api/back-in-stock-subscriptions (202)."""
        attributes = {
            name: getattr(subscription, name)
            for name in ("email", "phone_number", "external_id")
            if getattr(subscription, name)
        }
        profile: dict[str, Any] = {"type": "profile", "attributes": attributes}
        if subscription.profile_id:
            profile["id"] = subscription.profile_id
        body = {
            "data": {
                "type": "back-in-stock-subscription",
                "attributes": {"channels": list(subscription.channels), "profile": {"data": profile}},
                "relationships": {
                    "variant": {"data": {"type": "catalog-variant", "id": catalog_id(subscription.variant_id)}}
                },
            }
        }
        await self._call("create_back_in_stock_subscription", body=body)
