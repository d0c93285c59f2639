"""One sync run: take the lock, queue new events, deliver the outbox in waves, record the run.

A wave is the next deliverable rows in lane order (transactional, profile, catalog, backfill). Its
operations go out concurrently through the bulk endpoints (events, profile import, subscriptions,
catalog variants), so every endpoint's rate budget is kept busy while the client paces each one.
Each batch's outcome is committed as soon as it is known.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from operator import itemgetter
from typing import Any

from cogent_cli.collector import fewer_collections
from cogent_cli.config import Config
from cogent_cli.credentials import Credentials
from cogent_cli.errors import CogentError, ExitStatus, LockHeldError
from cogent_cli.events import parse_event
from cogent_cli.klaviyo.client import KlaviyoClient, import_batches
from cogent_cli.klaviyo.errors import (
    AuthError,
    BulkDeliveryError,
    DuplicateProfileError,
    ErrorObject,
    KlaviyoError,
    KlaviyoNotFoundError,
    KlaviyoValidationError,
    ScopeError,
    ThrottledError,
    TransientError,
)
from cogent_cli.klaviyo.filters import literal
from cogent_cli.klaviyo.models import (
    BatchFailure,
    BulkJob,
    BulkOutcome,
    EventIn,
    PatchProperties,
    ProfileImportFailure,
    ProfileIn,
    SubscriptionIn,
    UnsubscriptionIn,
    VariantInventory,
)
from cogent_cli.state import Store
from cogent_cli.sync import lock
from cogent_cli.sync.exceptions import MappingError, now_iso
from cogent_cli.sync.identity import IDENTIFIER_FIELDS, IdentityResolver, Resolution
from cogent_cli.sync.lanes import LANE_NAMES
from cogent_cli.sync.mapping import Mapper
from cogent_cli.sync.outbox import EnqueueSummary, Outbox, OutboxRow
from cogent_cli.workspace import Workspace

log = logging.getLogger(__name__)

# Largest request per endpoint (SPEC limits); bigger waves are split and sent concurrently. Profile
# import jobs are cut by count and size together (`import_batches`).
BATCH = {"event": 1000, "catalog": 100, "subscribe": 1000, "unsubscribe": 100}
# The next wave is claimed and built while the one before is still being sent.
WAVES_IN_FLIGHT = 2
# Waves whose profile updates are still in import jobs Klaviyo has not finished (or queued behind
# such a job): they no longer hold one of the WAVES_IN_FLIGHT, so later waves go out meanwhile.
IMPORTS_IN_FLIGHT = 8
# Polling a profile import job: first wait, longest wait, and when to give up for this run (seconds).
IMPORT_POLL_FIRST, IMPORT_POLL_MAX, IMPORT_POLL_LIMIT = 0.1, 10.0, 900.0
# A run keeps its waves in flight alive (claimed rows, decoded payloads, request items: tens of
# objects per row); a young collection every 50,000 allocations re-walked them over and over.
RUN_YOUNG_THRESHOLD = 500_000


@dataclass
class SyncOptions:
    source: str | None = None
    dry_run: bool = False
    backfill_since: datetime | None = None
    limit: int | None = None
    max_minutes: float | None = None
    only_outbox_ids: list[int] | None = None
    command: str = "sync"


@dataclass
class LaneProgress:
    lane: str
    done: int
    total: int
    failed: int


ProgressCallback = Callable[[LaneProgress], None]
ClientFactory = Callable[[Config], AbstractAsyncContextManager[Any]]


@dataclass
class RunSummary:
    run_id: int | None = None
    status: str = "running"
    exit_status: int = 0
    started_at: str = ""
    finished_at: str | None = None
    enqueued: EnqueueSummary = field(default_factory=EnqueueSummary)
    sent: Counter[str] = field(default_factory=Counter)
    failed: Counter[str] = field(default_factory=Counter)
    resent: int = 0
    coalesced: int = 0
    waiting: int = 0
    held: int = 0
    recovered: int = 0
    # Rows put back for a later run because Klaviyo stayed throttled or unavailable.
    deferred: int = 0
    stale_lock_pid: int | None = None
    error: str | None = None
    # HTTP requests per Klaviyo operation, which `cogent status` sets against the rate budget.
    klaviyo_requests: dict[str, int] = field(default_factory=dict)

    @property
    def deduplicated(self) -> int:
        return self.enqueued.duplicates + self.resent

    def to_json(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "status": self.status,
            "exit_status": self.exit_status,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "events_read": self.enqueued.read,
            "operations_queued": self.enqueued.enqueued,
            "sent": sum(self.sent.values()),
            "sent_by_metric": dict(self.sent),
            "deduplicated": self.deduplicated,
            "resent_after_interruption": self.resent,
            "coalesced": self.coalesced,
            "failed": sum(self.failed.values()),
            "failed_by_class": dict(self.failed),
            "mapping_exceptions": self.enqueued.exceptions,
            "skipped": dict(self.enqueued.skipped),
            "waiting": self.waiting,
            "held": self.held,
            "recovered_in_flight": self.recovered,
            "deferred": self.deferred,
            "stale_lock_pid": self.stale_lock_pid,
            "error": self.error,
            "klaviyo_requests": self.klaviyo_requests,
        }


_IMPORT_POINTER = re.compile(r"^/data/attributes/profiles/data/(\d+)(/.*)?$")


def _import_outcome(items: list[ProfileIn], failures: list[ProfileImportFailure]) -> BulkOutcome[ProfileIn]:
    """Which items a bulk import job's errors are about: by the position in the pointer, else by the
    identifiers of the original payload. The pointer is rewritten to the profile's own (`/data/...`)."""
    by_identifier = {
        (name, value): index
        for index, item in enumerate(items)
        for name in IDENTIFIER_FIELDS
        if (value := getattr(item, name, None))
    }
    failed: dict[int, KlaviyoValidationError] = {}
    for failure in failures:
        pointer = failure.pointer
        match = _IMPORT_POINTER.match(pointer or "")
        if match and int(match.group(1)) < len(items):
            index: int | None = int(match.group(1))
            pointer = "/data" + (match.group(2) or "")
        else:
            payload = failure.original_payload or {}
            index = next(
                (by_identifier[(n, payload[n])] for n in IDENTIFIER_FIELDS if (n, payload.get(n)) in by_identifier),
                None,
            )
        if index is None:
            log.warning("profile import error not matched to a profile: %s %s", failure.code, failure.detail)
            continue
        detail = failure.detail or failure.title or failure.code or "rejected by Klaviyo's profile import"
        failed[index] = KlaviyoValidationError(
            f"profile import: {detail}",
            pointer=pointer,
            errors=[ErrorObject(code=failure.code, title=failure.title, detail=failure.detail, pointer=pointer)],
            operation_id="bulk_import_profiles",
        )
    return BulkOutcome(
        requests=1,
        accepted=len(items) - len(failed),
        failures=[BatchFailure([items[index]], error) for index, error in sorted(failed.items())],
    )


