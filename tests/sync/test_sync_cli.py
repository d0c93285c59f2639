"""The sync command group as a user sees it: dry run, runs, exceptions, replay arguments, schedules."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from typing import Any

from sync_fakes import add_events, shipment, stock
from typer.testing import CliRunner

from cogent_cli.cli import app
from cogent_cli.errors import ExitStatus
from cogent_cli.sync import schedule
from cogent_cli.workspace import Workspace


def cogent(runner: CliRunner, workspace: Workspace, *args: str) -> Any:
    return runner.invoke(app, ["--workspace", str(workspace.root), *args])


def test_dry_run_shows_each_field_and_changes_nothing(runner: CliRunner, workspace: Workspace) -> None:
    with workspace.store() as store:
        add_events(store, [shipment("S1", [("T1", [("SKU-1", 2)])])])
    result = cogent(runner, workspace, "sync", "--dry-run")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith("transactional event Fulfilled Shipment  event ")
    assert '    properties.Parcels[0].TrackingNumber: "T1"' in lines
    assert "    properties.Items[0].Quantity: 2" in lines
    with workspace.store() as store:
        assert store.db["outbox"].count == 0 and store.get_meta("sync.events_position") is None


def test_dry_run_reports_events_the_mapping_would_park(runner: CliRunner, workspace: Workspace) -> None:
    workspace.config_path.write_text(
        workspace.config_path.read_text().replace(
            '# "DPD/UK Standard 1-2 Days (Tracked)" = "standard"', '"ROYAL-MAIL-48" = "standard"'
        )
    )
    with workspace.store() as store:
        add_events(store, [shipment("S1", [("T1", [("SKU-1", 1)])])])
    result = cogent(runner, workspace, "sync", "--dry-run", "--format", "json")
    plan = json.loads(result.stdout)
    assert plan["operations"] == []
    assert [p["class"] for p in plan["problems"]] == ["unmapped_ship_method"]


def test_backfill_needs_since_and_a_bad_date_is_a_usage_error(runner: CliRunner, workspace: Workspace) -> None:
    result = cogent(runner, workspace, "sync", "--backfill")
    assert result.exit_code == ExitStatus.USAGE
    assert "Error: --backfill and --since go together" in result.stderr
    result = cogent(runner, workspace, "sync", "--backfill", "--since", "last week")
    assert result.exit_code == ExitStatus.USAGE
    assert "--since 'last week' is not a date" in result.stderr


def test_sync_exits_locked_naming_the_holder(runner: CliRunner, workspace: Workspace) -> None:
    from cogent_cli.sync.lock import process_start_time

    parent = os.getppid()
    with workspace.store() as store:
        store.db["sync_lock"].insert(
            {
                "name": "sync",
                "pid": parent,
                "process_started": process_start_time(parent),
                "host": os.uname().nodename,
                "acquired_at": "2026-11-23T08:00:00+00:00",
            }
        )
    result = cogent(runner, workspace, "sync")
    assert result.exit_code == ExitStatus.LOCKED
    assert (
        f"Another sync run holds the workspace lock: pid {parent} on {os.uname().nodename}, started 2026-11-23T08:00:00+00:00"
        in result.stderr
    )
    listed = cogent(runner, workspace, "runs", "list", "--format", "json")
    assert [(r["status"], r["exit_status"]) for r in json.loads(listed.stdout)] == [("locked", 4)]


def test_exceptions_list_show_and_resolve(runner: CliRunner, workspace: Workspace) -> None:
    from cogent_cli.sync.outbox import Outbox

    with workspace.store() as store:
        add_events(
            store, [stock("SKU-1", "MAIN", 3, non_sellable=None), shipment("S1", [("T1", [("SKU-1", 1)])], email=None)]
        )
        Outbox(store, workspace.config).enqueue_new()
    listed = cogent(runner, workspace, "exceptions", "list", "--format", "json")
    [record] = json.loads(listed.stdout)
    assert (record["class"], record["owner"], record["pointer"]) == ("source_payload_invalid", "ops", "/customer")
    assert (
        cogent(runner, workspace, "exceptions", "list", "--owner", "ecommerce", "--format", "json").stdout.strip()
        == "[]"
    )
    shown = cogent(runner, workspace, "exceptions", "show", str(record["id"]))
    assert f"id:          {record['id']}" in shown.stdout.splitlines()
    resolved = cogent(runner, workspace, "exceptions", "resolve", str(record["id"]), "--note", "customer had no email")
    assert resolved.exit_code == 0 and f"Exception {record['id']} resolved." in resolved.stderr
    again = cogent(runner, workspace, "exceptions", "resolve", str(record["id"]), "--note", "twice")
    assert again.exit_code == ExitStatus.USAGE
    assert f"Exception {record['id']} is already resolved" in again.stderr
    bad = cogent(runner, workspace, "exceptions", "list", "--class", "typo")
    assert bad.exit_code == ExitStatus.USAGE and "Unknown exception class 'typo'" in bad.stderr


def test_replay_needs_a_selection(runner: CliRunner, workspace: Workspace) -> None:
    result = cogent(runner, workspace, "replay")
    assert result.exit_code == ExitStatus.USAGE
    assert "Error: Say which exceptions to replay" in result.stderr
    missing = cogent(runner, workspace, "replay", "99")
    assert missing.exit_code == ExitStatus.USAGE and "No exception with id 99" in missing.stderr


def test_schedule_add_list_remove_and_crontab(runner: CliRunner, workspace: Workspace) -> None:
    added = cogent(
        runner, workspace, "schedule", "add", "despatches", "*/5 * * * *", "--", "sync", "--source", "peoplevox"
    )
    assert added.exit_code == 0, added.output
    listed = json.loads(cogent(runner, workspace, "schedule", "list", "--format", "json").stdout)
    assert [(s["name"], s["cron"], s["command"]) for s in listed] == [
        ("despatches", "*/5 * * * *", ["sync", "--source", "peoplevox"])
    ]
    assert datetime.fromisoformat(listed[0]["next_run"]).minute % 5 == 0
    bad = cogent(runner, workspace, "schedule", "add", "x", "every minute", "--", "sync")
    assert bad.exit_code == ExitStatus.USAGE and "'every minute' is not a cron expression" in bad.stderr
    line = cogent(runner, workspace, "schedule", "crontab").stdout.strip()
    assert line.startswith("* * * * * ") and line.endswith(
        "schedule run-due >> " + str(workspace.root / ".cogent" / "schedule.log") + " 2>&1"
    )
    assert cogent(runner, workspace, "schedule", "remove", "despatches").exit_code == 0
    assert cogent(runner, workspace, "schedule", "remove", "despatches").exit_code == ExitStatus.USAGE


def test_a_slot_is_due_in_the_first_second_of_its_minute_when_cron_starts_run_due(workspace: Workspace) -> None:
    slot = datetime(2026, 12, 4, 21, 15, tzinfo=UTC)
    with workspace.store() as store:
        schedule.add_schedule(store, "despatches", "*/5 * * * *", ["runs", "list"])
        store.db.execute("update schedules set created_at = ?", [(slot - timedelta(days=1)).isoformat()])
        for now in (slot + timedelta(milliseconds=300), slot + timedelta(seconds=59)):
            store.db.execute("update schedules set last_due_at = null")
            assert schedule.claim_due(store, now) == [("despatches", ["runs", "list"], slot.isoformat())]
        assert schedule.claim_due(store, slot + timedelta(minutes=4, seconds=59)) == []


def test_run_due_runs_each_due_slot_once_and_records_the_outcome(workspace: Workspace) -> None:
    with workspace.store() as store:
        schedule.add_schedule(store, "history", "*/10 * * * *", ["runs", "list"])
        store.db.execute("update schedules set created_at = ?", [(datetime.now(UTC) - timedelta(days=1)).isoformat()])
        later = datetime.now(UTC) + timedelta(minutes=10)
        [outcome] = schedule.run_due(store, workspace.root, now=later)
        assert (outcome.name, outcome.exit_status, outcome.outcome) == ("history", 0, "ok")
        assert schedule.run_due(store, workspace.root, now=later) == []
        [info] = schedule.list_schedules(store, now=later)
        assert info.last_run is not None and info.last_run["outcome"] == "ok"
