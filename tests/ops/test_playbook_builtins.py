"""Every built-in playbook, run non-interactively against a demo workspace, reaches the verdict its data calls for.

The demo seeds planted messiness (malformed rows, ship methods the mapping lacks, non-sellable stock, two
SKUs missing from the catalog) and syncs into a sandbox that stops when the demo ends; the checks that
should catch the messiness fail with the workspace's real figures, and the ones the sync handled pass.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest
from typer.testing import CliRunner

from cogent_cli.builtins import builtin_dir
from cogent_cli.cli import app
from cogent_cli.demo import run_demo
from cogent_cli.errors import ExitStatus
from cogent_cli.playbooks import load_playbooks
from cogent_cli.sync.lanes import UNSENT
from cogent_cli.workspace import Workspace

BUILT_INS = sorted(p.stem for p in builtin_dir("playbooks").glob("*.yaml"))


@dataclass
class Run:
    exit_code: int
    outcome: str
    steps: dict[str, dict]  # by title

    def outcome_of(self, title: str) -> str:
        return self.steps[title]["outcome"]

    def checks(self, title: str) -> list[dict]:
        return json.loads(self.steps[title]["checks"])

    def failed(self) -> set[str]:
        return {title for title, step in self.steps.items() if step["outcome"] == "failed"}


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    """One small demo workspace for the whole module (its sandbox has stopped, as after a real demo)."""
    report = run_demo(tmp_path_factory.mktemp("playbooks") / "demo", orders=6)
    return Workspace(report.workspace)


def _run(workspace: Workspace, name: str) -> Run:
    result = CliRunner().invoke(app, ["-w", str(workspace.root), "playbook", "run", name, "--non-interactive"])
    with workspace.store() as store:
        run = next(store.db.query("select * from playbook_runs where playbook = ? order by id desc limit 1", [name]))
        steps = {s["title"]: s for s in store.db["playbook_steps"].rows_where("run_id = ?", [run["id"]])}
    assert len(steps) == len(load_playbooks(None)[name].steps), result.output
    assert result.exit_code == (ExitStatus.FINDINGS if run["outcome"] == "failed" else 0), result.output
    return Run(result.exit_code, run["outcome"], steps)


def _count(workspace: Workspace, sql: str) -> int:
    with workspace.store() as store:
        return next(store.db.query(sql))["n"]


def _quarantined(workspace: Workspace) -> int:
    return _count(workspace, "select count(*) as n from inbox where status = 'quarantined'")


def _detail(run: Run, title: str, path: str) -> dict:
    return next(c for c in run.checks(title) if c["detail"].startswith(f"{path} = "))


def test_the_six_built_in_playbooks_load():
    assert BUILT_INS == [
        "daily-sync-health",
        "failed-despatch-triage",
        "handover",
        "new-source-onboarding",
        "peak-trading-prep",
        "returns-suppression-check",
    ]
    playbooks = load_playbooks(None)
    assert all(playbooks[name].steps for name in BUILT_INS)


def test_daily_sync_health_fails_on_the_quarantined_payloads_and_passes_the_rest(demo: Workspace):
    run = _run(demo, "daily-sync-health")
    assert run.exit_code == ExitStatus.FINDINGS and run.outcome == "failed"
    assert run.failed() == {"No threshold is breached"}
    quarantined = _detail(run, "No threshold is breached", "quarantined_total")
    assert not quarantined["passed"]
    assert quarantined["detail"] == f"quarantined_total = {_quarantined(demo)} (expected equals 0)"
    assert _quarantined(demo) > 0
    # Exceptions are minutes old and nothing transactional has waited an hour: those checks pass.
    assert _detail(run, "No threshold is breached", "oldest_open_exception_minutes.ops")["passed"]
    assert _detail(run, "No threshold is breached", "outbox_oldest_minutes.transactional")["passed"]
    assert run.steps["No threshold is breached"]["exit_status"] == ExitStatus.THRESHOLD
    assert run.outcome_of("The configuration is valid") == "passed"
    assert run.outcome_of("Every fact reached Klaviyo within its SLA") == "passed"


def test_failed_despatch_triage_lists_ops_exceptions_and_unreadable_payloads(demo: Workspace):
    run = _run(demo, "failed-despatch-triage")
    assert run.outcome == "failed"
    assert run.failed() == {
        "Is the warehouse feed current?",
        "Despatch exceptions waiting for ops",
        "Payloads the warehouse sent that could not be read",
    }
    ops = _count(demo, "select count(*) as n from sync_exceptions where status = 'open' and owner = 'ops'")
    assert ops > 0
    assert run.checks("Despatch exceptions waiting for ops")[0]["detail"] == f"length = {ops} (expected equals 0)"
    assert run.checks("Payloads the warehouse sent that could not be read")[0]["detail"] == (
        f"length = {_quarantined(demo)} (expected equals 0)"
    )
    assert "quarantine:peoplevox" in run.checks("Is the warehouse feed current?")[0]["detail"]
    # The demo's unmapped ship method affects a handful of orders: a warning, below the error threshold.
    assert run.outcome_of("Despatches held back by an unknown ship method") == "passed"
    assert run.outcome_of("Rehearse the replay") == "passed"


def test_handover_fails_only_where_the_stopped_sandbox_cannot_be_reached(demo: Workspace):
    run = _run(demo, "handover")
    # `doctor` cannot reach the demo's Klaviyo (its sandbox stopped) nor find its credentials.
    assert run.failed() == {"What this workspace does"}
    assert run.steps["What this workspace does"]["exit_status"] != 0
    owners = run.checks("Who owns which exception")
    assert [c["detail"] for c in owners] == [
        "owners.unmapped_ship_method = 'ops' (expected not empty)",
        "owners.identity_conflict = 'ecommerce' (expected not empty)",
    ]
    assert run.checks("How you will be told")[0]["passed"]
    assert run.outcome_of("Daily routine") == "done"


def test_new_source_onboarding_stops_at_the_quarantined_payloads(demo: Workspace):
    run = _run(demo, "new-source-onboarding")
    assert run.failed() == {"The source is configured and its credentials found", "Every payload could be read"}
    assert run.checks("Every payload could be read")[0]["detail"] == (
        f"length = {_quarantined(demo)} (expected equals 0)"
    )
    assert run.outcome_of("Ship methods and stock locations are mapped") == "passed"
    assert run.outcome_of("Rehearse the first sync") == "passed"
    assert run.outcome_of("A first pull of recent history") == "done"


def test_peak_trading_prep_finds_no_schedules_and_keeps_non_sellable_stock_out(demo: Workspace):
    run = _run(demo, "peak-trading-prep")
    assert "Queue priorities" in run.failed()
    assert run.checks("Queue priorities")[0]["detail"] == "length = 0 (expected at least 1)"
    marks = ", ".join(f"'{status}'" for status in UNSENT)
    waiting = _count(demo, f"select count(*) as n from outbox where lane = 0 and status in ({marks})")
    transactional = _detail(run, "Rate budget headroom", "outbox_depth.transactional")
    assert transactional["detail"] == f"outbox_depth.transactional = {waiting} (expected equals 0)"
    assert run.outcome_of("Rate budget headroom") == ("failed" if waiting else "passed")
    assert _detail(run, "Rate budget headroom", "rate_budget.share_used")["passed"]
    # The seed plants quarantine, damaged and goods-in stock; the sync keeps it out of Klaviyo's feed.
    assert run.outcome_of("Non-sellable stock stays out of the feed") == "passed"
    assert run.outcome_of("Ship methods ready for peak carriers") == "passed"


def test_returns_suppression_check_passes_on_the_demo(demo: Workspace):
    run = _run(demo, "returns-suppression-check")
    assert run.exit_code == 0 and run.outcome == "passed"
    assert run.failed() == set()
    assert all(check["passed"] for step in run.steps for check in run.checks(step))
