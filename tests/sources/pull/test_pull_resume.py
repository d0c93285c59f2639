"""Cursors: an interrupted pull resumes after the last stored page; the CLI reports and exits correctly."""

from __future__ import annotations

import json

import pytest

from cogent_cli.cli import app
from cogent_cli.pull import StreamResult, cursors, pull


class Crash(Exception):
    pass


def crash_after(pages: int):
    def progress(stream: str, totals: StreamResult) -> None:
        if totals.pages == pages:
            raise Crash

    return progress


def test_interrupted_page_number_pull_resumes_where_it_stopped(point, served):
    ws = point({"peoplevox": {"items_per_page": 6}})
    with pytest.raises(Crash):
        pull(ws, "peoplevox", streams=("despatches",), progress=crash_after(2), normalise=False)
    saved = cursors(ws)["peoplevox/despatches"]
    assert saved["pass"]["position"] == 2
    resumed = pull(ws, "peoplevox", streams=("despatches",), normalise=False)
    rows = len(served.standins.data.peoplevox["reports"]["Despatch summary"]["rows"])
    assert resumed.streams[0].records == rows - 12
    assert resumed.streams[0].duplicates == 0
    assert cursors(ws)["peoplevox/despatches"]["pass"] is None


def test_interrupted_cursor_pull_resumes_after_the_stored_page(point, served):
    ws = point({"marketplacer": {"page_size": 10}})
    with pytest.raises(Crash):
        pull(ws, "marketplacer", streams=("invoices",), progress=crash_after(3), normalise=False)
    assert cursors(ws)["marketplacer/invoices"]["pass"]["position"]
    resumed = pull(ws, "marketplacer", streams=("invoices",), normalise=False)
    total = len(served.standins.data.marketplacer["invoices"])
    assert resumed.streams[0].records == total - 30
    assert resumed.streams[0].duplicates == 0
    with ws.store() as store:
        assert store.db.execute("select count(*) from inbox where kind='marketplacer_invoice'").fetchone()[0] == total


def test_a_crash_before_the_cursor_moves_only_repeats_duplicates(point, served, monkeypatch):
    """Rows stored but cursor not yet advanced: the rerun re-reads that page and stores nothing twice."""
    ws = point({"swap": {"items_per_page": 3}})
    assert len(served.standins.data.swap["returns"]) > 6
    import cogent_cli.pull as pulling

    real = pulling.set_cursor
    calls = {"n": 0}

    def failing_set_cursor(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise Crash
        return real(*args, **kwargs)

    monkeypatch.setattr(pulling, "set_cursor", failing_set_cursor)
    with pytest.raises(Crash):
        pull(ws, "swap", normalise=False)
    monkeypatch.setattr(pulling, "set_cursor", real)
    resumed = pull(ws, "swap", normalise=False)
    assert resumed.streams[0].duplicates == 3
    assert resumed.stored == len(served.standins.data.swap["returns"]) - 6


def test_unknown_stream_names_the_streams(point, served):
    from cogent_cli.errors import UsageError

    ws = point()
    with pytest.raises(UsageError, match="despatches, returns, inventory"):
        pull(ws, "peoplevox", streams=("orders",))


def test_cli_pull_prints_json_summary_and_normalises(point, served, runner):
    ws = point()
    result = runner.invoke(app, ["--workspace", str(ws.root), "pull", "swap", "--format", "json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["stored"] == len(served.standins.data.swap["returns"])
    assert summary["normalised"]["quarantined"] == 1


def test_cli_pull_outage_exits_7_and_bad_credentials_exit_6(point, served, runner, monkeypatch):
    import cogent_cli.connectors.base as base

    ws = point()
    monkeypatch.setattr(base.RetryPolicy, "backoff", lambda self, attempt: 0.0)
    served.standins.fail("swap", 500, times=10)
    outage = runner.invoke(app, ["--workspace", str(ws.root), "pull", "swap"])
    assert outage.exit_code == 7
    assert "resumes after the last page stored" in outage.stderr
    served.standins.faults.clear()
    monkeypatch.setenv("COGENT_SWAP_API_KEY", "wrong-key-42")
    denied = runner.invoke(app, ["--workspace", str(ws.root), "pull", "swap"])
    assert denied.exit_code == 6
    assert "wrong-key-42" not in denied.output


def test_cli_rejects_an_unknown_system_listing_the_valid_ones(workspace, runner):
    result = runner.invoke(app, ["--workspace", str(workspace.root), "pull", "shopify"])
    assert result.exit_code == 2
    assert "peoplevox, clarus, swap, marketplacer, scend" in result.stderr


def test_cli_rejects_a_since_that_is_not_a_time(workspace, runner):
    result = runner.invoke(app, ["--workspace", str(workspace.root), "pull", "swap", "--since", "last tuesday"])
    assert result.exit_code == 2
