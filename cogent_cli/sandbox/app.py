"""The sandbox's ASGI application: Klaviyo's API under /api, inspection under /sandbox, extra routes
(the source-system stand-ins) wherever they are mounted.

Each /api request goes through what Klaviyo applies, in order: authentication, the `revision` header,
routing by the spec, the operation's rate limit, then (if configured) an injected fault, validation
of query and body against the spec, and the operation itself in one transaction.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import Receive, Scope, Send

from cogent_cli.klaviyo.spec import Operation, load_spec, match_operation, operations
from cogent_cli.normalise import json_text
from cogent_cli.sandbox import catalog, consent, events, jobs, profiles  # noqa: F401  (register their handlers)
from cogent_cli.sandbox.calls import HANDLERS, Call
from cogent_cli.sandbox.faults import Fault, FaultInjector, FaultSpec
from cogent_cli.sandbox.inspection import inspection_routes
from cogent_cli.sandbox.jsonapi import ApiError, error_entry, invalid
from cogent_cli.sandbox.ratelimit import Clock, RateLimiter
from cogent_cli.sandbox.store import SandboxStore
from cogent_cli.sandbox.validation import body_schema_ref, validate_body, validate_query

log = logging.getLogger("cogent.sandbox")

MAX_BODY_BYTES = 5 * 1024 * 1024
DROP_CONNECTION = "cogent.drop_connection"
_AUTH = re.compile(r"^Klaviyo-API-Key \S+$")
_REVISION = re.compile(r"^(\d{4}-\d{2}-\d{2})(\.[A-Za-z0-9]+)?$")
BODY_MEDIA_TYPES = ("application/vnd.api+json", "application/json")


@dataclass
class SandboxState:
    store: SandboxStore
    limiter: RateLimiter
    faults: FaultInjector | None
    job_seconds: float = 0.0
    stats: Counter[str] = field(default_factory=Counter)


@cache
def _path_pattern(path: str) -> re.Pattern[str]:
    return re.compile("^" + re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(path)) + "/?$")


@lru_cache(maxsize=8192)
def _route(method: str, path: str) -> tuple[Operation, dict[str, str]]:
    trimmed = path.rstrip("/") or path
    operation = match_operation(method, trimmed)
    if operation is None:
        if any(op.pattern.match(trimmed) for op in operations().values()):
            raise ApiError.one(405, f"Method '{method}' is not allowed on '{path}'.")
        raise ApiError.one(404, f"There is no Klaviyo API endpoint at '{path}'.")
    match = _path_pattern(operation.path).match(trimmed)
    return operation, dict(match.groupdict()) if match else {}


def _check_headers(request: Request) -> None:
    # Any key is accepted; it is never stored or logged.
    if not _AUTH.match(request.headers.get("authorization", "")):
        raise ApiError.one(
            401,
            "Missing or invalid private key. Send `Authorization: Klaviyo-API-Key <key>`.",
            pointer="/data/",
        )
    revision = request.headers.get("revision")
    if not revision:
        raise invalid("The 'revision' header is required (e.g. revision: 2026-07-15).", parameter="revision")
    match = _REVISION.match(revision)
    if not match or match.group(1) > load_spec()["info"]["version"][:10]:
        raise invalid(
            f"'{revision}' is not a valid revision; this sandbox implements {load_spec()['info']['version']}.",
            parameter="revision",
        )


async def _read_body(request: Request, operation: Operation) -> Any:
    if body_schema_ref(operation) is None:
        return None
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type not in BODY_MEDIA_TYPES:
        raise ApiError.one(
            415, f"Content-Type must be application/vnd.api+json (or application/json), not '{media_type or 'none'}'."
        )
    raw = await request.body()
    if len(raw) > MAX_BODY_BYTES:
        raise ApiError.one(413, f"The request body is {len(raw)} bytes; the limit is 5 MB.")
    try:
        return json_text.loads(raw)
    except ValueError as exc:
        raise invalid(f"The request body is not valid JSON ({exc}).", pointer="/") from None


def _throttled(retry_after: int) -> ApiError:
    unit = "second" if retry_after == 1 else "seconds"
    entry = error_entry(
        429,
        f"Request was throttled. Expected available in {retry_after} {unit}.",
        pointer="/data",
    )
    entry["links"] = {"type": "https://developers.klaviyo.com/en/docs/rate_limits_and_error_handling#rate-limits"}
    return ApiError(429, [entry], {"Retry-After": str(retry_after)})


class KlaviyoApi:
    """The ASGI app answering /api/... as Klaviyo would."""

    def __init__(self, state: SandboxState) -> None:
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        fault: Fault | None = None
        headers: dict[str, str] = {}
        stats = self.state.stats
        stats["requests"] += 1
        try:
            _check_headers(request)
            operation, path_params = _route(request.method, request.url.path)
            path_params = dict(path_params)
            verdict = self.state.limiter.hit(operation.operation_id, operation.rate_limit)
            if not verdict.allowed:
                stats["throttled"] += 1
                raise _throttled(verdict.retry_after)
            headers = {
                "RateLimit-Limit": str(verdict.limit),
                "RateLimit-Remaining": str(verdict.remaining),
                "RateLimit-Reset": str(verdict.reset),
            }
            fault = self.state.faults.draw() if self.state.faults else None
            if fault:
                stats[f"fault.{fault.kind}.{fault.phase}"] += 1
            if fault and fault.phase == "before":
                await self._fail_before(fault, scope)
                if fault.kind == "reset":
                    return
            query = validate_query(operation, request.query_params)
            body = await _read_body(request, operation)
            response = self._handle(operation, path_params, query, body, request)
        except ApiError as error:
            response = error.response()
        if fault and fault.phase == "after":
            if fault.kind == "reset":
                await self._drop(scope)
                return
            await asyncio.sleep(self.state.faults.spec.delay if self.state.faults else 0)
        if response.status_code != 429:
            response.headers.update(headers)
        stats[f"status.{response.status_code}"] += 1
        log.debug("%s %s -> %s", request.method, request.url.path, response.status_code)
        await response(scope, receive, send)

    def _handle(
        self, operation: Operation, path_params: dict[str, str], query: dict[str, Any], body: Any, request: Request
    ) -> Response:
        handler = HANDLERS.get(operation.operation_id)
        if handler is None:
            raise ApiError.one(
                501, f"The sandbox does not implement '{operation.operation_id}' ({operation.method} {operation.path})."
            )
        validate_body(operation, body)
        call = Call(operation, path_params, query, body, self.state.store, request.url, self.state.job_seconds)
        with self.state.store.transaction():
            return handler(call)

    async def _fail_before(self, fault: Fault, scope: Scope) -> None:
        """Faults that hit before the write: nothing is applied."""
        if fault.kind == "5xx":
            raise ApiError.one(fault.status, "Injected server error: nothing was applied.")
        if fault.kind == "429":
            raise _throttled(1)
        if fault.kind == "timeout":
            await asyncio.sleep(self.state.faults.spec.delay if self.state.faults else 0)
            raise ApiError.one(504, "Injected timeout: nothing was applied.")
        await self._drop(scope)

    async def _drop(self, scope: Scope) -> None:
        drop: Callable[[], None] | None = scope.get("extensions", {}).get(DROP_CONNECTION)
        if drop is None:
            raise RuntimeError("connection reset requested, but the server offers no way to drop a connection")
        drop()
        # Let the server notice the closed connection before the app returns.
        await asyncio.sleep(0)


def build_app(
    data_dir: Path,
    rate_scale: float = 1.0,
    faults: FaultSpec | None = None,
    extra_routes: Sequence[BaseRoute] = (),
    clock: Clock | None = None,
    job_seconds: float = 0.0,
) -> Starlette:
    """The sandbox app over `data_dir/klaviyo.db`; `extra_routes` are mounted beside /api and /sandbox.
    Bulk jobs read `processing` for `job_seconds` after they are created, as Klaviyo's take a while."""
    operations()  # parse the spec now rather than on the first request
    store = SandboxStore.open(data_dir)
    limiter = RateLimiter(rate_scale, clock) if clock else RateLimiter(rate_scale)
    state = SandboxState(store, limiter, FaultInjector(faults) if faults else None, job_seconds)
    routes: list[BaseRoute] = [
        Route("/api/{rest:path}", KlaviyoApi(state)),
        *inspection_routes(state),
        *extra_routes,
    ]

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        yield
        store.close()

    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.sandbox = state
    return app


def sandbox_state(app: Starlette) -> SandboxState:
    state: SandboxState = app.state.sandbox
    return state
