"""Every built-in playbook loads, and runs to the end non-interactively with its outcome recorded."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from cogent_cli.builtins import builtin_dir
from cogent_cli.cli import app
from cogent_cli.errors import ExitStatus
from cogent_cli.playbooks import load_playbooks
from cogent_cli.workspace import Workspace

BUILT_INS = sorted(p.stem for p in builtin_dir("playbooks").glob("*.yaml"))


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


@pytest.mark.parametrize("name", BUILT_INS)
def test_built_in_playbook_runs_non_interactively_on_a_fresh_workspace(
    name: str, workspace: Workspace, runner: CliRunner
):
    result = runner.invoke(app, ["-w", str(workspace.root), "playbook", "run", name, "--non-interactive"])
    with workspace.store() as store:
        run = next(store.db["playbook_runs"].rows)
        steps = list(store.db["playbook_steps"].rows_where("run_id = ?", [run["id"]]))
    assert len(steps) == len(load_playbooks(None)[name].steps)
    failed = [s["title"] for s in steps if s["outcome"] == "failed"]
    # Every step ran and was recorded; the exit status and the run's outcome follow the failed steps.
    assert all(s["outcome"] in ("passed", "failed", "done", "skipped") for s in steps)
    assert result.exit_code == (ExitStatus.FINDINGS if failed else 0), result.output
    assert run["outcome"] == ("failed" if failed else "passed")
    # The status check reads this workspace's real figures: a fresh workspace breaches nothing.
    if name == "daily-sync-health":
        assert "No threshold is breached" not in failed
