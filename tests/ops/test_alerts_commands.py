"""`cogent sync`, `cogent schedule run-due` and `cogent audit` alert the owning team once per incident."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from typer.testing import CliRunner

from cogent_cli.cli import app
from cogent_cli.errors import ExitStatus
from cogent_cli.workspace import Workspace
from tests.ops.conftest import Receiver, configure

STUCK_ORDERS = """\
-- name: stuck-orders
-- description: Orders held at the warehouse
-- severity: error
-- owner: ops
-- fix: Release the hold in the WMS.
select order_number, 'Order ' || order_number || ' is held' as title
from events
where event_type = 'order.held'
"""


def _quarantine(workspace: Workspace) -> None:
    with workspace.store() as store:
        store.db["inbox"].insert(
            {
                "system": "peoplevox",
                "route": "pull",
                "kind": "despatch_summary",
                "idempotency_key": "bad-1",
                "received_at": datetime.now(UTC).isoformat(),
                "headers": "{}",
                "body": "{}",
                "status": "quarantined",
                "reason": "despatch_date: 'yesterday' is not a date",
                "attempts": 1,
            }
        )


def _hold(workspace: Workspace, order_number: str) -> None:
    with workspace.store() as store:
        store.db["events"].insert(
            {
                "event_id": f"held-{order_number}",
                "event_type": "order.held",
                "system": "peoplevox",
                "occurred_at": datetime.now(UTC).isoformat(),
                "order_number": order_number,
                "body": "{}",
            }
        )


def _release(workspace: Workspace, order_number: str) -> None:
    with workspace.store() as store:
        store.db["events"].delete(f"held-{order_number}")


@pytest.fixture
def alerting(workspace: Workspace, receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> Workspace:
    monkeypatch.setenv("COGENT_KLAVIYO_API_KEY", "pk_test_alerts")
    text = workspace.config_path.read_text().replace(
        'base_url = "https://a.klaviyo.com"', 'base_url = "http://127.0.0.1:9"', 1
    )
    workspace.config_path.write_text(text)
    return configure(
        workspace,
        f'[alerts.ops]\nwebhook_url = "{receiver.url("/ops")}"\n'
        f'[alerts.default]\nwebhook_url = "{receiver.url("/default")}"\n',
    )


def _texts(receiver: Receiver, path: str = "/ops") -> list[str]:
    return [r["json"]["text"] for r in receiver.received if r["path"] == path]


def test_sync_alerts_a_breach_once_across_two_runs(alerting: Workspace, receiver: Receiver, runner: CliRunner):
    _quarantine(alerting)
    first = runner.invoke(app, ["-w", str(alerting.root), "sync"])
    second = runner.invoke(app, ["-w", str(alerting.root), "sync"])
    assert first.exit_code == 0, first.output
    assert second.exit_code == 0, second.output
    texts = _texts(receiver)
    assert len(texts) == 1, texts
    assert "peoplevox: 1 payload(s) quarantined (limit 0)" in texts[0]
    assert "Owner: ops" in texts[0]
    assert "Details: cogent inbox list --status quarantined --system peoplevox" in texts[0]
    assert "Alerted ops by webhook: quarantine:peoplevox" in first.stderr
    assert "Alerted" not in second.stderr


def test_sync_without_a_breach_sends_nothing(alerting: Workspace, receiver: Receiver, runner: CliRunner):
    result = runner.invoke(app, ["-w", str(alerting.root), "sync"])
    assert result.exit_code == 0, result.output
    assert receiver.received == []


def test_undeliverable_alert_warns_but_never_fails_the_sync(alerting: Workspace, receiver: Receiver, runner: CliRunner):
    receiver.status = 500
    _quarantine(alerting)
    result = runner.invoke(app, ["-w", str(alerting.root), "sync"])
    assert result.exit_code == 0, result.output
    assert "quarantine:peoplevox for ops not delivered by webhook" in result.stderr
    receiver.status = 200
    retried = runner.invoke(app, ["-w", str(alerting.root), "sync"])
    assert "Alerted ops by webhook: quarantine:peoplevox" in retried.stderr
    assert len(_texts(receiver)) == 2


def test_broken_alert_configuration_warns_but_never_fails_the_sync(
    alerting: Workspace, receiver: Receiver, runner: CliRunner
):
    workspace = configure(alerting, '[alerts.cx]\nemail_command = "exit 1"\n[status]\nmax_open_exceptions = {cx = 0}\n')
    with workspace.store() as store:
        store.db["sync_exceptions"].insert(
            {"class": "validation_error", "owner": "cx", "status": "open", "created_at": datetime.now(UTC).isoformat()}
        )
    result = runner.invoke(app, ["-w", str(workspace.root), "sync"])
    assert result.exit_code == 0, result.output
    assert "exceptions:cx for cx not delivered by email: exit 1" in result.stderr


def test_schedule_run_due_alerts_a_breach(alerting: Workspace, receiver: Receiver, runner: CliRunner):
    _quarantine(alerting)
    added = runner.invoke(app, ["-w", str(alerting.root), "schedule", "add", "tick", "* * * * *", "--", "--version"])
    assert added.exit_code == 0, added.output
    result = runner.invoke(app, ["-w", str(alerting.root), "schedule", "run-due"])
    assert result.exit_code == 0, result.output
    assert "tick (due" in result.stderr
    texts = _texts(receiver)
    assert len(texts) == 1 and "peoplevox: 1 payload(s) quarantined" in texts[0]


def test_audit_alerts_a_new_error_finding_once_and_again_only_after_it_was_fixed_and_came_back(
    alerting: Workspace, receiver: Receiver, runner: CliRunner
):
    (alerting.root / "audits").mkdir()
    (alerting.root / "audits" / "stuck_orders.sql").write_text(STUCK_ORDERS)

    def audit() -> int:
        result = runner.invoke(app, ["-w", str(alerting.root), "audit", "stuck-orders", "--format", "json"])
        assert result.exit_code in (0, ExitStatus.FINDINGS), result.output
        return result.exit_code

    _hold(alerting, "ORD-7")
    assert audit() == ExitStatus.FINDINGS
    assert audit() == ExitStatus.FINDINGS  # persisting: no second alert
    texts = _texts(receiver)
    assert len(texts) == 1
    assert "stuck-orders: Order ORD-7 is held (1 affected), first seen" in texts[0]
    assert "Owner: ops" in texts[0] and "Details: cogent audit stuck-orders" in texts[0]

    _release(alerting, "ORD-7")
    assert audit() == 0
    assert len(_texts(receiver)) == 1
    with alerting.store() as store:
        incident = next(store.db["incidents"].rows_where("key like 'audit:stuck-orders:%'"))
    assert incident["resolved_at"] is not None

    _hold(alerting, "ORD-7")
    assert audit() == ExitStatus.FINDINGS
    assert len(_texts(receiver)) == 2


def test_audit_of_other_audits_leaves_an_open_finding_incident_open(
    alerting: Workspace, receiver: Receiver, runner: CliRunner
):
    (alerting.root / "audits").mkdir()
    (alerting.root / "audits" / "stuck_orders.sql").write_text(STUCK_ORDERS)
    _hold(alerting, "ORD-8")
    runner.invoke(app, ["-w", str(alerting.root), "audit", "stuck-orders", "--format", "json"])
    other = runner.invoke(app, ["-w", str(alerting.root), "audit", "ship-methods", "--format", "json"])
    assert other.exit_code == 0, other.output
    with alerting.store() as store:
        incident = next(store.db["incidents"].rows_where("key like 'audit:stuck-orders:%'"))
    assert incident["resolved_at"] is None
    assert len(_texts(receiver)) == 1
