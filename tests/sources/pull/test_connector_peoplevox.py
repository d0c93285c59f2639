"""Peoplevox SOAP connector against the sandbox stand-in: sessions, report paging, incremental clauses."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import httpx
import pytest

from cogent_cli.connectors.base import RetryPolicy, SourceResponseError
from cogent_cli.connectors.peoplevox import PeoplevoxConnector, parse_result, rows_of, search_clause
from cogent_cli.errors import CredentialError
from cogent_cli.pull import StreamResult, pull
from cogent_cli.workspace import Workspace

DESPATCHES = "Despatch summary"


def despatch_rows(served) -> int:
    return len(served.standins.data.peoplevox["reports"][DESPATCHES]["rows"])


def inbox_count(workspace: Workspace, kind: str) -> int:
    with workspace.store() as store:
        return store.db.execute("select count(*) from inbox where kind = ?", [kind]).fetchone()[0]


def test_despatch_summary_is_read_page_by_page_until_total_count(point, served):
    ws = point({"peoplevox": {"items_per_page": 7}})
    result = pull(ws, "peoplevox", streams=("despatches",), normalise=False)
    rows = despatch_rows(served)
    [stream] = result.streams
    assert stream.records == rows
    assert stream.pages == -(-rows // 7)
    assert stream.total == rows
    assert inbox_count(ws, "despatch_summary") == stream.stored == rows


def test_one_session_serves_every_page_and_stream(point, served):
    ws = point({"peoplevox": {"items_per_page": 20}})
    connector = PeoplevoxConnector(ws.config)
    pull(ws, "peoplevox", connector=connector, normalise=False)
    assert connector.authentications == 1


def test_expired_session_is_renewed_once_and_the_pull_carries_on(point, served):
    ws = point({"peoplevox": {"items_per_page": 10}})
    connector = PeoplevoxConnector(ws.config)

    def expire_after_first_page(stream: str, totals: StreamResult) -> None:
        if totals.pages == 1:
            served.standins.expire_sessions()

    result = pull(ws, "peoplevox", streams=("despatches",), connector=connector, progress=expire_after_first_page)
    assert connector.authentications == 2
    assert result.streams[0].records == despatch_rows(served)


def test_session_idle_past_the_limit_is_renewed_before_the_call(point, served):
    ws = point()
    now = [0.0]
    connector = PeoplevoxConnector(ws.config, clock=lambda: now[0])
    connector.report_page(DESPATCHES, 1)
    now[0] += 26 * 60
    connector.report_page(DESPATCHES, 1)
    assert connector.authentications == 2


def test_a_session_rejected_twice_is_a_credential_error(point, served, monkeypatch):
    ws = point()
    connector = PeoplevoxConnector(ws.config)
    monkeypatch.setattr(connector, "authenticate", lambda: ("acme-sandbox", "not-a-session"))
    connector._session = ("acme-sandbox", "stale")
    with pytest.raises(CredentialError, match="newly issued session"):
        connector.report_page(DESPATCHES, 1)


def test_wrong_password_names_the_fix_and_never_the_password(point, served, monkeypatch):
    ws = point()
    monkeypatch.setenv("COGENT_PEOPLEVOX_PASSWORD", "wrong-password-123")
    with pytest.raises(CredentialError) as caught:
        pull(ws, "peoplevox", streams=("despatches",))
    assert "cogent auth set peoplevox" in str(caught.value)
    assert "wrong-password-123" not in str(caught.value)
    assert caught.value.exit_status == 6


def test_incremental_pull_asks_only_for_rows_since_the_last_pass(point, served):
    ws = point({"peoplevox": {"items_per_page": 50}})
    pull(ws, "peoplevox", streams=("despatches",), normalise=False)
    template = dict(served.standins.data.peoplevox["reports"][DESPATCHES]["rows"][0])
    local_now = datetime.now(UTC).astimezone(ZoneInfo("Europe/London"))
    template.update({"Despatch number": "NEW-1", "Despatch date": local_now.strftime("%d/%m/%Y %H:%M")})
    served.standins.add("peoplevox", DESPATCHES, template)
    second = pull(ws, "peoplevox", streams=("despatches",), normalise=False)
    assert second.streams[0].records == 1
    assert second.streams[0].stored == 1


def test_since_rereads_history_and_finds_only_duplicates(point, served):
    ws = point({"peoplevox": {"items_per_page": 50}})
    first = pull(ws, "peoplevox", streams=("returns",), normalise=False)
    again = pull(ws, "peoplevox", streams=("returns",), since=datetime(2020, 1, 1, tzinfo=UTC), normalise=False)
    assert again.streams[0].records == first.streams[0].records > 0
    assert again.streams[0].stored == 0


def test_configured_delay_separates_pages(point, served):
    ws = point({"peoplevox": {"items_per_page": 25}})
    slept: list[float] = []
    connector = PeoplevoxConnector(ws.config, sleep=slept.append)
    pages = list(connector.pages("despatches", None, None))
    assert len(pages) > 1
    assert slept == [ws.config.sources.peoplevox.page_delay_seconds] * (len(pages) - 1)


def test_inventory_snapshot_keys_differ_between_runs_so_a_level_can_return():
    """The same stock row read in two runs is two snapshots, never a duplicate of the first."""
    from cogent_cli.connectors.base import Pass
    from cogent_cli.connectors.peoplevox import Report

    report = Report("inventory", "inventory_summary", "Item inventory summary all sites", None, ("Item code",))
    row = {"Item code": "SKU-1", "Site reference": "PrimarySite", "Available": "3"}
    connector = PeoplevoxConnector.__new__(PeoplevoxConnector)
    first = connector.record(report, row, Pass(None, datetime(2026, 11, 1, tzinfo=UTC)))
    second = connector.record(report, row, Pass(None, datetime(2026, 11, 2, tzinfo=UTC)))
    assert first.idempotency_key != second.idempotency_key


def test_search_clause_is_in_the_warehouse_local_time():
    since = datetime(2026, 7, 1, 8, 30, tzinfo=UTC)
    assert search_clause("Despatch date", since, "Europe/London") == "[Despatch date] >= DateTime(2026,07,01,09,30,00)"


def test_rows_beyond_the_header_are_kept_for_quarantine():
    rows = rows_of("Item code,Available\r\nA,1\r\nB,2,surplus\r\n")
    assert rows == [{"Item code": "A", "Available": "1"}, {"Item code": "B", "Available": "2", "_extra": ["surplus"]}]


def test_a_response_that_is_not_xml_is_a_clear_error():
    with pytest.raises(SourceResponseError, match="does not parse"):
        parse_result(b"<html>Service Unavailable", "GetReportData")


def test_server_errors_end_as_remote_unavailable_after_bounded_retries(point, served):
    from cogent_cli.errors import RemoteUnavailableError

    ws = point()
    served.standins.fail("peoplevox", 503, times=10)
    connector = PeoplevoxConnector(ws.config, retry=RetryPolicy(attempts=3, sleep=lambda _: None))
    with pytest.raises(RemoteUnavailableError, match="3 attempts"):
        connector.authenticate()
    assert served.standins.requests["peoplevox"] == 3


def test_soap_envelope_carries_the_session_header():
    seen: list[bytes] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.content)
        ok = (
            '<Envelope xmlns="http://schemas.xmlsoap.org/soap/envelope/"><Body>'
            '<GetReportDataResponse xmlns="http://www.peoplevox.net/"><GetReportDataResult>'
            "<ResponseId>0</ResponseId><TotalCount>0</TotalCount><Detail></Detail>"
            "</GetReportDataResult></GetReportDataResponse></Body></Envelope>"
        )
        return httpx.Response(200, text=ok)

    from cogent_cli.config import Config

    config = Config.model_validate(
        {
            "workspace": {"name": "t", "id": "test-ws"},
            "sources": {"peoplevox": {"client_id": "c1", "username": "u", "password": {"env": "PVX_PW"}}},
        }
    )
    import os

    os.environ["PVX_PW"] = "secret-pw"
    try:
        connector = PeoplevoxConnector(config, transport=httpx.MockTransport(handler))
        connector._session = ("c1", "session-42")
        connector._last_call = connector._clock()
        connector.report_page(DESPATCHES, 3, "[Despatch date] >= DateTime(2026,01,01,00,00,00)")
    finally:
        del os.environ["PVX_PW"]
    body = seen[0].decode()
    assert "<SessionId>session-42</SessionId>" in body
    assert "<PageNo>3</PageNo>" in body
    assert "&gt;= DateTime(2026,01,01,00,00,00)" in body
    assert timedelta(0) == timedelta(0)


def _as_exported(row: dict[str, str]) -> dict[str, str]:
    """A report row as another export renders it: XML-style column names, dates quoted."""
    return {
        name.replace(" ", "_"): f"'{value}'" if name.endswith(" date") and value else value
        for name, value in row.items()
    }


@pytest.mark.parametrize(
    ("report_name", "kind"), [(DESPATCHES, "despatch_summary"), ("Return summary", "return_summary")]
)
def test_report_rows_pulled_then_ingested_from_a_file_are_stored_once(point, served, tmp_path, report_name, kind):
    import csv

    from cogent_cli.ingest import ingest_paths

    ws = point({"peoplevox": {"items_per_page": 50}})
    pulled = pull(ws, "peoplevox", streams=("despatches", "returns"))
    rows = [_as_exported(row) for row in served.standins.data.peoplevox["reports"][report_name]["rows"]]
    path = tmp_path / f"{kind}.csv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    stored_by_pull = inbox_count(ws, kind)
    with ws.store() as store:
        events_before = store.db.execute("select count(*) from events").fetchone()[0]
        summary = ingest_paths(store, ws.config, "peoplevox", [path])
        events_after = store.db.execute("select count(*) from events").fetchone()[0]
    assert stored_by_pull == len(rows) and sum(stream.stored for stream in pulled.streams) >= len(rows)
    assert (summary.records, summary.stored, summary.duplicates) == (len(rows), 0, len(rows))
    assert inbox_count(ws, kind) == stored_by_pull
    assert events_after == events_before
