"""The webhook receiver behind `cogent listen`: one path per source system.

Paths (SECRET = the per-source token stored with `cogent auth set SYSTEM --name ...`):

| Path | Method | Verified by | Inbox kind |
|---|---|---|---|
| `/webhooks/marketplacer` | POST | `Marketplacer-Hmac-256` (secret `webhook_secret`) | `marketplacer_webhook` |
| `/webhooks/swap` | POST | JWT in the body (secret `webhook_secret`) | `swap_webhook` |
| `/webhooks/clarus/SECRET` | POST | URL token (secret `webhook_token`) | `clarus_webhook` |
| `/webhooks/scend/SECRET` | POST | URL token (secret `webhook_token`) | `scend_webhook` |
| `/webhooks/peoplevox/SECRET/EVENT` | GET, POST | URL token (secret `callback_token`) | see below |
| `/healthz` | GET | none | - |

Peoplevox callbacks carry their data as query parameters (and, for `SubscribePostEvent`, a form
body). They are stored as one JSON object of those parameters. EVENT (the last path segment) names
the inbox kind: a Peoplevox normaliser kind (`tracking_number_received`, `package_despatched`, ...) or a
Peoplevox event type (`TrackingNumberReceived`, `DespatchPackageDespatched`, `Returns`, ...). Anything
else is detected from the parameters, and failing that stored as kind `peoplevox_callback`, which
quarantines it until it is re-filed. The idempotency key is the kind's natural key (despatch number +
tracking number, ...) or a hash of the parameters.

Order of work for every request: verify (401 and a log line without secrets on failure) ->
write the raw body to the inbox in its own transaction -> normalise it -> answer. A duplicate
(same idempotency key) is not stored again and is answered 200. A body that is authentic but cannot
be normalised stays in the inbox as quarantined; Marketplacer still gets 200 (any 4xx disables its
webhook), the others get 422 with the reason.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cogent_cli.config import Config
from cogent_cli.credentials import Credentials
from cogent_cli.errors import CredentialError
from cogent_cli.ingest import detect_json_kind, record_key
from cogent_cli.normalise.base import load_normalisers
from cogent_cli.normalise.reading import body_hash
from cogent_cli.webhooks import (
    WebhookAuthError,
    swap_return_object,
    verify_hmac_header,
    verify_swap,
    verify_token,
)

logger = logging.getLogger("cogent.listen")

# Peoplevox event types (SubscribeEvent names) -> the inbox kind their callbacks are normalised as.
PEOPLEVOX_EVENT_KINDS: dict[str, str] = {
    "TrackingNumberReceived": "tracking_number_received",
    "DespatchPackageDespatched": "package_despatched",
    "DespatchPackageTrackingNumberReceived": "package_despatched",
    "Returns": "returns_event",
    "SalesOrderStatusChanges": "sales_order_status_changed",
    "AvailabilityChanges": "availability_changed",
    "IncrementalChanges": "incremental_change",
}
KINDS: dict[str, str] = {
    "marketplacer": "marketplacer_webhook",
    "swap": "swap_webhook",
    "clarus": "clarus_webhook",
    "scend": "scend_webhook",
    "peoplevox": "peoplevox_callback",
}
SECRET_NAMES: dict[str, str] = {
    "marketplacer": "webhook_secret",
    "swap": "webhook_secret",
    "clarus": "webhook_token",
    "scend": "webhook_token",
    "peoplevox": "callback_token",
}
TOKEN_SYSTEMS = frozenset({"clarus", "scend", "peoplevox"})
MAX_BODY_BYTES = 10 * 1024 * 1024
# Headers worth keeping with the raw body; the rest (cookies, proxies' auth) are dropped.
KEPT_HEADER_PREFIXES = ("marketplacer-", "idempotency-key", "x-claruswms-", "x-swap-", "content-type", "user-agent")

T = TypeVar("T")


@dataclass(frozen=True)
class Endpoint:
    system: str
    path: str
    methods: tuple[str, ...]


ENDPOINTS = (
    Endpoint("marketplacer", "/webhooks/marketplacer", ("POST",)),
    Endpoint("swap", "/webhooks/swap", ("POST",)),
    Endpoint("clarus", "/webhooks/clarus/{token}", ("POST",)),
    Endpoint("scend", "/webhooks/scend/{token}", ("POST",)),
    Endpoint("peoplevox", "/webhooks/peoplevox/{token}/{event}", ("GET", "POST")),
)


def resolve_secrets(config: Config, credentials: Credentials | None = None) -> dict[str, str]:
    """The verification secret of every enabled source that has one; others are left out."""
    credentials = credentials or Credentials(config)
    found: dict[str, str] = {}
    for system in config.sources.enabled():
        if system not in SECRET_NAMES:
            continue
        try:
            found[system] = credentials.get(system, SECRET_NAMES[system])
        except CredentialError:
            continue
    return found


def describe_endpoints(config: Config, secrets: Mapping[str, str]) -> list[tuple[str, str, str]]:
    """(system, path with SECRET placeholder, state) for the start-up banner and `--help` docs."""
    rows = []
    enabled = config.sources.enabled()
    for endpoint in ENDPOINTS:
        path = endpoint.path.replace("{token}", "SECRET").replace("{event}", "EVENT")
        if endpoint.system not in enabled:
            state = f"off: add [sources.{endpoint.system}] to cogent.toml"
        elif endpoint.system not in secrets:
            state = f"off: run `cogent auth set {endpoint.system} --name {SECRET_NAMES[endpoint.system]}`"
        else:
            state = "on"
        rows.append((endpoint.system, path, state))
    return rows


def _kept_headers(request: Request) -> dict[str, str]:
    return {key: value for key, value in request.headers.items() if key.lower().startswith(KEPT_HEADER_PREFIXES)}


def _safe_path(path: str) -> str:
    """The request path with the URL token masked (it is a secret, even when it is a wrong one)."""
    parts = path.split("/")
    if len(parts) > 3 and parts[1] == "webhooks" and parts[2] in TOKEN_SYSTEMS:
        parts[3] = "***"
    return "/".join(parts)


class _StoreWorker:
    """All state access on one thread: SQLite connections belong to the thread that opened them."""

    def __init__(self, open_store: Callable[[], Any]) -> None:
        self._open_store = open_store
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cogent-listen-store")
        self.store: Any = None

    async def run(self, fn: Callable[[Any], T]) -> T:
        def call() -> T:
            if self.store is None:
                self.store = self._open_store()
            return fn(self.store)

        return await asyncio.get_running_loop().run_in_executor(self._executor, call)

    async def close(self) -> None:
        def close_store() -> None:
            if self.store is not None:
                self.store.close()
                self.store = None

        await asyncio.get_running_loop().run_in_executor(self._executor, close_store)
        self._executor.shutdown(wait=True)


@dataclass(frozen=True)
class Delivery:
    system: str
    kind: str
    idempotency_key: str
    body: str
    headers: dict[str, str]


@dataclass(frozen=True)
class Outcome:
    inbox_id: int
    duplicate: bool
    status: str
    reason: str | None = None


def _store_and_normalise(config: Config, delivery: Delivery) -> Callable[[Any], Outcome]:
    def work(store: Any) -> Outcome:
        from cogent_cli.inbox import Inbox

        inbox = Inbox(store)
        receipt = inbox.receive(
            delivery.system,
            "webhook",
            delivery.kind,
            delivery.idempotency_key,
            delivery.body,
            headers=delivery.headers,
        )
        if not receipt.duplicate:
            try:
                inbox.normalise_pending(config, ids=[receipt.id])
            except Exception:
                # The raw body is safely stored; `cogent inbox retry` normalises it later.
                logger.exception("normalising inbox row %s failed; it stays pending", receipt.id)
        row = store.db.execute("select status, reason from inbox where id = ?", [receipt.id]).fetchone()
        status, reason = (row[0], row[1]) if row else ("pending", None)
        return Outcome(receipt.id, receipt.duplicate, status, reason)

    return work


def _swap_idempotency_key(claims: Mapping[str, Any], body: Mapping[str, Any]) -> str:
    returned = swap_return_object(body)
    updated = returned.get("date_updated") or returned.get("updated_at") or claims.get("nonce")
    return f"{claims['event']}|{claims['return_id']}|{updated}"


def _clarus_idempotency_key(headers: Mapping[str, str], raw: bytes) -> str:
    automation = headers.get("x-claruswms-automation-id", "")
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):
        body = None
    if isinstance(body, dict) and body.get("id") is not None:
        status = body.get("status")
        if isinstance(body.get("goods_out_status"), dict):
            status = body["goods_out_status"].get("code")
        moment = body.get("updated_at") or body.get("actual_date_of_dispatch")
        if moment:
            return f"{automation}|{body.get('type', '')}|{body['id']}|{status or ''}|{moment}"
    return f"{automation}|sha256:{body_hash(raw)}"


def _scend_idempotency_key(raw: bytes) -> str:
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):
        body = None
    if isinstance(body, dict) and isinstance(body.get("event_id"), str | int) and str(body["event_id"]).strip():
        return f"event:{body['event_id']}"
    return _record_key("scend", KINDS["scend"], body, raw)


def _peoplevox_kind(event: str, params: Mapping[str, Any]) -> str:
    registry = load_normalisers()
    by_name = {name.lower(): kind for name, kind in PEOPLEVOX_EVENT_KINDS.items()}
    for candidate in (event, by_name.get(event.lower())):
        if candidate and ("peoplevox", candidate) in registry:
            return candidate
    detected = detect_json_kind("peoplevox", dict(params))
    return detected.kind if detected is not None else KINDS["peoplevox"]


def _record_key(system: str, kind: str, record: Any, raw: bytes) -> str:
    """The kind's natural key when it has one, else a hash of the body."""
    normaliser = load_normalisers().get((system, kind))
    fallback = f"sha256:{body_hash(raw)}"
    return record_key(normaliser, record, fallback) if isinstance(record, dict) else fallback


