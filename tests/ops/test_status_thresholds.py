"""`cogent status`: each threshold breaches on its own, with exit status 5 and a JSON view for monitors."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from typer.testing import CliRunner

from cogent_cli.cli import app
from cogent_cli.errors import ExitStatus
from cogent_cli.health import collect_health
from cogent_cli.workspace import Workspace

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def _ago(minutes: float) -> str:
    return (NOW - timedelta(minutes=minutes)).isoformat()


def _inbox(db, system: str, status: str = "normalised", minutes: float = 5, key: str = "k") -> None:
    db["inbox"].insert(
        {
            "system": system,
            "route": "pull",
            "kind": "despatch_summary",
            "idempotency_key": key,
            "received_at": _ago(minutes),
            "headers": "{}",
            "body": "{}",
            "status": status,
            "attempts": 1,
        }
    )


def _event(db, system: str, minutes: float, event_id: str = "e1") -> None:
    db["events"].insert(
        {
            "event_id": event_id,
            "event_type": "shipment.despatched",
            "system": system,
            "occurred_at": _ago(minutes),
            "body": "{}",
        }
    )


def _outbox(db, lane: int, minutes: float, status: str = "pending", key: str = "op1") -> None:
    db["outbox"].insert(
        {
            "op_key": key,
            "event_id": key,
            "kind": "event",
            "lane": lane,
            "status": status,
            "payload": "{}",
            "enqueued_at": _ago(minutes),
        }
    )


def _exception(db, owner: str, minutes: float, cls: str = "validation_error") -> None:
    db["sync_exceptions"].insert({"class": cls, "owner": owner, "status": "open", "created_at": _ago(minutes)})


def _keys(workspace: Workspace) -> list[str]:
    with workspace.store() as store:
        return [b.key for b in collect_health(store, workspace.config, NOW).breaches]


def test_healthy_workspace_has_no_breaches(workspace: Workspace):
    with workspace.store() as store:
        _inbox(store.db, "peoplevox")
        _event(store.db, "peoplevox", minutes=10)
        _outbox(store.db, lane=0, minutes=5)
    assert _keys(workspace) == []


def test_source_lag_beyond_default_limit_breaches(workspace: Workspace):
    with workspace.store() as store:
        _inbox(store.db, "peoplevox")
        _event(store.db, "peoplevox", minutes=241)
    assert _keys(workspace) == ["lag:peoplevox"]


def test_per_source_lag_override_applies(workspace: Workspace):
    workspace.config_path.write_text(workspace.config_path.read_text() + "\n[status]\nlag_minutes = {swap = 30}\n")
    workspace = Workspace(workspace.root)
    with workspace.store() as store:
        _inbox(store.db, "swap")
        _event(store.db, "swap", minutes=45)
    assert _keys(workspace) == ["lag:swap"]


def test_quarantined_payloads_breach(workspace: Workspace):
    with workspace.store() as store:
        _inbox(store.db, "scend", status="quarantined")
    assert _keys(workspace) == ["quarantine:scend"]


def test_old_pending_outbox_item_breaches_its_lane(workspace: Workspace):
    with workspace.store() as store:
        _outbox(store.db, lane=2, minutes=61)
        _outbox(store.db, lane=0, minutes=61, status="sent", key="op2")
    assert _keys(workspace) == ["queue:catalog"]


def test_open_exceptions_per_owner_breach_only_over_their_limit(workspace: Workspace):
    with workspace.store() as store:
        _exception(store.db, "ops", 5, "unmapped_ship_method")
        for _ in range(25):
            _exception(store.db, "ecommerce", 5)
    assert _keys(workspace) == ["exceptions:ops"]


@pytest.mark.parametrize("fmt", ["table", "json"])
def test_status_exits_5_on_breach(workspace: Workspace, runner: CliRunner, fmt: str):
    with workspace.store() as store:
        seven_minutes_ago = datetime.now(UTC) - timedelta(minutes=7)
        store.db["sync_exceptions"].insert(
            {
                "class": "unmapped_ship_method",
                "owner": "ops",
                "status": "open",
                "created_at": seven_minutes_ago.isoformat(),
            }
        )
    result = runner.invoke(app, ["-w", str(workspace.root), "status", "--format", fmt])
    assert result.exit_code == ExitStatus.THRESHOLD
    assert "cogent exceptions list --owner ops" in result.output
    if fmt == "json":
        data = json.loads(result.stdout)
        assert data["healthy"] is False
        assert data["open_exceptions_by_owner"] == {"cx": 0, "ecommerce": 0, "ops": 1}
        assert 7 <= data["oldest_open_exception_minutes"]["ops"] < 60
        assert [b["key"] for b in data["breaches"]] == ["exceptions:ops"]


def test_status_exits_0_when_healthy(workspace: Workspace, runner: CliRunner):
    result = runner.invoke(app, ["-w", str(workspace.root), "status"])
    assert result.exit_code == 0, result.output
    assert "transactional" in result.stdout


def test_rate_budget_share_comes_from_recorded_requests(workspace: Workspace):
    with workspace.store() as store:
        store.db["sync_runs"].insert(
            {"started_at": _ago(10), "counts": json.dumps({"klaviyo_requests": {"bulk_create_events": 900}})}
        )
        store.db["sync_runs"].insert(
            {"started_at": _ago(90), "counts": json.dumps({"klaviyo_requests": {"bulk_create_events": 5000}})}
        )
        budget = collect_health(store, workspace.config, NOW).rate_budget
    # bulk_create_events: 150/min steady -> 9,000 per hour.
    assert budget["requests_last_hour"] == 900
    assert budget["busiest_operation"] == "bulk_create_events"
    assert budget["share_used"] == pytest.approx(0.1)
