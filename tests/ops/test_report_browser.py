"""The HTML report in a real headless Chromium: charts render with the expected points, no console errors."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cogent_cli.cli import app
from cogent_cli.report.data import collect_report
from cogent_cli.workspace import Workspace

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
NOW = datetime.now(UTC).replace(microsecond=0)


def _populate(workspace: Workspace) -> None:
    """Three days of deliveries on two metrics, exceptions opened and resolved, one audit run."""
    with workspace.store() as store, store.transaction() as db:
        n = 0
        for day, metric, count in [
            (2, "Fulfilled Shipment", 3),
            (1, "Fulfilled Shipment", 2),
            (1, "Return Lodged", 1),
            (0, "Return Lodged", 4),
        ]:
            for _ in range(count):
                n += 1
                sent = NOW - timedelta(days=day, minutes=5)
                db["outbox"].insert(
                    {
                        "op_key": f"op{n}",
                        "event_id": f"e{n}",
                        "kind": "event",
                        "lane": 0,
                        "status": "sent",
                        "metric": metric,
                        "payload": "{}",
                        "enqueued_at": sent.isoformat(),
                        "sent_at": sent.isoformat(),
                        "occurred_at": (sent - timedelta(minutes=10 * n)).isoformat(),
                        "backfill": 0,
                    }
                )
        db["sync_exceptions"].insert(
            {
                "class": "unmapped_ship_method",
                "owner": "ops",
                "status": "open",
                "system": "peoplevox",
                "last_error": "ship method 'DPD/Next Day <b>' is not mapped",
                "created_at": (NOW - timedelta(days=1)).isoformat(),
            }
        )
        db["sync_exceptions"].insert(
            {
                "class": "validation_error",
                "owner": "ecommerce",
                "status": "resolved",
                "pointer": "/data/attributes/phone_number",
                "created_at": (NOW - timedelta(days=2)).isoformat(),
                "resolved_at": NOW.isoformat(),
            }
        )
        run = (
            db["audit_runs"]
            .insert(
                {
                    "audit": "ship-methods",
                    "started_at": NOW.isoformat(),
                    "finished_at": NOW.isoformat(),
                    "status": "ok",
                    "counts": json.dumps({}),
                }
            )
            .last_pk
        )
        db["audit_findings"].insert(
            {
                "run_id": run,
                "audit": "ship-methods",
                "key": "k1",
                "state": "new",
                "severity": "error",
                "owner": "ops",
                "title": "Ship method not mapped: DPD/Next Day",
                "count": 12,
                "order_number": "SO-1",
                "fix": "Map it",
            }
        )


def test_report_is_self_contained_and_escapes_source_text(workspace: Workspace, runner: CliRunner):
    _populate(workspace)
    out = workspace.root / "report.html"
    result = runner.invoke(app, ["-w", str(workspace.root), "report", "--output", str(out)])
    assert result.exit_code == 0, result.output
    html = out.read_text()
    for external in ('src="http', 'href="http', "@import", "<link"):
        assert external not in html
    assert "DPD/Next Day &lt;b&gt;" in html
    assert "Ship method not mapped: DPD/Next Day" in html
    assert "Add the ship method to [mapping.ship_methods]" in html


def test_report_series_follow_the_state(workspace: Workspace):
    _populate(workspace)
    with workspace.store() as store:
        report = collect_report(store, workspace.config, now=NOW)
    assert report.volume.series["Fulfilled Shipment"][-3:] == [3, 2, 0]
    assert report.volume.series["Return Lodged"][-3:] == [0, 1, 4]
    assert set(report.latency.series) == {"p50", "p90", "p99"}
    assert report.latency.points == 3 * 3
    assert report.exceptions_opened.series == {"ecommerce": [0] * 27 + [1, 0, 0], "ops": [0] * 28 + [1, 0]}


@pytest.mark.browser
@pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER), reason="needs Debian's chromium and chromium-driver (.ci/run installs them)"
)
def test_report_renders_in_headless_chromium(workspace: Workspace, runner: CliRunner, tmp_path: Path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    _populate(workspace)
    out = tmp_path / "report.html"
    assert runner.invoke(app, ["-w", str(workspace.root), "report", "--output", str(out)]).exit_code == 0
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--window-size=1280,2400",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    try:
        driver.get(out.as_uri())
        charts = driver.execute_script(
            """
            return Array.from(document.querySelectorAll('[data-chart]')).map(c => ({
              name: c.dataset.chart,
              expected: Number(c.dataset.points),
              bars: Array.from(c.querySelectorAll('rect.rect')).filter(r => r.getBBox().height > 0).length,
              dots: Array.from(c.querySelectorAll('circle.dot')).filter(d => d.getBBox().width > 0).length,
              width: c.querySelector('svg').getBoundingClientRect().width,
            }));
            """
        )
        driver.save_screenshot(str(tmp_path / "report.png"))
        errors = [entry for entry in driver.get_log("browser") if entry["level"] in ("SEVERE", "ERROR")]
    finally:
        driver.quit()
    by_name = {c["name"]: c for c in charts}
    assert set(by_name) == {"volume", "latency", "exceptions-opened", "exceptions-resolved"}
    assert all(c["width"] > 300 for c in charts)
    # Bars with a non-zero height: one per (day, metric) with deliveries.
    assert by_name["volume"]["bars"] == 4
    assert by_name["latency"]["dots"] == by_name["latency"]["expected"] == 9
    assert by_name["exceptions-opened"]["bars"] == 2
    assert by_name["exceptions-resolved"]["bars"] == 1
    assert errors == []
    assert (tmp_path / "report.png").stat().st_size > 10_000
