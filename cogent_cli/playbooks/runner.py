"""Running playbooks: each step's command, its checks, and a record of who ran what and how it went."""

from __future__ import annotations

import getpass
import json
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from cogent_cli.playbooks.model import Check, Playbook, Step
from cogent_cli.state import Store
from cogent_cli.workspace import Workspace

Outcome = Literal["passed", "failed", "skipped", "done"]
COMMAND_TIMEOUT_SECONDS = 15 * 60


@dataclass(frozen=True)
class CommandResult:
    exit_status: int
    stdout: str
    stderr: str


@dataclass(frozen=True)
class CheckResult:
    check: Check
    passed: bool
    actual: Any
    detail: str


@dataclass
class StepResult:
    index: int
    step: Step
    outcome: Outcome
    command: CommandResult | None = None
    checks: list[CheckResult] = field(default_factory=list)
    note: str | None = None


def run_command(workspace: Workspace, command: str) -> CommandResult:
    """Run `cogent COMMAND` against this workspace in a child process, capturing its output."""
    argv = [sys.executable, "-m", "cogent_cli", "--workspace", str(workspace.root), *shlex.split(command)]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_SECONDS, check=False)
    except subprocess.TimeoutExpired:
        return CommandResult(124, "", f"`cogent {command}` did not finish within {COMMAND_TIMEOUT_SECONDS} s")
    return CommandResult(done.returncode, done.stdout, done.stderr)


def resolve_path(data: Any, path: str) -> Any:
    """Follow a dotted path (`open.by_owner.ops`, `findings.0.severity`, `findings.length`)."""
    value = data
    for part in filter(None, path.split(".")):
        if part == "length" and isinstance(value, list | dict):
            value = len(value)
        elif isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            raise KeyError(part)
    return value


def evaluate(check: Check, output: str) -> CheckResult:
    try:
        data = json.loads(output)
    except json.JSONDecodeError:
        return CheckResult(check, False, None, "the command did not print JSON (add --format json to it)")
    try:
        actual = resolve_path(data, check.path)
    except KeyError as missing:
        return CheckResult(check, False, None, f"{check.path!r} not found in the output (no {missing})")
    try:
        passed = {
            "equals": lambda: actual == check.value,
            "at_most": lambda: actual <= check.value,
            "at_least": lambda: actual >= check.value,
            "is_empty": lambda: not actual,
            "not_empty": lambda: bool(actual),
        }[check.op]()
    except TypeError:
        return CheckResult(check, False, actual, f"cannot compare {actual!r} with {check.value!r}")
    expected = check.op.replace("_", " ") + ("" if check.value is None else f" {check.value!r}")
    return CheckResult(check, passed, actual, f"{check.path or 'output'} = {actual!r} (expected {expected})")


def execute_step(workspace: Workspace, index: int, step: Step) -> StepResult:
    if not step.command:
        return StepResult(index, step, "done")
    result = run_command(workspace, step.command)
    checks = [evaluate(check, result.stdout) for check in step.checks]
    # A command that exits non-zero without checks has failed; with checks, the checks decide.
    failed = any(not c.passed for c in checks) if checks else result.exit_status != 0
    return StepResult(index, step, "failed" if failed else "passed", result, checks)


class PlaybookSession:
    """One recorded run of a playbook. The CLI drives it step by step (interactive) or all at once."""

    def __init__(self, workspace: Workspace, store: Store, playbook: Playbook, mode: str) -> None:
        self.workspace = workspace
        self.store = store
        self.playbook = playbook
        self.results: list[StepResult] = []
        with store.transaction() as db:
            self.run_id = (
                db["playbook_runs"]
                .insert(
                    {
                        "playbook": playbook.name,
                        "mode": mode,
                        "operator": getpass.getuser(),
                        "started_at": datetime.now(UTC).isoformat(),
                        "finished_at": None,
                        "outcome": "running",
                    }
                )
                .last_pk
            )

    def run(self, index: int) -> StepResult:
        return self._record(execute_step(self.workspace, index, self.playbook.steps[index]))

    def skip(self, index: int, note: str | None = None) -> StepResult:
        return self._record(StepResult(index, self.playbook.steps[index], "skipped", note=note))

    def annotate(self, result: StepResult, note: str) -> None:
        result.note = note
        self.store.db["playbook_steps"].update((self.run_id, result.index), {"note": note})

    def _record(self, result: StepResult) -> StepResult:
        self.results.append(result)
        command = result.command
        with self.store.transaction() as db:
            db["playbook_steps"].insert(
                {
                    "run_id": self.run_id,
                    "step_index": result.index,
                    "title": result.step.title,
                    "owner": result.step.owner,
                    "command": result.step.command,
                    "exit_status": command.exit_status if command else None,
                    "outcome": result.outcome,
                    "checks": json.dumps(
                        [{"describe": c.check.describe, "passed": c.passed, "detail": c.detail} for c in result.checks]
                    ),
                    "note": result.note,
                    "at": datetime.now(UTC).isoformat(),
                },
                pk=("run_id", "step_index"),
                replace=True,
            )
        return result

    @property
    def failed(self) -> list[StepResult]:
        return [r for r in self.results if r.outcome == "failed"]

    def finish(self, outcome: str | None = None) -> str:
        outcome = outcome or ("failed" if self.failed else "passed")
        self.store.db["playbook_runs"].update(
            self.run_id, {"finished_at": datetime.now(UTC).isoformat(), "outcome": outcome}
        )
        return outcome


def run_non_interactive(workspace: Workspace, store: Store, playbook: Playbook) -> PlaybookSession:
    session = PlaybookSession(workspace, store, playbook, mode="non-interactive")
    for index in range(len(playbook.steps)):
        session.run(index)
    session.finish()
    return session