class _AbortRun(Exception):
    def __init__(self, error: CogentError) -> None:
        self.error = error


class _JobUnfinished(TransientError):
    """A profile import job Klaviyo was still running when the run stopped waiting on it."""

    def __init__(self, message: str, job_id: str) -> None:
        super().__init__(message, maybe_applied=True)
        self.job_id = job_id


def default_client_factory(config: Config) -> AbstractAsyncContextManager[Any]:
    return KlaviyoClient(
        Credentials(config).get("klaviyo"),
        base_url=config.klaviyo.base_url,
        revision=config.klaviyo.revision,
        max_in_flight=config.klaviyo.max_in_flight,
        timeout=config.klaviyo.timeout_seconds,
        rate_scale=config.klaviyo.rate_scale,
    )


def _time(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


ProfileKey = tuple[str, str]


def _profile_keys(resolution: Resolution) -> tuple[ProfileKey, ...]:
    """The identifiers that may name a resolved profile: its id, email, phone number and external id."""
    keys = [("id", resolution.profile_id)] if resolution.profile_id else []
    for name in IDENTIFIER_FIELDS:
        if value := resolution.attributes.get(name):
            keys.append((name, value.lower() if name == "email" else value))
    return tuple(keys)


@dataclass(eq=False)  # an update is itself, not its fields
class _ProfileUpdate:
    """Updates of one profile, in outbox order, that go to Klaviyo as one merged item."""

    keys: tuple[ProfileKey, ...]
    rows: list[OutboxRow]
    # True once delivered, False once it is certain not to be in this run (failed, deferred, stopped).
    done: asyncio.Future[bool] = field(default_factory=lambda: asyncio.get_running_loop().create_future())
    # The outcomes of the earlier updates sharing an identifier with this one, in this wave or before.
    after: list[asyncio.Future[bool]] = field(default_factory=list)

    def ready(self) -> bool:
        return all(earlier.done() for earlier in self.after)


def _profile_updates(
    rows: list[OutboxRow], keys_of: Callable[[OutboxRow], tuple[ProfileKey, ...]]
) -> list[_ProfileUpdate]:
    """A wave's profile updates. Rows with the same identifiers merge into one update, unless another
    row sharing one of them came in between (the same person seen with an email only, then with a
    phone too): that one is an update of its own, sent after the one before it has run."""
    updates: list[_ProfileUpdate] = []
    last: dict[ProfileKey, _ProfileUpdate] = {}
    for row in rows:
        keys = keys_of(row)
        before = {id(last[key]): last[key] for key in keys if key in last}
        if len(before) == 1:
            [update] = before.values()
            if update.keys == keys:
                update.rows.append(row)
                continue
        update = _ProfileUpdate(keys, [row])
        for key in keys:
            last[key] = update
        updates.append(update)
    return updates


def _split_by(
    updates: list[_ProfileUpdate], test: Callable[[_ProfileUpdate], bool]
) -> tuple[list[_ProfileUpdate], list[_ProfileUpdate]]:
    """The updates that pass `test` and those that do not, each in order."""
    passed: list[_ProfileUpdate] = []
    failed: list[_ProfileUpdate] = []
    for update in updates:
        (passed if test(update) else failed).append(update)
    return passed, failed


class _Turn:
    """A place in line, taken when a wave starts, so that waves register their profile updates in
    the order they started, whatever order their identity lookups finish in."""

    def __init__(self, previous: asyncio.Future[None] | None) -> None:
        self.previous = previous
        self.own: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def wait(self) -> None:
        if self.previous is not None:
            await self.previous

    def end(self) -> None:
        if not self.own.done():
            self.own.set_result(None)


def _merged(payloads: list[dict[str, Any]]) -> dict[str, Any]:
    """Profile operation payloads applied in order: later attributes and properties win, and a
    property unset after being set (or set after being unset) ends as the later one says."""
    if len(payloads) == 1:
        return payloads[0]
    attributes: dict[str, Any] = {}
    properties: dict[str, Any] = {}
    unset: dict[str, None] = {}
    for payload in payloads:
        attributes.update(payload.get("attributes") or {})
        for name in payload.get("unset") or ():
            properties.pop(name, None)
            unset[name] = None
        for name, value in (payload.get("properties") or {}).items():
            properties[name] = value
            unset.pop(name, None)
    return {"attributes": attributes, "properties": properties, "unset": list(unset)}


class Delivery:
    """Delivers claimed outbox rows through one client and records each outcome."""

    def __init__(
        self,
        outbox: Outbox,
        resolver: IdentityResolver,
        client: Any,
        summary: RunSummary,
        deadline: float | None = None,
    ) -> None:
        self.outbox = outbox
        # When the run's time is up (`--max-minutes`, on the monotonic clock): no job is waited on past it.
        self.deadline = deadline
        self.config = outbox.config
        self.resolver = resolver
        self.client = client
        self.summary = summary
        self.deferred: set[int] = set()
        self.delivered: set[int] = set()
        self.on_done: Callable[[list[OutboxRow], bool], None] = lambda rows, ok: None
        self._order_locks: dict[str, asyncio.Lock] = {}
        self._last_turn: asyncio.Future[None] | None = None
        # The latest registered update of each profile identifier, while it is not delivered.
        self._updating: dict[ProfileKey, asyncio.Future[bool]] = {}
        # Waves' profile shares still running after their wave has handed back its slot.
        self.imports: set[asyncio.Task[None]] = set()
        # Rows whose updates were merged into a later row's item (a profile's earlier updates of a
        # wave), by the id of the row carrying them: they share its outcome.
        self._riders: dict[int, list[OutboxRow]] = {}

    # -- outcomes ----------------------------------------------------------------------------------

    def _carried(self, rows: list[OutboxRow]) -> list[OutboxRow]:
        """The rows with the ones each of them carries."""
        if not self._riders:
            return rows
        return [r for row in rows for r in (*self._riders.get(row.id, ()), row)]

    def _sent(self, rows: list[OutboxRow]) -> None:
        rows = self._carried(rows)
        self.outbox.mark([r.id for r in rows], "sent")
        self.delivered.update(r.id for r in rows)
        for row in rows:
            self.summary.sent[row.metric] += 1
            self.summary.resent += bool(row.resends)
        self.on_done(rows, True)

    def _fail(
        self, rows: list[OutboxRow], exception_class: str, error: KlaviyoError | str, pointer: str | None = None
    ) -> None:
        rows = self._carried(rows)
        self.outbox.fail(rows, exception_class, str(error), pointer=pointer)
        self.summary.failed[exception_class] += len(rows)
        self.on_done(rows, False)

    def _retry_later(self, rows: list[OutboxRow], error: KlaviyoError) -> None:
        """Throttled or unavailable after the client's own retries: pending again, not in this run.
        A row that keeps being throttled run after run becomes a rate_budget_exhausted exception."""
        exhausted = [
            r for r in rows if isinstance(error, ThrottledError) and r.attempts >= self.config.sync.max_attempts
        ]
        if exhausted:
            self._fail(exhausted, "rate_budget_exhausted", error)
        exhausted_ids = {r.id for r in exhausted}
        again = self._carried([r for r in rows if r.id not in exhausted_ids])
        self._defer(again, str(error), error.job_id if isinstance(error, _JobUnfinished) else None)

    def _defer(self, rows: list[OutboxRow], why: str, import_job: str | None = None) -> None:
        """Out of this run: `deferred` keeps the rows from its later waves; the run (or the next, after
        a crash) makes them pending again."""
        self.outbox.mark([r.id for r in rows], "deferred", why, import_job=import_job)
        self.deferred.update(r.id for r in rows)

    async def _guarded(
        self,
        rows: list[OutboxRow],
        items: list[Any],
        send: Callable[[list[Any]], Awaitable[Any]],
        on_single_failure: Callable[[OutboxRow, Any, KlaviyoError], Awaitable[None]] | None = None,
    ) -> None:
        """Send one batch; on a rejected batch, halve it until the bad items are isolated."""
        try:
            await send(items)
        except BulkDeliveryError as exc:
            failed_ids = {id(item) for failure in exc.outcome.failures for item in failure.items}
            self._sent([r for r, item in zip(rows, items, strict=True) if id(item) not in failed_ids])
            for failure in exc.outcome.failures:
                subset = {id(item) for item in failure.items}
                pairs = [(r, item) for r, item in zip(rows, items, strict=True) if id(item) in subset]
                await self._handle(failure.error, [p[0] for p in pairs], [p[1] for p in pairs], send, on_single_failure)
            return
        except KlaviyoError as exc:
            await self._handle(exc, rows, items, send, on_single_failure)
            return
        self._sent(rows)

    async def _handle(
        self,
        error: KlaviyoError,
        rows: list[OutboxRow],
        items: list[Any],
        send: Callable[[list[Any]], Awaitable[Any]],
        on_single_failure: Callable[[OutboxRow, Any, KlaviyoError], Awaitable[None]] | None,
    ) -> None:
        if isinstance(error, ThrottledError | TransientError):
            self._retry_later(rows, error)
        elif isinstance(error, ScopeError):
            self._fail(rows, "auth_scope", error)
        elif isinstance(error, AuthError):
            self.outbox.mark([r.id for r in self._carried(rows)], "pending", str(error))
            raise _AbortRun(error)
        elif len(rows) > 1:
            half = len(rows) // 2
            await asyncio.gather(
                self._guarded(rows[:half], items[:half], send, on_single_failure),
                self._guarded(rows[half:], items[half:], send, on_single_failure),
            )
        elif on_single_failure is not None:
            await on_single_failure(rows[0], items[0], error)
        else:
            self._fail(rows, *self._classify(error, rows[0]))

    @staticmethod
    def _classify(error: KlaviyoError, row: OutboxRow) -> tuple[str, KlaviyoError, str | None]:
        if row.kind == "catalog" and isinstance(error, KlaviyoNotFoundError):
            return "unknown_sku", error, "/data/id"
        pointer = getattr(error, "pointer", None) or next((e.pointer for e in error.errors if e.pointer), None)
        return "validation_error", error, pointer

    # -- identity ----------------------------------------------------------------------------------

    async def _resolve(self, rows: list[OutboxRow]) -> dict[int, Resolution] | None:
        identities = {row.id: self.resolver.identity(row.payload.get("profile") or {}) for row in rows}
        try:
            resolved = await self.resolver.resolve(self.client, identities.values())
        except (ThrottledError, TransientError) as exc:
            self._retry_later(rows, exc)
            return None
        except ScopeError as exc:
            self._fail(rows, "auth_scope", exc)
            return None
        except AuthError as exc:
            self.outbox.mark([r.id for r in rows], "pending", str(exc))
            raise _AbortRun(exc) from None
        empty = Resolution(None, {})
        return {row_id: resolved.get(identity, empty) for row_id, identity in identities.items()}

    def _note_conflicts(self, rows: list[OutboxRow], resolutions: dict[int, Resolution]) -> None:
        for row in rows:
            resolution = resolutions[row.id]
            if resolution.conflict:
                self.outbox.note_conflict(row, resolution.conflict)

    # -- kinds ---------------------------------------------------------------------------------------

    def event_in(self, row: OutboxRow, resolution: Resolution) -> EventIn:
        p = row.payload
        return EventIn(
            metric=p["metric"],
            profile_id=resolution.profile_id,
            properties=p["properties"],
            time=_time(p["time"]),
            value=p.get("value"),
            value_currency=p.get("value_currency"),
            unique_id=p["unique_id"],
            backfill=bool(p.get("backfill")),
            **resolution.attributes,
        )

    async def _events(self, rows: list[OutboxRow], resolutions: dict[int, Resolution]) -> None:
        items, ok_rows = [], []
        for row in rows:
            try:
                items.append(self.event_in(row, resolutions[row.id]))
                ok_rows.append(row)
            except ValueError as exc:
                self._fail([row], "validation_error", f"event cannot be built: {exc}")
        await self._batches(ok_rows, items, "event", self.client.bulk_create_events)
        self._note_conflicts([r for r in ok_rows if r.id in self.delivered], resolutions)

    @staticmethod
    def profile_in(payload: dict[str, Any], resolution: Resolution) -> ProfileIn:
        fields: dict[str, Any] = {**payload.get("attributes", {})}
        if payload.get("properties"):
            fields["properties"] = payload["properties"]
        if payload.get("unset"):
            fields["patch_properties"] = PatchProperties(unset=payload["unset"])
        return ProfileIn(id=resolution.profile_id, **resolution.attributes, **fields)

    async def _profiles(
        self, rows: list[OutboxRow], resolutions: dict[int, Resolution], turn: _Turn, released: asyncio.Event
    ) -> None:
        """A wave's profile updates, as import jobs of up to 10,000 profiles and 5 MB. A profile's
        updates merge into one item, its newest row carrying the others. An update sharing an
        identifier with an earlier one still in a job (of this wave or an earlier one) is sent once
        that job has run, so two updates of one profile never race in concurrent jobs; one whose
        earlier update was not delivered waits for the next run rather than overtake it. `released`
        is set once what is left is waiting on Klaviyo's jobs."""
        try:  # whatever happens here, the next wave's turn comes
            unsent, unfinished = await self._earlier_jobs(rows)
            updates = _profile_updates(unsent, lambda row: _profile_keys(resolutions[row.id]))
            await turn.wait()
            if unfinished:  # the profiles' later updates wait, as behind an update not delivered
                held = asyncio.get_running_loop().create_future()
                held.set_result(False)
                for row in unfinished:
                    for key in _profile_keys(resolutions[row.id]):
                        self._updating[key] = held
            for update in updates:
                update.after = list({id(f): f for k in update.keys if (f := self._updating.get(k))}.values())
                for key in update.keys:
                    self._updating[key] = update.done
        finally:
            turn.end()
        try:
            waiting = updates
            while waiting:
                ready, later = _split_by(waiting, _ProfileUpdate.ready)
                if not ready:
                    released.set()
                    earlier = {f for u in waiting for f in u.after if not f.done()}
                    await asyncio.wait(earlier, return_when=asyncio.FIRST_COMPLETED)
                    continue
                waiting = later
                going, behind = _split_by(ready, lambda u: all(f.result() for f in u.after))
                if behind:
                    self._defer(
                        [r for u in behind for r in u.rows], "an earlier update of this profile was not delivered"
                    )
                await self._profile_round(going, resolutions, released)
                for update in ready:
                    self._settle(update)
        finally:
            for update in updates:  # however the run stops, nothing waits on these forever
                self._settle(update)
        self._note_conflicts([r for r in rows if r.id in self.delivered], resolutions)

    async def _earlier_jobs(self, rows: list[OutboxRow]) -> tuple[list[OutboxRow], list[OutboxRow]]:
        """Rows whose last import job an earlier run stopped waiting on: Klaviyo is asked how each
        job ended. A job complete without failures delivered its rows; one still running (or that
        cannot be asked about now) keeps them for a later run, returned second, since sending them
        again could race the job; after any other outcome (failures, cancelled, not known) they are
        sent again, returned first with the rows that were in no such job."""
        jobs: dict[str, list[OutboxRow]] = {}
        unsent: list[OutboxRow] = []
        for row in rows:
            (jobs.setdefault(row.import_job, []) if row.import_job else unsent).append(row)
        if not jobs:
            return rows, []
        unfinished: list[OutboxRow] = []
        again: list[OutboxRow] = []
        for job_id, members in jobs.items():
            try:
                job = await self.client.get_bulk_import_job(job_id)
            except (ThrottledError, TransientError) as exc:
                held = f"Klaviyo's profile import job {job_id} could not be checked: {exc}"
            except AuthError as exc:
                left = [r.id for r in rows if r.id not in self.delivered and r.id not in self.deferred]
                self.outbox.mark(left, "pending", str(exc))
                raise _AbortRun(exc) from None
            except KlaviyoError:
                again.extend(members)
                continue
            else:
                if job.status == "complete" and not job.failed_count:
                    self._sent(members)
                    continue
                if job.status in ("complete", "cancelled"):
                    again.extend(members)
                    continue
                held = f"Klaviyo's profile import job {job_id} was still {job.status}"
            self._defer(members, held)
            unfinished.extend(members)
        if again:
            self.outbox.forget_import_jobs(r.id for r in again)
            unsent = sorted(unsent + again, key=lambda row: row.id)
        return unsent, unfinished

    def _settle(self, update: _ProfileUpdate) -> None:
        if update.done.done():
            return
        delivered = update.rows[-1].id in self.delivered
        update.done.set_result(delivered)
        if delivered:  # an undelivered one stays, so the profile's later updates in this run wait
            for key in update.keys:
                if self._updating.get(key) is update.done:
                    del self._updating[key]

    async def _profile_round(
        self, updates: list[_ProfileUpdate], resolutions: dict[int, Resolution], released: asyncio.Event
    ) -> None:
        """Updates that may go together, as import jobs; each newest row carries the update's others."""
        if not updates:
            return
        rows = [u.rows[-1] for u in updates]
        items = [self.profile_in(_merged([r.payload for r in u.rows]), resolutions[u.rows[-1].id]) for u in updates]
        for update in updates:
            if len(update.rows) > 1:
                self._riders[update.rows[-1].id] = update.rows[:-1]

        async def single(row: OutboxRow, item: ProfileIn, error: KlaviyoError) -> None:
            if not isinstance(error, DuplicateProfileError) or not error.duplicate_profile_id:
                self._fail([row], *self._classify(error, row))
                return
            # Another profile owns one of the identifiers: update that one, never create a second.
            target = error.duplicate_profile_id
            try:
                await self.client.update_profile(
                    target,
                    item.model_copy(update={"id": target, "email": None, "phone_number": None, "external_id": None}),
                )
            except KlaviyoError as exc:
                self._fail([row], *self._classify(exc, row))
                return
            self._sent([row])
            self.outbox.note_conflict(
                row, {"resolved": resolutions[row.id].profile_id or "(none)", "duplicate_profile": target}
            )

        try:
            await self._batches(
                rows,
                items,
                "profile",
                lambda batch: self._import_profiles(batch, released),
                single,
                split=lambda pairs: import_batches(pairs, itemgetter(1)),
            )
        finally:
            for row in rows:
                self._riders.pop(row.id, None)

    async def _import_profiles(self, items: list[ProfileIn], released: asyncio.Event) -> Any:
        """One profile is upserted directly; more go as a bulk import job, which is only delivered
        once Klaviyo has run it: each profile it reports in the job's import errors is raised as a
        failure of that item (BulkDeliveryError), so it becomes a validation exception."""
        if len(items) == 1:
            return await self.client.upsert_profile(items[0])
        job = await self.client.bulk_import_profiles(items)
        released.set()  # the wave's slot goes to the next wave while Klaviyo runs the job
        job = await self._finished(job)
        if job.status != "complete":
            # A cancelled job imported nothing for sure: the rows are retried in a later run.
            raise TransientError(f"Klaviyo's profile import job {job.id} ended {job.status}", maybe_applied=True)
        if job.failed_count == 0:
            return job
        failures = [failure async for failure in self.client.get_bulk_import_errors(job.id)]
        outcome = _import_outcome(items, failures)
        if outcome.failures:
            raise BulkDeliveryError(outcome, "bulk_import_profiles")
        return job

    async def _finished(self, job: BulkJob) -> BulkJob:
        """Poll a bulk import job until Klaviyo has finished it (complete or cancelled). A job still
        running after IMPORT_POLL_LIMIT, or when the run's time is up, leaves its rows for the next run."""
        delay, waited = IMPORT_POLL_FIRST, 0.0
        while job.status not in ("complete", "cancelled"):
            # Polled at least once, however late: most jobs finish within a second.
            left = None if self.deadline is None or not waited else self.deadline - time.monotonic()
            if waited >= IMPORT_POLL_LIMIT or (left is not None and left <= 0):
                why = f"after {waited:.0f} s" if waited >= IMPORT_POLL_LIMIT else "when the run's time was up"
                raise _JobUnfinished(f"Klaviyo's profile import job {job.id} was still {job.status} {why}", job.id)
            if left is not None:
                delay = min(delay, left)
            await asyncio.sleep(delay)
            waited += delay
            delay = min(delay * 2, IMPORT_POLL_MAX)
            job = await self.client.get_bulk_import_job(job.id)
        return job

    async def _subscriptions(self, rows: list[OutboxRow]) -> None:
        sync = self.config.sync
        groups: dict[tuple[str, bool], list[OutboxRow]] = {}
        for row in rows:
            key = (row.kind, bool(row.payload.get("historical_import")))
            groups.setdefault(key, []).append(row)
        tasks = []
        for (kind, historical), group in groups.items():
            if kind == "subscribe":
                items = [
                    SubscriptionIn(
                        **r.payload["profile"],
                        channels=(r.payload["channel"],),
                        consented_at=_time(r.payload.get("consented_at")) if historical else None,
                    )
                    for r in group
                ]

                async def subscribe(batch: list[SubscriptionIn], historical: bool = historical) -> Any:
                    return await self.client.subscribe_profiles(
                        batch,
                        historical_import=historical,
                        list_id=sync.consent_list_id,
                        custom_source=sync.consent_custom_source,
                    )

                tasks.append(self._batches(group, items, "subscribe", subscribe))
            else:
                items = [UnsubscriptionIn(**r.payload["profile"], channels=(r.payload["channel"],)) for r in group]

                async def unsubscribe(batch: list[UnsubscriptionIn]) -> Any:
                    return await self.client.unsubscribe_profiles(batch, list_id=sync.consent_list_id)

                tasks.append(self._batches(group, items, "unsubscribe", unsubscribe))
        await asyncio.gather(*tasks)

    async def _known_variants(self, variant_ids: list[str]) -> set[str]:
        db = self.outbox.store.db
        known = {
            r["variant_id"]
            for start in range(0, len(variant_ids), 500)
            for r in db.query(
                f"select variant_id from catalog_cache where known = 1 and variant_id in ({','.join('?' * len(variant_ids[start : start + 500]))})",
                variant_ids[start : start + 500],
            )
        }
        missing = [v for v in variant_ids if v not in known]
        for start in range(0, len(missing), 100):
            chunk = missing[start : start + 100]
            expression = f"any(ids,[{','.join(literal(v) for v in chunk)}])"
            found = [variant.id async for variant in self.client.get_catalog_variants(filter=expression)]
            known.update(found)
            if found:
                with self.outbox.store.transaction() as tx:
                    tx["catalog_cache"].upsert_all(
                        [{"variant_id": v, "known": 1, "checked_at": now_iso()} for v in found], pk="variant_id"
                    )
        return known

    async def _catalog(self, rows: list[OutboxRow]) -> None:
        # Only the newest quantity of a variant matters; older rows in the wave are coalesced into it.
        latest: dict[str, OutboxRow] = {}
        for row in rows:
            latest[row.payload["variant_id"]] = row
        older = [r for r in rows if latest[r.payload["variant_id"]] is not r]
        if older:
            self.outbox.mark([r.id for r in older], "superseded")
            self.summary.coalesced += len(older)
            self.on_done(older, True)
        chosen = list(latest.values())
        try:
            known = await self._known_variants([r.payload["variant_id"] for r in chosen])
        except (ThrottledError, TransientError) as exc:
            self._retry_later(chosen, exc)
            return
        except ScopeError as exc:
            self._fail(chosen, "auth_scope", exc)
            return
        unknown = [r for r in chosen if r.payload["variant_id"] not in known]
        for row in unknown:
            self._fail(
                [row],
                "unknown_sku",
                f"SKU {row.payload['sku']} has no variant {row.payload['variant_id']} in the Klaviyo catalog",
                pointer="/data/id",
            )
        deliver = [r for r in chosen if r.payload["variant_id"] in known]
        items = [
            VariantInventory(id=r.payload["variant_id"], inventory_quantity=r.payload["inventory_quantity"])
            for r in deliver
        ]
        await self._batches(deliver, items, "catalog", self.client.bulk_update_catalog_variants)

    async def _batches(
        self,
        rows: list[OutboxRow],
        items: list[Any],
        kind: str,
        send: Callable[[list[Any]], Awaitable[Any]],
        on_single_failure: Callable[[OutboxRow, Any, KlaviyoError], Awaitable[None]] | None = None,
        *,
        split: Callable[[list[tuple[OutboxRow, Any]]], Iterable[list[tuple[OutboxRow, Any]]]] | None = None,
    ) -> None:
        """Send the items in concurrent batches of the kind's size, or as `split` cuts the (row, item) pairs."""
        pairs = list(zip(rows, items, strict=True))
        if split is None:
            size = BATCH[kind]
            batches: Iterable[list[tuple[OutboxRow, Any]]] = (pairs[i : i + size] for i in range(0, len(pairs), size))
        else:
            batches = split(pairs)
        await asyncio.gather(
            *(
                self._guarded([row for row, _ in batch], [item for _, item in batch], send, on_single_failure)
                for batch in batches
            )
        )

    async def deliver(self, rows: list[OutboxRow]) -> None:
        """One wave: every endpoint's share goes out at once; consent, profile and catalog shares of
        successive waves keep their order (a later value must not overtake an earlier one)."""
        by_kind: dict[str, list[OutboxRow]] = {}
        for row in rows:
            by_kind.setdefault(row.kind, []).append(row)
        events, profiles = by_kind.get("event", []), by_kind.get("profile", [])
        subscriptions = by_kind.get("subscribe", []) + by_kind.get("unsubscribe", [])
        tasks = []
        if events or profiles:
            turn = _Turn(self._last_turn)
            self._last_turn = turn.own
            tasks.append(self._identified(events, profiles, turn))
        if subscriptions:
            tasks.append(self._in_order("consent", self._subscriptions(subscriptions)))
        if by_kind.get("catalog"):
            tasks.append(self._in_order("catalog", self._catalog(by_kind["catalog"])))
        await asyncio.gather(*tasks)

    async def _identified(self, events: list[OutboxRow], profiles: list[OutboxRow], turn: _Turn) -> None:
        """Events and profile updates, once their profiles are resolved. The wave is done with its
        profile share once that share is only waiting on import jobs: the share goes on in `imports`."""
        try:
            resolutions = await self._resolve(events + profiles)
        except BaseException:
            turn.end()
            raise
        if resolutions is None:
            turn.end()
            return
        tasks: list[Awaitable[Any]] = [self._events(events, resolutions)] if events else []
        if profiles:
            released = asyncio.Event()
            share = asyncio.create_task(self._profiles(profiles, resolutions, turn, released))
            share.add_done_callback(lambda _done: released.set())
            self.imports.add(share)
            tasks.append(released.wait())
        else:
            turn.end()
        await asyncio.gather(*tasks)

    async def _in_order(self, share: str, delivery: Awaitable[None]) -> None:
        # asyncio locks are first come, first served, and waves reach them in the order they started.
        async with self._order_locks.setdefault(share, asyncio.Lock()):
            await delivery


def _lane_totals(store: Store, source: str | None, only_ids: list[int] | None) -> dict[int, int]:
    clauses, params = ["status = 'pending'"], []
    if source:
        clauses.append("system = ?")
        params.append(source)
    if only_ids is not None:
        clauses.append(f"id in ({','.join('?' * len(only_ids)) or 'null'})")
        params.extend(only_ids)
    rows = store.db.query(f"select lane, count(*) as n from outbox where {' and '.join(clauses)} group by lane", params)
    return {r["lane"]: r["n"] for r in rows}


async def _deliver_all(
    outbox: Outbox,
    client: Any,
    options: SyncOptions,
    summary: RunSummary,
    progress: ProgressCallback | None,
    deadline: float | None,
) -> None:
    store = outbox.store
    delivery = Delivery(outbox, IdentityResolver(store, outbox.config.identity), client, summary, deadline)
    totals = _lane_totals(store, options.source, options.only_outbox_ids)
    done: Counter[int] = Counter()
    failed: Counter[int] = Counter()

    def report(rows: list[OutboxRow], ok: bool) -> None:
        for row in rows:
            (done if ok else failed)[row.lane] += 1
        if progress:
            for lane in {r.lane for r in rows}:
                progress(LaneProgress(LANE_NAMES[lane], done[lane] + failed[lane], totals.get(lane, 0), failed[lane]))

    delivery.on_done = report
    if progress:
        for lane, total in sorted(totals.items()):
            progress(LaneProgress(LANE_NAMES[lane], 0, total, 0))
    claimed = 0
    wave_size = outbox.config.sync.wave_size
    in_flight: set[asyncio.Task[None]] = set()
    imports = delivery.imports
    try:
        while deadline is None or time.monotonic() < deadline:
            for task in [t for t in imports if t.done()]:
                imports.discard(task)
                task.result()
            room = wave_size if options.limit is None else min(wave_size, options.limit - claimed)
            rows = []
            if room > 0 and len(in_flight) < WAVES_IN_FLIGHT and len(imports) < IMPORTS_IN_FLIGHT:
                rows = outbox.claim_wave(
                    summary.run_id or 0, limit=room, source=options.source, only_ids=options.only_outbox_ids
                )
            if rows:
                claimed += len(rows)
                log.info(
                    "wave of %d operations (%s)",
                    len(rows),
                    ", ".join(f"{k}={v}" for k, v in Counter(r.kind for r in rows).items()),
                )
                in_flight.add(asyncio.create_task(delivery.deliver(rows)))
                await asyncio.sleep(0)  # let the wave build and send its first requests
                continue
            if not in_flight and not imports:
                break
            # Rows held behind the waves in flight become claimable once those are delivered.
            finished, _ = await asyncio.wait(in_flight | imports, return_when=asyncio.FIRST_COMPLETED)
            for task in finished & in_flight:
                in_flight.discard(task)
                task.result()
    finally:
        # A wave already sending finishes and records its outcomes, whatever stopped the loop.
        await asyncio.gather(*in_flight, *imports, return_exceptions=True)
        summary.deferred = len(delivery.deferred)
        outbox.release_deferred()


def _record_start(store: Store, options: SyncOptions) -> int:
    with store.transaction() as db:
        return (
            db["sync_runs"]
            .insert(
                {
                    "command": options.command,
                    "pid": os.getpid(),
                    "started_at": now_iso(),
                    "status": "running",
                    "counts": "{}",
                }
            )
            .last_pk
        )


def _record_end(store: Store, summary: RunSummary) -> None:
    summary.finished_at = now_iso()
    with store.transaction() as db:
        db["sync_runs"].update(
            summary.run_id,
            {
                "finished_at": summary.finished_at,
                "status": summary.status,
                "exit_status": summary.exit_status,
                "counts": json.dumps(summary.to_json()),
                "error": summary.error,
            },
        )


def _waiting(store: Store, source: str | None, hold_minutes: float) -> tuple[int, int]:
    where, params = ("and system = ?", [source]) if source else ("", [])
    pending = next(store.db.query(f"select count(*) as n from outbox where status = 'pending' {where}", params))["n"]
    held = next(
        store.db.query(
            f"""select count(*) as n from outbox o where o.status = 'pending' {where.replace("system", "o.system")}
                and o.order_key is not null and exists (select 1 from outbox p where p.order_key = o.order_key
                and p.kind = o.kind and p.stage < o.stage and p.status in ('pending', 'in_flight', 'exception'))""",
            params,
        )
    )["n"]
    return pending, held


def run_sync(
    workspace: Workspace,
    options: SyncOptions,
    *,
    client_factory: ClientFactory | None = None,
    progress: ProgressCallback | None = None,
    store: Store | None = None,
) -> RunSummary:
    """Run one sync under the workspace lock; the summary is also recorded in `sync_runs`."""
    if options.dry_run:
        raise ValueError("use plan_sync for a dry run")
    own_store = store is None
    store = store or workspace.store()
    try:
        with fewer_collections(RUN_YOUNG_THRESHOLD):
            return _locked_run(workspace.config, store, options, client_factory, progress)
    finally:
        if own_store:
            store.close()


def _locked_run(
    config: Config,
    store: Store,
    options: SyncOptions,
    client_factory: ClientFactory | None,
    progress: ProgressCallback | None,
) -> RunSummary:
    summary = RunSummary(started_at=now_iso())
    deadline = time.monotonic() + options.max_minutes * 60 if options.max_minutes else None
    try:
        stale = lock.acquire(store)
    except LockHeldError as exc:
        summary.run_id = _record_start(store, options)
        summary.status, summary.exit_status, summary.error = "locked", int(ExitStatus.LOCKED), exc.message
        _record_end(store, summary)
        raise
    try:
        summary.stale_lock_pid = stale.pid if stale else None
        with store.transaction() as db:
            db.execute("update sync_runs set status = 'died' where status = 'running'")
        summary.run_id = _record_start(store, options)
        lock.set_run(store, summary.run_id)
        outbox = Outbox(store, config)
        summary.recovered = outbox.recover_in_flight()
        if options.only_outbox_ids is None:
            summary.enqueued = outbox.enqueue_new()
            if options.backfill_since is not None:
                summary.enqueued.add(outbox.enqueue_backfill(options.backfill_since))
        try:
            asyncio.run(
                _run_delivery(outbox, options, summary, progress, deadline, client_factory or default_client_factory)
            )
            summary.status = "ok"
        except _AbortRun as abort:
            summary.status, summary.exit_status, summary.error = (
                "failed",
                int(abort.error.exit_status),
                abort.error.message,
            )
        except KeyboardInterrupt:
            summary.status, summary.exit_status = "interrupted", int(ExitStatus.INTERRUPTED)
            raise
        except CogentError as exc:
            summary.status, summary.exit_status, summary.error = "failed", int(exc.exit_status), exc.message
            raise
        finally:
            summary.waiting, summary.held = _waiting(store, options.source, config.sync.hold_minutes)
            _record_end(store, summary)
    finally:
        lock.release(store)
    return summary


async def _run_delivery(
    outbox: Outbox,
    options: SyncOptions,
    summary: RunSummary,
    progress: ProgressCallback | None,
    deadline: float | None,
    client_factory: ClientFactory,
) -> None:
    async with client_factory(outbox.config) as client:
        try:
            await _deliver_all(outbox, client, options, summary, progress, deadline)
        finally:
            summary.klaviyo_requests = {
                name: stats.requests for name, stats in sorted(client.stats.operations.items()) if stats.requests
            }


# -- dry run -----------------------------------------------------------------------------------------


@dataclass
class PlannedOp:
    lane: str
    kind: str
    metric: str
    event_id: str
    system: str | None
    backfill: bool
    payload: dict[str, Any]
    status: str


@dataclass
class SyncPlan:
    ops: list[PlannedOp] = field(default_factory=list)
    problems: list[tuple[str, str, str]] = field(default_factory=list)  # event id, class, message
    skipped: Counter[str] = field(default_factory=Counter)
    unread: int = 0


def plan_sync(workspace: Workspace, options: SyncOptions, store: Store | None = None) -> SyncPlan:
    """What a run would send, without sending or changing anything: queued operations first, then
    the operations the unread events would become under the current mapping."""
    own_store = store is None
    store = store or workspace.store()
    try:
        config = workspace.config
        outbox = Outbox(store, config)
        plan = SyncPlan(unread=outbox.unread())
        limit = options.limit or 10_000
        clauses, params = ["status in ('pending', 'in_flight')"], []
        if options.source:
            clauses.append("system = ?")
            params.append(options.source)
        if options.only_outbox_ids is not None:
            clauses.append(f"id in ({','.join('?' * len(options.only_outbox_ids)) or 'null'})")
            params.extend(options.only_outbox_ids)
        for row in store.db.query(
            f"select * from outbox where {' and '.join(clauses)} order by lane, id limit ?", [*params, limit]
        ):
            r = OutboxRow.from_row(row)
            plan.ops.append(
                PlannedOp(LANE_NAMES[r.lane], r.kind, r.metric, r.event_id, r.system, r.backfill, r.payload, r.status)
            )
        if options.only_outbox_ids is None:
            mapper = Mapper(config)
            cutoff = outbox.history_cutoff(datetime.now(UTC))
            for row in store.db.query(
                "select rowid, event_id, system, body from events where rowid > ? order by rowid limit ?",
                [outbox.position(), max(limit - len(plan.ops), 0)],
            ):
                if options.source and row["system"] != options.source:
                    continue
                try:
                    event = parse_event(row["body"])
                    backfill = outbox.is_historical(event, cutoff) or options.backfill_since is not None
                    mapped = mapper.map(event, backfill=backfill)
                except MappingError as exc:
                    plan.problems.append((row["event_id"], exc.exception_class, exc.message))
                    continue
                except ValueError as exc:
                    plan.problems.append((row["event_id"], "source_payload_invalid", str(exc).splitlines()[0]))
                    continue
                if mapped.skipped:
                    plan.skipped[mapped.skipped] += 1
                for op in mapped.ops:
                    if op.clv_unique_id:
                        op.payload["unique_id"] = (
                            f"{op.clv_unique_id} (if first {op.metric} of the order, else {op.payload['unique_id']})"
                        )
                    plan.ops.append(
                        PlannedOp(
                            LANE_NAMES[op.lane],
                            op.kind,
                            op.metric,
                            event.event_id,
                            event.source.system,
                            backfill,
                            op.payload,
                            "new",
                        )
                    )
        return plan
    finally:
        if own_store:
            store.close()


def flatten(payload: Any, prefix: str = "") -> Iterable[tuple[str, Any]]:
    """Field paths and values of a payload, for the field-by-field dry-run listing."""
    if isinstance(payload, dict):
        for key, value in payload.items():
            yield from flatten(value, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(payload, list) and payload and any(isinstance(v, dict | list) for v in payload):
        for index, value in enumerate(payload):
            yield from flatten(value, f"{prefix}[{index}]")
    else:
        yield prefix, payload


# -- replay ------------------------------------------------------------------------------------------


@dataclass
class ReplayItem:
    exception_id: int
    exception_class: str
    outcome: str  # requeued | still failing | not replayable
    detail: str
    outbox_ids: list[int] = field(default_factory=list)
    payloads: list[dict[str, Any]] = field(default_factory=list)


class _Rollback(Exception):
    pass


def requeue_exceptions(store: Store, config: Config, records: list[Any], *, dry_run: bool) -> list[ReplayItem]:
    """Map each exception's event again under the current configuration and queue it for delivery.

    Idempotent: an exception already replayed or resolved is not touched again, and a requeued
    operation keeps its unique_id, so delivering it twice is absorbed by Klaviyo's dedupe."""
    outbox = Outbox(store, config)
    items: list[ReplayItem] = []
    try:
        with store.transaction() as db:
            for record in records:
                row = (
                    next(db.query("select * from outbox where id = ?", [record.outbox_id]), None)
                    if record.outbox_id
                    else None
                )
                if record.status != "open" or row is None or row["status"] != "exception":
                    reason = (
                        f"exception is {record.status}"
                        if record.status != "open"
                        else "its operation was delivered (to the best matching profile); resolve it once reviewed"
                        if row is not None
                        else "no queued operation"
                    )
                    items.append(ReplayItem(record.id, record.exception_class, "not replayable", reason))
                    continue
                try:
                    queued = outbox.remap(db, row["id"])
                except MappingError as exc:
                    db["sync_exceptions"].update(record.id, {"last_error": exc.message, "updated_at": now_iso()})
                    items.append(ReplayItem(record.id, record.exception_class, "still failing", exc.message))
                    continue
                payloads = [
                    json.loads(r["payload"])
                    for r in db.query(
                        f"select payload from outbox where id in ({','.join('?' * len(queued)) or 'null'})", queued
                    )
                ]
                db["sync_exceptions"].update(
                    record.id, {"status": "replayed", "updated_at": now_iso(), "note": f"requeued as outbox {queued}"}
                )
                items.append(
                    ReplayItem(
                        record.id, record.exception_class, "requeued", f"{len(queued)} operation(s)", queued, payloads
                    )
                )
            if dry_run:
                raise _Rollback
    except _Rollback:
        pass
    return items


def replay(
    workspace: Workspace,
    records: list[Any],
    *,
    dry_run: bool = False,
    client_factory: ClientFactory | None = None,
    progress: ProgressCallback | None = None,
) -> tuple[list[ReplayItem], RunSummary | None]:
    """Requeue the given exceptions (under the lock) and deliver exactly those operations."""
    with workspace.store() as store:
        if dry_run:
            return requeue_exceptions(store, workspace.config, records, dry_run=True), None
        with lock.workspace_lock(store):
            items = requeue_exceptions(store, workspace.config, records, dry_run=False)
        ids = [i for item in items for i in item.outbox_ids]
        if not ids:
            return items, None
        summary = run_sync(
            workspace,
            SyncOptions(only_outbox_ids=ids, command="replay"),
            client_factory=client_factory,
            progress=progress,
            store=store,
        )
    return items, summary
