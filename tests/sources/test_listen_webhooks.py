"""`cogent listen`: every system's webhook path verifies, stores before answering, dedupes and quarantines."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from marketplace_returns_support import json_block, with_sources
from starlette.applications import Starlette

from cogent_cli.config import Config
from cogent_cli.inbox import Inbox
from cogent_cli.listen import create_app, describe_endpoints, resolve_secrets
from cogent_cli.sandbox.server import ServerStartError, serve_in_thread
from cogent_cli.webhooks import WebhookAuthError, verify_swap
from cogent_cli.workspace import Workspace

MARKETPLACER_SECRET = "mp-hmac-key-0123456789abcdef0123456789"
SWAP_SECRET = "whsk_0123456789abcdef0123456789abcdef"
CLARUS_TOKEN = "clarus-token-6f1d2b7c9e"
SCEND_TOKEN = "scend-token-88aa11bb22"
PEOPLEVOX_TOKEN = "pvx-token-4c5d6e7f80"
SECRETS = {
    "marketplacer": MARKETPLACER_SECRET,
    "swap": SWAP_SECRET,
    "clarus": CLARUS_TOKEN,
    "scend": SCEND_TOKEN,
    "peoplevox": PEOPLEVOX_TOKEN,
}


def test_a_server_that_fails_to_start_says_so_with_its_callers_hint() -> None:
    @asynccontextmanager
    async def broken(_app: Starlette) -> AsyncIterator[None]:
        raise RuntimeError("no state file")
        yield

    with pytest.raises(ServerStartError) as caught, serve_in_thread(Starlette(lifespan=broken), hint="Run it with -v."):
        pass
    assert "did not start" in str(caught.value) and caught.value.hint == "Run it with -v."


@pytest.fixture
def config(workspace: Workspace) -> Config:
    return with_sources(
        workspace.config,
        marketplacer={"tenant": "bestfriendbazaar"},
        swap={"store_id": "store_123abc"},
        clarus={"subdomain": "acme"},
        scend={},
        peoplevox={"client_id": "myclientid"},
    )


@pytest.fixture
def client(workspace: Workspace, config: Config) -> Iterator[httpx.Client]:
    with listening(config, workspace) as http:
        yield http


@contextmanager
def listening(config: Config, workspace: Workspace, secrets: dict[str, str] = SECRETS) -> Iterator[httpx.Client]:
    """The webhook receiver served over real HTTP by uvicorn, as `cogent listen` serves it, and a client."""
    app = create_app(config, workspace.store, secrets)
    with serve_in_thread(app) as base_url, httpx.Client(base_url=base_url, timeout=30) as http:
        yield http


@pytest.fixture
def inbox(workspace: Workspace) -> Inbox:
    return Inbox(workspace.store())


def sign(body: bytes, secret: str = MARKETPLACER_SECRET) -> str:
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def marketplacer_headers(body: bytes, key: str = "YmVzdGZyaWVuZGJhemFhcjoyNTUy") -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "Idempotency-Key": key,
        "Marketplacer-Sequence": "2552",
        "Marketplacer-Vertical": "bestfriendbazaar",
        "Marketplacer-Hmac-256": sign(body),
    }


@pytest.fixture
def invoice_body(reference: Path) -> bytes:
    document = (reference / "marketplacer.md").read_text(encoding="utf-8")
    return json.dumps(json_block(document, "Expected body for the Invoice query")).encode()


@pytest.fixture
def swap_return(reference: Path) -> dict[str, Any]:
    return json_block((reference / "swap.md").read_text(encoding="utf-8"), "Reconstructed complete example")["return"]


def swap_body(ret: dict[str, Any], event: str = "returnCreated", *, expires_in: int = 300, **claims: Any) -> bytes:
    now = int(time.time())
    token_claims = {
        "event": event,
        "return_id": ret["return_id"],
        "order_id": ret["order_id"],
        "store_id": "store_123abc",
        "nonce": f"n-{now}-{expires_in}",
        "iat": now - 1,
        "exp": now + expires_in,
        **claims,
    }
    return json.dumps({"return": ret, "jwt": jwt.encode(token_claims, SWAP_SECRET, algorithm="HS256")}).encode()


# -- Marketplacer ----------------------------------------------------------------------------------


def test_marketplacer_signed_delivery_is_stored_then_normalised(
    client: httpx.Client, inbox: Inbox, invoice_body: bytes
) -> None:
    response = client.post("/webhooks/marketplacer", content=invoice_body, headers=marketplacer_headers(invoice_body))

    assert response.status_code == 200
    assert response.json()["status"] == "normalised"
    [row] = inbox.list()
    assert (row.system, row.route, row.kind) == ("marketplacer", "webhook", "marketplacer_webhook")
    assert row.idempotency_key == "YmVzdGZyaWVuZGJhemFhcjoyNTUy"
    assert row.body == invoice_body.decode()
    assert row.headers["marketplacer-sequence"] == "2552"
    assert "marketplacer-hmac-256" in row.headers
    types = [r[0] for r in inbox.conn.execute("select event_type from events where inbox_id = ?", (row.id,))]
    assert types == ["order.placed", "shipment.despatched"]


def test_marketplacer_forged_signature_is_refused_and_logged_without_secrets(
    client: httpx.Client, inbox: Inbox, invoice_body: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    headers = marketplacer_headers(invoice_body)
    headers["Marketplacer-Hmac-256"] = sign(invoice_body, "not-the-secret")
    with caplog.at_level(logging.WARNING, logger="cogent.listen"):
        forged = client.post("/webhooks/marketplacer", content=invoice_body, headers=headers)
        tampered = client.post(
            "/webhooks/marketplacer", content=invoice_body + b" ", headers=marketplacer_headers(invoice_body)
        )
        unsigned = client.post("/webhooks/marketplacer", content=invoice_body, headers={"Idempotency-Key": "x"})

    assert [forged.status_code, tampered.status_code, unsigned.status_code] == [401, 401, 401]
    assert inbox.list() == []
    messages = [r.getMessage() for r in caplog.records]
    assert sum("rejected marketplacer webhook" in m for m in messages) == 3
    assert any("does not match the body" in m for m in messages)
    assert any("no Marketplacer-Hmac-256 header" in m for m in messages)
    assert not any(MARKETPLACER_SECRET in m or headers["Marketplacer-Hmac-256"] in m for m in messages)


def test_marketplacer_duplicate_delivery_is_stored_once_and_answered_200(
    client: httpx.Client, inbox: Inbox, invoice_body: bytes
) -> None:
    first = client.post("/webhooks/marketplacer", content=invoice_body, headers=marketplacer_headers(invoice_body))
    second = client.post("/webhooks/marketplacer", content=invoice_body, headers=marketplacer_headers(invoice_body))

    assert (first.status_code, second.status_code) == (200, 200)
    assert second.json() == {"inbox_id": first.json()["inbox_id"], "status": "duplicate"}
    assert len(inbox.list()) == 1
    assert inbox.conn.execute("select count(*) from events").fetchone()[0] == 2


def test_marketplacer_unparseable_but_authentic_body_is_quarantined_and_answered_200(
    client: httpx.Client, inbox: Inbox
) -> None:
    body = b'{"id": "x", "event_name": "update", "payload": {"data": {"node": '
    response = client.post("/webhooks/marketplacer", content=body, headers=marketplacer_headers(body, key="k-bad"))

    assert response.status_code == 200
    assert response.json()["status"] == "quarantined"
    [row] = inbox.list(status="quarantined")
    assert row.body == body.decode()
    assert row.reason is not None and row.reason.startswith("body = ")


# -- Swap ------------------------------------------------------------------------------------------


def test_swap_valid_jwt_is_stored_with_event_return_and_update_time_as_key(
    client: httpx.Client, inbox: Inbox, swap_return: dict[str, Any]
) -> None:
    response = client.post("/webhooks/swap", content=swap_body(swap_return))

    assert response.status_code == 200
    [row] = inbox.list()
    assert (row.kind, row.idempotency_key) == ("swap_webhook", "returnCreated|ret_abc|2024-01-12T15:40:00Z")
    types = [r[0] for r in inbox.conn.execute("select event_type from events")]
    assert types == ["return.lodged"]


@pytest.mark.parametrize(
    ("make_body", "reason"),
    [
        (lambda ret: swap_body(ret, expires_in=-120), "jwt has expired"),
        (lambda ret: swap_body({**ret, "return_id": "ret_other"}, return_id="ret_abc"), "jwt return_id does not match"),
        (lambda ret: swap_body(ret, store_id="another_store"), "jwt store_id is not this workspace's store"),
        (
            lambda ret: json.dumps({"return": ret, "jwt": jwt.encode({"event": "returnCreated"}, "a guessed key, long enough to be allowed", "HS256")}).encode(),
            "jwt is not valid",
        ),
        (lambda ret: json.dumps({"return": ret}).encode(), "no jwt field"),
        (lambda ret: b"not json", "body is not JSON"),
    ],
)  # fmt: skip
def test_swap_forged_or_expired_tokens_are_refused(
    client: httpx.Client,
    inbox: Inbox,
    swap_return: dict[str, Any],
    caplog: pytest.LogCaptureFixture,
    make_body: Any,
    reason: str,
) -> None:
    with caplog.at_level(logging.WARNING, logger="cogent.listen"):
        response = client.post("/webhooks/swap", content=make_body(swap_return))
    assert response.status_code == 401
    assert response.json() == {"error": "unauthorised"}
    assert inbox.list() == []
    assert any(reason in r.getMessage() for r in caplog.records)
    assert not any(SWAP_SECRET in r.getMessage() for r in caplog.records)


def test_swap_duplicate_delivery_is_stored_once(
    client: httpx.Client, inbox: Inbox, swap_return: dict[str, Any]
) -> None:
    first = client.post("/webhooks/swap", content=swap_body(swap_return))
    # A retry carries a fresh JWT (new nonce) for the same event and return state.
    second = client.post("/webhooks/swap", content=swap_body(swap_return, expires_in=299))
    assert (first.status_code, second.status_code) == (200, 200)
    assert second.json()["status"] == "duplicate"
    assert len(inbox.list()) == 1


def test_swap_authentic_but_unusable_return_is_quarantined_with_422(
    client: httpx.Client, inbox: Inbox, swap_return: dict[str, Any]
) -> None:
    response = client.post("/webhooks/swap", content=swap_body({**swap_return, "date_created": "yesterday"}))
    assert response.status_code == 422
    assert response.json()["status"] == "quarantined"
    assert response.json()["reason"] == "return.date_created = 'yesterday': must be an ISO 8601 date-time"
    assert len(inbox.list(status="quarantined")) == 1


def test_swap_v2_signature_header_is_required_when_configured(
    workspace: Workspace, config: Config, inbox: Inbox, swap_return: dict[str, Any]
) -> None:
    strict = with_sources(config, swap={"store_id": "store_123abc", "signature_header": "x-swap-signature-sha256"})
    body = swap_body(swap_return)
    with listening(strict, workspace) as client:
        missing = client.post("/webhooks/swap", content=body)
        signed = client.post(
            "/webhooks/swap", content=body, headers={"x-swap-signature-sha256": sign(body, SWAP_SECRET)}
        )
    assert (missing.status_code, signed.status_code) == (401, 200)


# -- URL-token systems -----------------------------------------------------------------------------


def test_clarus_automation_with_the_right_token_is_stored_and_normalised(
    client: httpx.Client, inbox: Inbox, reference: Path
) -> None:
    body = json_block((reference / "clarus.md").read_text(encoding="utf-8"), "Proposed expectation")
    headers = {"X-ClarusWMS-Automation-ID": "42", "X-ClarusWMS-Subdomain": "acme"}
    response = client.post(f"/webhooks/clarus/{CLARUS_TOKEN}", json=body, headers=headers)
    again = client.post(f"/webhooks/clarus/{CLARUS_TOKEN}", json=body, headers=headers)

    assert (response.status_code, again.status_code) == (200, 200)
    assert again.json()["status"] == "duplicate"
    [row] = inbox.list()
    assert row.idempotency_key == "42|goods_outs|3301|COMPLETED|2026-03-10T14:30:00Z"
    assert row.headers["x-claruswms-automation-id"] == "42"
    assert [r[0] for r in inbox.conn.execute("select event_type from events")] == ["shipment.despatched"]


def test_wrong_url_token_is_refused_and_never_logged(
    client: httpx.Client, inbox: Inbox, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="cogent.listen"):
        clarus = client.post("/webhooks/clarus/guessed-token-123", json={"id": 1})
        scend = client.post("/webhooks/scend/guessed-token-123", json={"event": "x"})
        peoplevox = client.get("/webhooks/peoplevox/guessed-token-123/TrackingNumberReceived?dispatch_number=1")
    assert [clarus.status_code, scend.status_code, peoplevox.status_code] == [401, 401, 401]
    assert inbox.list() == []
    messages = [r.getMessage() for r in caplog.records]
    assert any("/webhooks/clarus/*** from" in m for m in messages)
    assert not any("guessed-token-123" in m for m in messages)


def test_clarus_unparseable_body_is_stored_quarantined_and_answered_422(client: httpx.Client, inbox: Inbox) -> None:
    response = client.post(f"/webhooks/clarus/{CLARUS_TOKEN}", content=b"<xml>not json</xml>")
    assert response.status_code == 422
    [row] = inbox.list(status="quarantined")
    assert row.body == "<xml>not json</xml>"
    assert row.idempotency_key.startswith("|sha256:")


def test_peoplevox_get_callback_is_stored_as_its_kind_with_a_natural_key(client: httpx.Client, inbox: Inbox) -> None:
    query = (
        "dispatch_number=D-456&tracking_number=1234567890&carrier=DPD&service_name=Next%20Day&service_code=DPDND"
        "&order_number=1234&order_email=joe%40zynk.com"
    )
    response = client.get(f"/webhooks/peoplevox/{PEOPLEVOX_TOKEN}/TrackingNumberReceived?{query}")
    again = client.get(f"/webhooks/peoplevox/{PEOPLEVOX_TOKEN}/TrackingNumberReceived?{query}")

    assert response.status_code == 200, response.text
    assert again.json()["status"] == "duplicate"
    [row] = inbox.list()
    assert row.kind == "tracking_number_received"
    assert json.loads(row.body)["tracking_number"] == "1234567890"
    assert row.idempotency_key == "tracking_number_received:D-456|1234567890"


def test_peoplevox_post_callback_merges_query_and_form_parameters(client: httpx.Client, inbox: Inbox) -> None:
    response = client.post(
        f"/webhooks/peoplevox/{PEOPLEVOX_TOKEN}/AvailabilityChanges?source=pvx",
        content=b"sku=SKU-1&quantity=5",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code in (200, 422)
    [row] = inbox.list()
    assert row.kind == "availability_changed"
    assert json.loads(row.body) == {"quantity": "5", "sku": "SKU-1", "source": "pvx"}


def test_scend_webhook_uses_its_event_id_as_key(client: httpx.Client, inbox: Inbox) -> None:
    body = {"event": "stock.snapshot", "event_id": "evt_01", "client_code": "ACME"}
    client.post(f"/webhooks/scend/{SCEND_TOKEN}", json=body)
    [row] = inbox.list()
    assert (row.system, row.kind, row.idempotency_key) == ("scend", "scend_webhook", "event:evt_01")


# -- configuration ---------------------------------------------------------------------------------


def test_system_without_a_secret_answers_503_so_the_vendor_retries(workspace: Workspace, config: Config) -> None:
    with listening(config, workspace, {"swap": SWAP_SECRET}) as client:
        response = client.post("/webhooks/marketplacer", content=b"{}")
        health = client.get("/healthz")
    assert response.status_code == 503
    assert health.json() == {"status": "ok", "systems": ["swap"]}


def test_secrets_come_from_credentials_and_unconfigured_paths_say_how_to_fix(
    config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COGENT_MARKETPLACER_WEBHOOK_SECRET", MARKETPLACER_SECRET)
    monkeypatch.setenv("COGENT_CLARUS_WEBHOOK_TOKEN", CLARUS_TOKEN)
    secrets = resolve_secrets(config)
    assert secrets == {"marketplacer": MARKETPLACER_SECRET, "clarus": CLARUS_TOKEN}
    rows = {system: (path, state) for system, path, state in describe_endpoints(config, secrets)}
    assert rows["clarus"] == ("/webhooks/clarus/SECRET", "on")
    assert rows["swap"] == ("/webhooks/swap", "off: run `cogent auth set swap --name webhook_secret`")


def test_listen_refuses_to_start_without_any_secret(runner: Any, workspace: Workspace) -> None:
    from cogent_cli.cli import app

    result = runner.invoke(app, ["--workspace", str(workspace.root), "listen"])
    assert result.exit_code == 2
    assert "No source has a webhook secret" in result.output


@settings(max_examples=200, deadline=None)
@given(
    body=st.one_of(
        st.binary(max_size=200),
        st.builds(
            lambda token, ret: json.dumps({"jwt": token, "return": ret}).encode(),
            st.one_of(st.text(max_size=80), st.just("a.b.c"), st.just("eyJhbGciOiJIUzI1NiJ9.e30.x")),
            st.dictionaries(st.sampled_from(["return_id", "id", "date_updated"]), st.text(max_size=5), max_size=3),
        ),
    )
)
def test_no_body_crashes_the_swap_verifier(body: bytes) -> None:
    try:
        verify_swap(body, SWAP_SECRET, store_id="store_123abc")
    except WebhookAuthError as exc:
        assert exc.reason