def create_app(
    config: Config,
    open_store: Callable[[], Any],
    secrets: Mapping[str, str],
) -> Starlette:
    """The ASGI app. `open_store` opens the workspace Store (called once, on the store thread);
    `secrets` maps system -> verification secret (see `resolve_secrets`); systems without one answer 503.
    """
    worker = _StoreWorker(open_store)
    swap_settings = config.sources.swap
    swap_signature_header = getattr(swap_settings, "signature_header", None) if swap_settings else None
    swap_store_id = (swap_settings.store_id or None) if swap_settings else None

    def rejected(request: Request, system: str, reason: str) -> Response:
        client = request.client.host if request.client else "?"
        logger.warning("rejected %s webhook %s from %s: %s", system, _safe_path(request.url.path), client, reason)
        return JSONResponse({"error": "unauthorised"}, status_code=401)

    def unconfigured(system: str) -> Response:
        # 503, not 404: the vendor retries later instead of giving up (Marketplacer disables on 4xx).
        logger.error("%s webhook received but no %s is configured", system, SECRET_NAMES[system])
        return JSONResponse({"error": f"{system} webhooks are not configured here"}, status_code=503)

    async def read_body(request: Request) -> bytes | None:
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > MAX_BODY_BYTES:
            return None
        chunks = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                return None
            chunks.append(chunk)
        return b"".join(chunks)

    async def accept(request: Request, delivery: Delivery) -> Response:
        outcome = await worker.run(_store_and_normalise(config, delivery))
        answer: dict[str, Any] = {"inbox_id": outcome.inbox_id}
        if outcome.duplicate:
            answer["status"] = "duplicate"
            return JSONResponse(answer, status_code=200)
        answer["status"] = outcome.status
        if outcome.status == "quarantined":
            logger.warning(
                "%s webhook stored as inbox %s and quarantined: %s", delivery.system, outcome.inbox_id, outcome.reason
            )
            if delivery.system != "marketplacer":
                answer["reason"] = outcome.reason
                return JSONResponse(answer, status_code=422)
        return JSONResponse(answer, status_code=200)

    def too_large(system: str) -> Response:
        logger.warning("%s webhook refused: body over %d bytes", system, MAX_BODY_BYTES)
        return JSONResponse({"error": "body too large"}, status_code=413)

    async def marketplacer(request: Request) -> Response:
        system = "marketplacer"
        if system not in secrets:
            return unconfigured(system)
        raw = await read_body(request)
        if raw is None:
            return too_large(system)
        try:
            verify_hmac_header(request.headers, "Marketplacer-Hmac-256", secrets[system], raw)
        except WebhookAuthError as exc:
            return rejected(request, system, exc.reason)
        key = request.headers.get("idempotency-key") or f"sha256:{body_hash(raw)}"
        text = raw.decode("utf-8", errors="replace")
        return await accept(request, Delivery(system, KINDS[system], key, text, _kept_headers(request)))

    async def swap(request: Request) -> Response:
        system = "swap"
        if system not in secrets:
            return unconfigured(system)
        raw = await read_body(request)
        if raw is None:
            return too_large(system)
        try:
            if swap_signature_header:
                verify_hmac_header(request.headers, swap_signature_header, secrets[system], raw)
            delivery = verify_swap(raw, secrets[system], store_id=swap_store_id)
        except WebhookAuthError as exc:
            return rejected(request, system, exc.reason)
        key = _swap_idempotency_key(delivery.claims, delivery.body)
        text = raw.decode("utf-8", errors="replace")
        return await accept(request, Delivery(system, KINDS[system], key, text, _kept_headers(request)))

    def token_endpoint(system: str, idempotency_key: Callable[[Mapping[str, str], bytes], str]):
        async def handler(request: Request) -> Response:
            if system not in secrets:
                return unconfigured(system)
            try:
                verify_token(request.path_params["token"], secrets[system])
            except WebhookAuthError as exc:
                return rejected(request, system, exc.reason)
            raw = await read_body(request)
            if raw is None:
                return too_large(system)
            key = idempotency_key(request.headers, raw)
            text = raw.decode("utf-8", errors="replace")
            return await accept(request, Delivery(system, KINDS[system], key, text, _kept_headers(request)))

        return handler

    async def peoplevox(request: Request) -> Response:
        system = "peoplevox"
        if system not in secrets:
            return unconfigured(system)
        try:
            verify_token(request.path_params["token"], secrets[system])
        except WebhookAuthError as exc:
            return rejected(request, system, exc.reason)
        raw = await read_body(request)
        if raw is None:
            return too_large(system)
        params = dict(request.query_params)
        if raw:
            params.update(parse_qsl(raw.decode("utf-8", errors="replace"), keep_blank_values=True))
        kind = _peoplevox_kind(request.path_params["event"], params)
        body = json.dumps(params, sort_keys=True, ensure_ascii=False)
        key = _record_key(system, kind, params, body.encode())
        return await accept(request, Delivery(system, kind, key, body, _kept_headers(request)))

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok", "systems": sorted(secrets)})

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # Open the state file and import the normalisers now, not while a vendor waits for an answer.
        await worker.run(lambda store: load_normalisers())
        yield
        await worker.close()

    handlers = {
        "marketplacer": marketplacer,
        "swap": swap,
        "clarus": token_endpoint("clarus", _clarus_idempotency_key),
        "scend": token_endpoint("scend", lambda headers, raw: _scend_idempotency_key(raw)),
        "peoplevox": peoplevox,
    }
    routes = [Route(e.path, handlers[e.system], methods=list(e.methods)) for e in ENDPOINTS]
    routes.append(Route("/healthz", healthz, methods=["GET"]))
    return Starlette(routes=routes, lifespan=lifespan, middleware=[Middleware(_AccessLog)])


class _AccessLog:
    """One log line per request, with URL tokens masked (uvicorn's own access log is turned off)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            logger.info(
                "%s %s -> %s (%.0f ms)",
                scope["method"],
                _safe_path(scope["path"]),
                status,
                (time.perf_counter() - started) * 1000,
            )
