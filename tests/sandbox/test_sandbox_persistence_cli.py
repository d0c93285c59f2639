"""The sandbox's data outlives the server, and `cogent sandbox ...` shows and serves it."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import httpx
from sqlite_utils import Database
from typer.testing import CliRunner

from cogent_cli.cli import app
from cogent_cli.sandbox import run_sandbox
from cogent_cli.sandbox.schema import migrations
from cogent_cli.sandbox.store import DB_FILE


def _fill(data: Path, headers: dict[str, str], events) -> None:
    with run_sandbox(data) as sandbox, httpx.Client(base_url=sandbox.base_url, headers=headers) as client:
        client.post("/api/events", json=events("Placed Order", "o-1", value=10.5, value_currency="GBP"))
        client.post("/api/events", json=events("Refunded Order", "o-1", profile={"email": "b@example.com"}))


def test_data_and_dedupe_survive_a_restart(tmp_path: Path, headers: dict[str, str], events) -> None:
    data = tmp_path / "data"
    _fill(data, headers, events)

    with run_sandbox(data) as sandbox, httpx.Client(base_url=sandbox.base_url, headers=headers) as client:
        assert client.post("/api/events", json=events("Placed Order", "o-1")).status_code == 202
        assert sandbox.db["events"].count == 2
        assert len(client.get("/api/profiles").json()["data"]) == 2
        assert [m["attributes"]["name"] for m in client.get("/api/metrics").json()["data"]] == [
            "Placed Order",
            "Refunded Order",
        ]


def test_event_ids_made_after_a_restart_follow_the_stored_ones(tmp_path: Path, headers: dict[str, str], events) -> None:
    data = tmp_path / "data"
    _fill(data, headers, events)

    with run_sandbox(data) as sandbox, httpx.Client(base_url=sandbox.base_url, headers=headers) as client:
        before = [row["id"] for row in sandbox.db.query("select id from events order by rowid")]
        client.post("/api/events", json=events("Placed Order", "o-2"))
        (after,) = [row["id"] for row in sandbox.db.query("select id from events where unique_id = 'o-2'")]

    assert before == sorted(before)
    assert after > max(before)


def test_events_stored_before_ids_were_numbers_keep_their_ids_and_dedupe(
    tmp_path: Path, headers: dict[str, str], events
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    old = Database(data / DB_FILE)
    migrations.apply(old, stop_before="m003_event_numbers")
    stamp = "2026-07-01T00:00:00+00:00"
    old["profiles"].insert({"id": "01P", "email": "a@example.com", "created": stamp, "updated": stamp})
    old["metrics"].insert({"id": "M1", "name": "Placed Order", "created": stamp, "updated": stamp})
    # A hex id, a hex id of digits alone (it reads like a decimal number) and a legacy random one.
    for event_id, unique_id in [("00000000000000ff", "o-1"), ("1764771234567890", "o-2"), ("aB3dE5fG7hJ9", "o-3")]:
        old["events"].insert(
            {
                "id": event_id, "uuid": "u", "metric_id": "M1", "metric_name": "Placed Order", "profile_id": "01P",
                "unique_id": unique_id, "dedupe_key": unique_id, "time": stamp, "timestamp": 1782864000,
                "properties": "{}", "backfill": 0, "received_at": stamp,
            }
        )  # fmt: skip
    old.close()

    with run_sandbox(data) as sandbox, httpx.Client(base_url=sandbox.base_url, headers=headers) as client:
        listed = client.get("/api/events", params={"sort": "datetime"}).json()["data"]
        ids = {event["attributes"]["event_properties"]["$event_id"]: event["id"] for event in listed}
        assert ids == {"o-1": "00000000000000ff", "o-2": "1764771234567890", "o-3": "1764771234567891"}
        assert len({event["attributes"]["uuid"] for event in listed}) == 3
        again = client.get(f"/api/events/{ids['o-3']}").json()["data"]
        assert again["attributes"]["uuid"] == next(e["attributes"]["uuid"] for e in listed if e["id"] == ids["o-3"])
        assert client.get("/api/events/aB3dE5fG7hJ9").status_code == 404
        repeat = events("Placed Order", "o-2", profile={"email": "a@example.com"})
        assert client.post("/api/events", json=repeat).status_code == 202
        assert sandbox.db["events"].count == 3
        assert client.post("/api/events", json=events("Placed Order", "o-4")).status_code == 202
        newest = client.get("/api/events", params={"sort": "-datetime"}).json()["data"][0]["id"]
        assert int(newest, 16) > 0x1764771234567891


def _events_in_file_alone(path: Path) -> int:
    """Events the database file holds by itself, ignoring whatever is still only in its WAL."""
    with sqlite3.connect(f"file:{path}?immutable=1", uri=True) as conn:
        return conn.execute("select count(*) from events").fetchone()[0]


def test_closing_the_sandbox_copies_its_wal_into_the_data_file(tmp_path: Path, headers: dict[str, str], events) -> None:
    _fill(tmp_path / "data", headers, events)

    assert _events_in_file_alone(tmp_path / "data" / DB_FILE) == 2


def test_data_file_is_private(tmp_path: Path, headers: dict[str, str], events) -> None:
    _fill(tmp_path / "data", headers, events)

    assert (tmp_path / "data" / "klaviyo.db").stat().st_mode & 0o777 == 0o600


def test_events_command_lists_newest_first_as_json(
    tmp_path: Path, runner: CliRunner, headers: dict[str, str], events
) -> None:
    _fill(tmp_path / "data", headers, events)

    result = runner.invoke(app, ["sandbox", "events", "--data", str(tmp_path / "data"), "--format", "json"])

    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [(r["metric"], r["email"], r["unique_id"]) for r in rows] == [
        ("Refunded Order", "b@example.com", "o-1"),
        ("Placed Order", "sarah@example.com", "o-1"),
    ]
    assert rows[1]["value"] == 10.5


def test_events_command_filters_by_metric_in_a_table(
    tmp_path: Path, runner: CliRunner, headers: dict[str, str], events, monkeypatch
) -> None:
    _fill(tmp_path / "data", headers, events)
    monkeypatch.setenv("COLUMNS", "200")

    result = runner.invoke(app, ["sandbox", "events", "--data", str(tmp_path / "data"), "--metric", "Placed Order"])

    assert result.exit_code == 0, result.output
    assert "sarah@example.com" in result.stdout
    assert "Refunded Order" not in result.stdout


def test_profiles_command_reads_cogent_sandbox_data(
    tmp_path: Path, runner: CliRunner, headers: dict[str, str], events, monkeypatch
) -> None:
    _fill(tmp_path / "data", headers, events)
    monkeypatch.setenv("COGENT_SANDBOX_DATA", str(tmp_path / "data"))

    result = runner.invoke(app, ["sandbox", "profiles", "--search", "b@", "--format", "json"])

    assert result.exit_code == 0, result.output
    assert [(p["email"], p["events"]) for p in json.loads(result.stdout)] == [("b@example.com", 1)]


def test_inspecting_a_folder_without_data_is_a_usage_error(tmp_path: Path, runner: CliRunner) -> None:
    result = runner.invoke(app, ["sandbox", "events", "--data", str(tmp_path / "empty")])

    assert result.exit_code == 2
    assert "No sandbox data in" in result.output
    assert "cogent sandbox serve --data" in result.output


def test_serve_refuses_a_bad_fault_spec(runner: CliRunner) -> None:
    result = runner.invoke(app, ["sandbox", "serve", "--faults", "5xx=2"])

    assert result.exit_code == 2
    assert "must be between 0 and 1" in result.output


def test_serve_refuses_negative_job_seconds(runner: CliRunner) -> None:
    result = runner.invoke(app, ["sandbox", "serve", "--job-seconds", "-1"])

    assert result.exit_code == 2
    assert "--job-seconds cannot be negative" in result.output


def test_serve_prints_the_base_url_line_and_answers_on_it(tmp_path: Path, headers: dict[str, str], events) -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    data = str(tmp_path / "d")
    command = [
        sys.executable,
        "-m",
        "cogent_cli",
        "sandbox",
        "serve",
        "--port",
        "0",
        "--data",
        data,
        "--job-seconds",
        "60",
    ]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) as server:
        try:
            line = server.stdout.readline().strip() if server.stdout else ""
            assert line.startswith('base_url = "http://127.0.0.1:')
            base_url = line.split('"')[1]
            response = httpx.post(f"{base_url}/api/events", json=events(), headers=headers)
            assert response.status_code == 202
            profiles = {"data": [{"type": "profile", "attributes": {"email": "a@example.com"}}]}
            body = {"data": {"type": "profile-bulk-import-job", "attributes": {"profiles": profiles}}}
            job = httpx.post(f"{base_url}/api/profile-bulk-import-jobs", json=body, headers=headers).json()["data"]
            read = httpx.get(f"{base_url}/api/profile-bulk-import-jobs/{job['id']}", headers=headers)
            assert read.json()["data"]["attributes"]["status"] == "processing"
        finally:
            server.send_signal(signal.SIGINT)
            server.wait(timeout=20)
    assert server.returncode in (0, 130)
