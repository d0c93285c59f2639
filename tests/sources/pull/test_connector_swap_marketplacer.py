"""Swap (REST, page numbers) and Marketplacer (GraphQL, cursors, rate limits) against the sandbox stand-ins."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import httpx
import pytest

from cogent_cli.connectors.base import RetryPolicy, SourceResponseError
from cogent_cli.connectors.marketplacer import MarketplacerConnector, RateLimiter
from cogent_cli.connectors.swap import returns_of
from cogent_cli.errors import CredentialError
from cogent_cli.pull import pull


def test_swap_returns_are_read_page_by_page_with_the_store_id(point, served):
    ws = point({"swap": {"items_per_page": 4}})
    result = pull(ws, "swap", normalise=False)
    returns = served.standins.data.swap["returns"]
    [stream] = result.streams
    assert stream.records == stream.stored == len(returns)
    assert stream.pages == -(-len(returns) // 4)


def test_swap_second_pull_asks_only_for_returns_updated_since(point, served):
    ws = point()
    pull(ws, "swap", normalise=False)
    fresh = dict(served.standins.data.swap["returns"][0])
    fresh.update({"return_id": "ret_new", "date_updated": datetime.now(UTC).isoformat()})
    served.standins.add("swap", "returns", fresh)
    again = pull(ws, "swap", normalise=False)
    assert again.streams[0].records == 1 and again.stored == 1


def test_swap_rejected_key_is_exit_status_6_with_the_fix(point, served, monkeypatch):
    ws = point()
    monkeypatch.setenv("COGENT_SWAP_API_KEY", "nope-nope")
    with pytest.raises(CredentialError, match="cogent auth set swap") as caught:
        pull(ws, "swap")
    assert caught.value.exit_status == 6


def test_swap_body_without_a_list_of_returns_is_a_clear_error():
    with pytest.raises(SourceResponseError, match="no list of returns"):
        returns_of({"message": "Internal server error"})
    assert returns_of([{"return_id": "r1"}]) == ([{"return_id": "r1"}], None, None)


def test_swap_planted_malformed_return_is_quarantined_not_blocking(point, served):
    ws = point()
    result = pull(ws, "swap")
    assert result.normalised is not None
    assert result.normalised.quarantined == 1
    assert result.normalised.normalised == len(served.standins.data.swap["returns"]) - 1


def test_marketplacer_follows_cursors_through_every_stream(point, served):
    ws = point({"marketplacer": {"page_size": 25}})
    result = pull(ws, "marketplacer", normalise=False)
    data = served.standins.data.marketplacer
    by_stream = {s.stream: s for s in result.streams}
    for stream in ("invoices", "refund_requests", "variants"):
        assert by_stream[stream].records == by_stream[stream].total == len(data[stream])
    assert by_stream["invoices"].pages == -(-len(data["invoices"]) // 25)


def test_marketplacer_invoices_carry_shipments_and_the_storefront_order(point, served):
    ws = point()
    pull(ws, "marketplacer", streams=("invoices",), normalise=False)
    with ws.store() as store:
        bodies = [
            json.loads(r[0]) for r in store.db.execute("select body from inbox where kind='marketplacer_invoice'")
        ]
    shipped = [b for b in bodies if b["shipments"]]
    assert shipped and shipped[0]["shipments"][0]["trackingNumber"]
    assert all(b["order"]["externalIds"][0]["value"].startswith("SO-") for b in bodies)


def test_marketplacer_429_waits_as_told_then_continues(point, served):
    ws = point()
    waits: list[float] = []
    served.standins.fail("marketplacer", 429, times=1, retry_after=2)
    connector = MarketplacerConnector(ws.config, retry=RetryPolicy(sleep=waits.append))
    pages = list(connector.pages("variants", None, None))
    assert waits == [2.0]
    assert sum(len(p.records) for p in pages) == len(served.standins.data.marketplacer["variants"])


def test_marketplacer_bad_key_is_a_credential_error(point, served, monkeypatch):
    ws = point()
    monkeypatch.setenv("COGENT_MARKETPLACER_API_KEY", "expired-key")
    with pytest.raises(CredentialError, match="cogent auth set marketplacer"):
        pull(ws, "marketplacer")


def test_rate_limiter_never_exceeds_its_window():
    now = [0.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    limiter = RateLimiter(3, window=10.0, clock=lambda: now[0], sleep=sleep)
    for _ in range(3):
        limiter.acquire()
    assert slept == []
    now[0] = 4.0
    limiter.acquire()
    assert slept == [6.0]
    assert limiter.waited == 6.0


def test_graphql_errors_are_reported_with_the_first_message():
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"data": None, "errors": [{"message": "Field 'total' doesn't exist"}]})

    from cogent_cli.config import Config

    config = Config.model_validate(
        {
            "workspace": {"name": "t", "id": "test-ws"},
            "sources": {"marketplacer": {"base_url": "https://mp.example", "api_key": {"env": "MP_KEY"}}},
        }
    )
    import os

    os.environ["MP_KEY"] = "k-123456"
    try:
        connector = MarketplacerConnector(config, transport=httpx.MockTransport(handler))
        with pytest.raises(SourceResponseError, match="Field 'total' doesn't exist"):
            list(connector.pages("invoices", None, None))
    finally:
        del os.environ["MP_KEY"]
