"""Clarus WMS connector against the sandbox stand-in: OAuth token caching and renewal, relay paging, filters."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from cogent_cli.connectors.base import RetryPolicy
from cogent_cli.connectors.clarus import ClarusConnector
from cogent_cli.errors import CredentialError, RemoteUnavailableError
from cogent_cli.pull import StreamResult, pull

NO_WAIT = RetryPolicy(attempts=3, sleep=lambda _: None)


def test_every_collection_is_read_through_relay_pages(point, served):
    ws = point({"clarus": {"page_size": 10}})
    result = pull(ws, "clarus", normalise=False)
    data = served.standins.data.clarus
    by_stream = {s.stream: s for s in result.streams}
    for stream in ("shipments", "goods_out_lines", "stock_balances", "stocks"):
        assert by_stream[stream].records == len(data[stream])
        assert by_stream[stream].pages == max(1, -(-len(data[stream]) // 10))


def test_shipments_arrive_with_their_packages_and_order_reference(point, served):
    ws = point()
    pull(ws, "clarus", streams=("shipments",), normalise=False)
    with ws.store() as store:
        bodies = [
            json.loads(row[0]) for row in store.db.execute("select body from inbox where kind = 'clarus_shipment'")
        ]
    dispatched = [b for b in bodies if b["status"] == "dispatched"]
    assert dispatched and all(b["packages"] and b["packages"][0]["tracking_number"] for b in dispatched[:3])
    assert all(b["goods_out"]["external_system_reference1"].startswith("SO-") for b in bodies)


def test_token_is_fetched_once_and_reused_until_it_expires(point, served):
    ws = point({"clarus": {"page_size": 20}})
    now = [0.0]
    connector = ClarusConnector(ws.config, clock=lambda: now[0])
    list(connector.pages("stocks", None, None))
    list(connector.pages("stock_balances", None, None))
    assert connector.tokens_issued == 1
    now[0] += served.standins.token_ttl  # past expiry: the next call fetches a new token first
    list(connector.pages("stock_balances", None, None))
    assert connector.tokens_issued == 2


def test_a_revoked_token_is_replaced_once_and_the_pull_carries_on(point, served):
    ws = point({"clarus": {"page_size": 10}})
    connector = ClarusConnector(ws.config)

    def revoke_after_first_page(stream: str, totals: StreamResult) -> None:
        if totals.pages == 1:
            served.standins.expire_tokens()

    result = pull(ws, "clarus", streams=("stocks",), connector=connector, progress=revoke_after_first_page)
    assert connector.tokens_issued == 2
    assert result.streams[0].records == len(served.standins.data.clarus["stocks"])


def test_bad_client_secret_is_a_credential_error_naming_the_fix(point, served, monkeypatch):
    ws = point()
    monkeypatch.setenv("COGENT_CLARUS_CLIENT_SECRET", "not-the-secret")
    with pytest.raises(CredentialError, match="cogent auth set clarus") as caught:
        pull(ws, "clarus")
    assert "not-the-secret" not in str(caught.value)


def test_wrong_subdomain_is_a_credential_error(point, served):
    ws = point()
    text = ws.config_path.read_text().replace('subdomain = "acme"', 'subdomain = "someone-else"')
    ws.config_path.write_text(text)
    from cogent_cli.workspace import Workspace

    with pytest.raises(CredentialError, match="subdomain"):
        pull(Workspace(ws.root), "clarus", streams=("stocks",))


def test_incremental_pass_filters_on_the_update_time(point, served):
    ws = point()
    pull(ws, "clarus", streams=("shipments",), normalise=False)
    fresh = dict(served.standins.data.clarus["shipments"][0])
    fresh.update({"id": "NEW-1", "reference": "SH-NEW-1", "updated_at": datetime.now(UTC).isoformat()})
    served.standins.add("clarus", "shipments", fresh)
    again = pull(ws, "clarus", streams=("shipments",), normalise=False)
    assert again.streams[0].records == 1 and again.streams[0].stored == 1


def test_a_transient_503_is_retried(point, served):
    ws = point()
    served.standins.fail("clarus", 503, times=1)
    connector = ClarusConnector(ws.config, retry=NO_WAIT)
    pages = list(connector.pages("stock_balances", None, None))
    assert sum(len(p.records) for p in pages) == len(served.standins.data.clarus["stock_balances"])


def test_a_lasting_outage_is_remote_unavailable_with_resume_hint(point, served):
    ws = point()
    served.standins.fail("clarus", 502, times=50)
    connector = ClarusConnector(ws.config, retry=NO_WAIT)
    with pytest.raises(RemoteUnavailableError) as caught:
        list(connector.pages("stocks", None, None))
    assert caught.value.exit_status == 7
    assert "resumes" in str(caught.value)


def test_snapshot_streams_ignore_since(point, served):
    ws = point()
    connector = ClarusConnector(ws.config)
    future = datetime.now(UTC) + timedelta(days=1)
    pages = list(connector.pages("stock_balances", None, future))
    assert sum(len(p.records) for p in pages) == len(served.standins.data.clarus["stock_balances"])
