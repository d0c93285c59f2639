"""Alerts go to the owning team once per incident, against a real HTTP receiver on loopback."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from cogent_cli.alerts import HEALTH_SCOPES, raise_alerts
from cogent_cli.health import Breach
from cogent_cli.workspace import Workspace
from tests.ops.conftest import Receiver, configure

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
LAG = Breach("lag:peoplevox", "source_lag", "ops", "peoplevox: newest fact is 300 min old", "cogent pull peoplevox")
EXC = Breach("exceptions:ecommerce", "open_exceptions", "ecommerce", "30 open exceptions", "cogent exceptions list")


def test_breach_alerts_its_owner_once_per_incident(workspace: Workspace, receiver: Receiver):
    workspace = configure(
        workspace,
        f'[alerts.ops]\nwebhook_url = "{receiver.url("/ops-hook")}"\n'
        f'[alerts.ecommerce]\nwebhook_url = "{receiver.url("/ecom-hook")}"\n',
    )
    with workspace.store() as store:
        first = raise_alerts(store, workspace.config, [LAG], HEALTH_SCOPES, NOW)
        again = raise_alerts(store, workspace.config, [LAG], HEALTH_SCOPES, NOW + timedelta(minutes=5))
    assert [d.ok for d in first] == [True]
    assert again == []
    assert len(receiver.received) == 1
    sent = receiver.received[0]
    assert sent["path"] == "/ops-hook"
    text = sent["json"]["text"]
    assert "peoplevox: newest fact is 300 min old" in text
    assert "Owner: ops · Since: 2026-11-23 12:00 UTC" in text
    assert "Details: cogent pull peoplevox" in text


def test_resolved_incident_alerts_again_when_it_returns(workspace: Workspace, receiver: Receiver):
    workspace = configure(workspace, f'[alerts.default]\nwebhook_url = "{receiver.url("/all")}"\n')
    with workspace.store() as store:
        raise_alerts(store, workspace.config, [LAG, EXC], HEALTH_SCOPES, NOW)
        raise_alerts(store, workspace.config, [EXC], HEALTH_SCOPES, NOW + timedelta(minutes=1))
        resolved = store.db["incidents"].get("lag:peoplevox")["resolved_at"]
        raise_alerts(store, workspace.config, [LAG, EXC], HEALTH_SCOPES, NOW + timedelta(minutes=2))
    assert resolved is not None
    texts = [r["json"]["text"] for r in receiver.received]
    assert sum("peoplevox" in t for t in texts) == 2
    assert sum("30 open exceptions" in t for t in texts) == 1


def test_evaluation_only_resolves_incidents_in_its_scope(workspace: Workspace, receiver: Receiver):
    workspace = configure(workspace, f'[alerts.default]\nwebhook_url = "{receiver.url("/all")}"\n')
    audit = Breach(
        "audit:refunds:ORD-1", "audit_finding", "ecommerce", "refund above order value", "cogent audit refunds"
    )
    with workspace.store() as store:
        raise_alerts(store, workspace.config, [audit], ["audit:refunds:"], NOW)
        raise_alerts(store, workspace.config, [], HEALTH_SCOPES, NOW + timedelta(minutes=1))
        assert store.db["incidents"].get(audit.key)["resolved_at"] is None
        raise_alerts(store, workspace.config, [], ["audit:refunds:"], NOW + timedelta(minutes=2))
        assert store.db["incidents"].get(audit.key)["resolved_at"] is not None


def test_failed_delivery_is_retried_on_the_next_run(workspace: Workspace, receiver: Receiver):
    workspace = configure(workspace, f'[alerts.ops]\nwebhook_url = "{receiver.url("/ops")}"\n')
    receiver.status = 500
    with workspace.store() as store:
        failed = raise_alerts(store, workspace.config, [LAG], HEALTH_SCOPES, NOW)
        receiver.status = 200
        retried = raise_alerts(store, workspace.config, [LAG], HEALTH_SCOPES, NOW + timedelta(minutes=1))
        settled = raise_alerts(store, workspace.config, [LAG], HEALTH_SCOPES, NOW + timedelta(minutes=2))
    assert [d.ok for d in failed] == [False]
    assert [d.ok for d in retried] == [True]
    assert settled == []


def test_email_command_receives_the_alert_on_stdin(workspace: Workspace, tmp_path: Path):
    out = tmp_path / "mail.txt"
    workspace = configure(workspace, f'[alerts.ops]\nemail_command = "cat > {out}"\n')
    with workspace.store() as store:
        deliveries = raise_alerts(store, workspace.config, [LAG], HEALTH_SCOPES, NOW)
    assert [(d.channel, d.ok) for d in deliveries] == [("email", True)]
    assert "Details: cogent pull peoplevox" in out.read_text()


def test_webhook_url_from_environment_never_reaches_the_log(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
):
    secret_url = "http://127.0.0.1:9/services/T000/B000/very-secret-token"
    monkeypatch.setenv("OPS_HOOK", secret_url)
    workspace = configure(workspace, '[alerts.ops]\nwebhook_url = {env = "OPS_HOOK"}\n')
    with workspace.store() as store:
        deliveries = raise_alerts(store, workspace.config, [LAG], HEALTH_SCOPES, NOW)
    assert [d.ok for d in deliveries] == [False]
    assert "very-secret-token" not in deliveries[0].detail
    assert "very-secret-token" not in caplog.text
