"""Playbooks: validation on load, non-interactive and interactive runs, records, export."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cogent_cli.cli import app
from cogent_cli.errors import ExitStatus
from cogent_cli.playbooks import PlaybookError, load_playbooks, parse_playbook
from cogent_cli.playbooks.model import Check
from cogent_cli.playbooks.runner import evaluate, resolve_path
from cogent_cli.workspace import Workspace

GOOD = """\
title: State file check
audience: [ops]
when: Every morning
steps:
  - title: Schema is current
    explain: The state file must have no pending migrations.
    owner: ops
    command: db info --format json
    checks:
      - describe: No migrations pending
        path: migrations_pending
        op: equals
        value: 0
        on_fail: Run `cogent db migrate`.
  - title: Read the summary
    explain: Nothing to run here.
    owner: ecommerce
"""

FAILING = GOOD.replace("op: equals\n        value: 0", "op: at_least\n        value: 5")


def _write(workspace: Workspace, name: str, text: str) -> Path:
    folder = workspace.root / "playbooks"
    folder.mkdir(exist_ok=True)
    path = folder / f"{name}.yaml"
    path.write_text(text)
    return path


def test_malformed_playbook_names_file_line_and_field(tmp_path: Path):
    text = GOOD.replace("    owner: ecommerce\n", "    owner: ecommerce\n    colour: red\n")
    with pytest.raises(PlaybookError) as caught:
        parse_playbook(text, tmp_path / "bad.yaml")
    assert f"{tmp_path / 'bad.yaml'}:18: steps.1.colour: Extra inputs are not permitted" in caught.value.message


def test_missing_field_and_check_without_value_are_both_reported(tmp_path: Path):
    text = GOOD.replace("when: Every morning\n", "").replace("        value: 0\n", "")
    with pytest.raises(PlaybookError) as caught:
        parse_playbook(text, tmp_path / "p.yaml")
    lines = caught.value.message.splitlines()
    assert any(line.endswith("when: Field required") for line in lines)
    assert any("steps.0.checks.0" in line and "`equals` needs a `value`" in line for line in lines)


def test_yaml_syntax_error_points_at_its_line(tmp_path: Path):
    with pytest.raises(PlaybookError) as caught:
        parse_playbook("title: [unclosed\naudience: x\n", tmp_path / "p.yaml")
    assert caught.value.message.startswith(f"{tmp_path / 'p.yaml'}:")
    assert "not valid YAML" in caught.value.message


def test_duplicate_playbook_names_are_refused(workspace: Workspace):
    _write(workspace, "one", GOOD.replace("title: State", "name: same\ntitle: State"))
    _write(workspace, "two", GOOD.replace("title: State", "name: same\ntitle: State"))
    with pytest.raises(PlaybookError, match="a playbook named 'same' already exists"):
        load_playbooks(workspace.root)


@pytest.mark.parametrize(
    ("path", "op", "value", "passed"),
    [
        ("counts.ops", "at_most", 0, False),
        ("counts.cx", "equals", 0, True),
        ("items.length", "at_least", 2, True),
        ("items.0.age", "at_most", 60, True),
        ("items", "is_empty", None, False),
        ("missing.key", "equals", 1, False),
    ],
)
def test_checks_evaluate_paths_into_json_output(path, op, value, passed):
    output = json.dumps({"counts": {"ops": 2, "cx": 0}, "items": [{"age": 30}, {"age": 90}]})
    check = Check(describe="d", path=path, op=op, value=value, on_fail="f")
    assert evaluate(check, output).passed is passed


def test_check_on_non_json_output_fails_with_a_hint():
    result = evaluate(Check(describe="d", path="a", op="is_empty", on_fail="f"), "plain text")
    assert not result.passed
    assert "did not print JSON" in result.detail


def test_resolve_path_counts_lists():
    assert resolve_path({"a": [1, 2, 3]}, "a.length") == 3


def test_non_interactive_run_passes_and_is_recorded(workspace: Workspace, runner: CliRunner):
    _write(workspace, "state-check", GOOD)
    result = runner.invoke(app, ["-w", str(workspace.root), "playbook", "run", "state-check", "--non-interactive"])
    assert result.exit_code == 0, result.output
    assert "pass No migrations pending: migrations_pending = 0 (expected equals 0)" in result.output
    with workspace.store() as store:
        run = next(store.db["playbook_runs"].rows)
        steps = list(store.db["playbook_steps"].rows_where("run_id = ?", [run["id"]], order_by="step_index"))
    assert (run["playbook"], run["mode"], run["outcome"]) == ("state-check", "non-interactive", "passed")
    assert [s["outcome"] for s in steps] == ["passed", "done"]


def test_non_interactive_run_exits_3_when_a_check_fails(workspace: Workspace, runner: CliRunner):
    _write(workspace, "state-check", FAILING)
    result = runner.invoke(app, ["-w", str(workspace.root), "playbook", "run", "state-check", "--non-interactive"])
    assert result.exit_code == ExitStatus.FINDINGS
    assert "what to do: Run `cogent db migrate`." in result.output


def test_interactive_run_takes_skip_and_notes_from_input(workspace: Workspace, runner: CliRunner):
    _write(workspace, "state-check", GOOD)
    answers = "s\nchecked it yesterday\nr\nall good\n"
    result = runner.invoke(app, ["-w", str(workspace.root), "playbook", "run", "state-check"], input=answers)
    assert result.exit_code == 0, result.output
    with workspace.store() as store:
        steps = list(store.db["playbook_steps"].rows_where(order_by="step_index"))
        run = next(store.db["playbook_runs"].rows)
    assert [(s["outcome"], s["note"]) for s in steps] == [("skipped", "checked it yesterday"), ("done", "all good")]
    assert run["mode"] == "interactive"


def test_interactive_quit_abandons_the_run(workspace: Workspace, runner: CliRunner):
    _write(workspace, "state-check", GOOD)
    result = runner.invoke(app, ["-w", str(workspace.root), "playbook", "run", "state-check"], input="q\n")
    assert result.exit_code == ExitStatus.ERROR
    with workspace.store() as store:
        assert next(store.db["playbook_runs"].rows)["outcome"] == "abandoned"


def test_export_markdown_shows_todays_figures(workspace: Workspace, runner: CliRunner):
    _write(workspace, "state-check", GOOD)
    out = workspace.root / "handover.md"
    result = runner.invoke(
        app, ["-w", str(workspace.root), "playbook", "export", "state-check", "--format", "md", "-o", str(out)]
    )
    assert result.exit_code == 0, result.output
    text = out.read_text()
    assert text.startswith("# State file check")
    assert (
        "| No migrations pending | ✅ migrations_pending = 0 (expected equals 0) | Run `cogent db migrate`. |" in text
    )
    assert "*Workspace:* Acme Outdoor" in text


def test_unknown_playbook_lists_known_ones(workspace: Workspace, runner: CliRunner):
    _write(workspace, "state-check", GOOD)
    result = runner.invoke(app, ["-w", str(workspace.root), "playbook", "show", "nope"])
    assert result.exit_code == ExitStatus.USAGE
    assert "No playbook named 'nope'" in result.output
    assert "state-check" in result.output
