"""The audit framework: loading (built-in and custom, Python and SQL), grading, history, outputs, exit statuses."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from cogent_cli.audits import AuditRunner, load_registry
from cogent_cli.audits.loader import DuplicateAuditError
from cogent_cli.cli import app
from cogent_cli.config import parse_config
from cogent_cli.errors import ConfigError, ExitStatus
from tests.audits.conftest import Plant, configured

BUILTINS = {
    "klaviyo-profiles",
    "ship-methods",
    "stock-feed",
    "sync-gaps",
    "refunds",
    "returns-suppression",
    "consent",
    "metric-collisions",
}

BIG_ORDERS_SQL = """\
-- name: big-orders
-- description: Orders placed for more than 5 units
-- severity: warning
-- owner: cx
-- fix: Check the order with the customer.
select order_number, email, 'Order ' || order_number || ' is large' as title
from events
where event_type = 'order.placed' and json_extract(body, '$.data.lines[0].quantity') > 5
"""


def write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(exist_ok=True)
    path = folder / name
    path.write_text(text)
    return path


def order(plant: Plant, number: str, quantity: int, method: str = "DPD/Next Day") -> str:
    carrier, service = method.split("/")
    return plant.fact(
        "order.placed",
        {
            "lines": [{"sku": "SKU-1", "quantity": quantity}],
            "ship_method": {"carrier_code": carrier, "service_code": service},
        },
        order=number,
        email=f"{number}@example.org",
    )


def test_builtins_load_from_the_top_level_audits_folder(workspace):
    registry = load_registry(workspace.root)
    assert set(registry.audits) == BUILTINS
    assert registry.failures == []
    assert all(a.path and a.path.parent.name == "audits" for a in registry.audits.values())


def test_sql_custom_audit_finds_rows_with_business_keys_and_header_severity(workspace, store, plant):
    write(workspace.root / "audits", "big_orders.sql", BIG_ORDERS_SQL)
    order(plant, "1001", 9)
    order(plant, "1002", 1)
    registry = load_registry(workspace.root)
    [result] = AuditRunner(store, workspace.config, registry).run(["big-orders"])
    assert [(f.order_number, f.email, f.severity, f.owner, f.title) for f in result.findings] == [
        ("1001", "1001@example.org", "warning", "cx", "Order 1001 is large")
    ]
    assert result.findings[0].fix == "Check the order with the customer."


def test_python_custom_audit_is_loaded_like_a_builtin(workspace, store):
    write(
        workspace.root / "audits",
        "always.py",
        "from cogent_cli.audits import Issue, audit\n\n"
        "@audit(name='always', description='d', owner='ops', error_from=3)\n"
        "def always(ctx):\n"
        "    yield Issue(key='a', title='three things', count=3)\n",
    )
    [result] = AuditRunner(store, workspace.config, load_registry(workspace.root)).run(["always"])
    assert [(f.key, f.severity, f.owner) for f in result.findings] == [("a", "error", "ops")]


def test_a_custom_audit_named_like_a_builtin_is_refused(workspace):
    write(workspace.root / "audits", "dup.sql", "-- name: refunds\nselect 1 as key\n")
    with pytest.raises(DuplicateAuditError, match=r"Two audits are named 'refunds'.*dup\.sql"):
        load_registry(workspace.root)


def test_broken_sql_audit_names_its_file_and_line_and_the_others_still_run(workspace, runner, plant):
    write(workspace.root / "audits", "big_orders.sql", BIG_ORDERS_SQL)
    broken = write(
        workspace.root / "audits",
        "broken.sql",
        "-- name: broken\n-- severity: error\nselect order_number\nfrom events\nwhere event_typo = 'x'\n",
    )
    order(plant, "1001", 9)
    plant.store.close()
    result = runner.invoke(app, ["-w", str(workspace.root), "audit", "all", "--format", "json"])
    assert result.exit_code == ExitStatus.ERROR
    assert f"{broken}:5: SQL error: no such column: event_typo" in result.stderr.replace("\n", "")
    document = json.loads(result.stdout)
    ran = {a["name"]: a["status"] for a in document["audits"]}
    assert ran["big-orders"] == "ok" and ran["broken"] == "failed"
    assert {f["order_number"] for a in document["audits"] for f in a["findings"]} == {"1001"}


def test_bad_header_and_broken_python_fail_at_load_with_file_and_line(workspace):
    folder = workspace.root / "audits"
    bad_sql = write(folder, "bad.sql", "-- name: bad\n-- severity: urgent\nselect 1\n")
    bad_py = write(folder, "bad.py", "from cogent_cli.audits import audit\n\nx = 1 +\n")
    raising = write(folder, "raising.py", "import json\n\nraise RuntimeError('boom')\n")
    registry = load_registry(workspace.root)
    messages = sorted(f.message for f in registry.failures)
    assert messages == sorted(
        [
            f"{bad_sql}:2: severity must be one of info, warning, error (got 'urgent')",
            f"{bad_py}:3: SyntaxError: invalid syntax ({bad_py.name}, line 3)",
            f"{raising}:3: RuntimeError: boom",
        ]
    )
    assert set(registry.audits) >= BUILTINS


def test_python_audit_failing_at_run_time_reports_its_line(workspace, store):
    path = write(
        workspace.root / "audits",
        "crash.py",
        "from cogent_cli.audits import audit\n\n@audit(name='crash', description='d')\ndef crash(ctx):\n"
        "    yield from []\n    raise KeyError('sku')\n",
    )
    [result] = AuditRunner(store, workspace.config, load_registry(workspace.root)).run(["crash"])
    assert not result.ok
    assert result.error == f"{path}:6: KeyError: 'sku'"
    assert store.db["audit_runs"].get(result.run_id)["status"] == "failed"


def test_findings_are_new_then_persisting_then_fixed(workspace, store, plant):
    write(workspace.root / "audits", "big_orders.sql", BIG_ORDERS_SQL)
    runner = AuditRunner(store, workspace.config, load_registry(workspace.root))
    order(plant, "1001", 9)
    [first] = runner.run(["big-orders"])
    order(plant, "1002", 7)
    [second] = runner.run(["big-orders"])
    plant.db.execute("delete from events where order_number = '1001'")
    [third] = runner.run(["big-orders"])
    assert [(f.order_number, f.state) for f in first.findings] == [("1001", "new")]
    assert sorted((f.order_number, f.state) for f in second.findings) == [("1001", "persisting"), ("1002", "new")]
    assert [(f.order_number, f.state) for f in third.findings] == [("1002", "persisting")]
    assert [(f.order_number, f.state) for f in third.fixed] == [("1001", "fixed")]
    assert third.counts() == {"info": 0, "warning": 1, "error": 0, "new": 0, "persisting": 1, "fixed": 1}
    stored = plant.db.query("select state, order_number from audit_findings where run_id = ?", [third.run_id])
    assert sorted((r["state"], r["order_number"]) for r in stored) == [("fixed", "1001"), ("persisting", "1002")]
    first_seen = second.findings[[f.order_number for f in second.findings].index("1001")].first_seen
    assert third.fixed[0].first_seen == first_seen == first.findings[0].first_seen


def test_thresholds_and_owner_from_cogent_toml_override_the_audit(workspace, store, plant):
    config = configured(
        workspace,
        audits={"ship-methods": {"warning_from": 2, "error_from": 3, "owner": "warehouse"}},
        mapping={"ship_methods": {"DPD/Next Day": "next-day"}},
    )
    for number in ("1", "2", "3"):
        order(plant, number, 1, "Evri/Standard")
    order(plant, "4", 1, "Yodel/Express")
    order(plant, "5", 1, "DPD/Next Day")
    [result] = AuditRunner(store, config, load_registry(workspace.root)).run(["ship-methods"])
    assert [(f.evidence["ship_method"], f.count, f.severity, f.owner) for f in result.findings] == [
        ("Evri/Standard", 3, "error", "warehouse"),
        ("Yodel/Express", 1, "info", "warehouse"),
    ]


def test_settings_for_an_unknown_audit_or_bad_params_are_config_errors(workspace, store):
    text = workspace.config_path.read_text()
    config = parse_config(text + "\n[audits.ship-method]\nerror_from = 3\n", workspace.config_path)
    with pytest.raises(ConfigError, match="unknown audit\\(s\\): ship-method"):
        AuditRunner(store, config, load_registry(workspace.root))
    config = parse_config(text + '\n[audits.sync-gaps.params]\nsla_hour = {"x" = 1}\n', workspace.config_path)
    runner = AuditRunner(store, config, load_registry(workspace.root))
    with pytest.raises(ConfigError) as caught:
        runner.run(["sync-gaps"])
    assert "audits.sync-gaps.params.sla_hour: Extra inputs are not permitted" in str(caught.value)


@pytest.fixture
def audited(workspace, plant):
    """A workspace with one custom SQL audit and two findings (one warning, one error)."""
    write(
        workspace.root / "audits",
        "orders.sql",
        "-- name: orders\n-- owner: cx\nselect order_number, email, sku, 'Order ' || order_number as title,\n"
        "case when order_number = '1001' then 'error' else 'warning' end as severity, 'Call | them' as fix,\n"
        "42 as units from (select order_number, email, 'SKU-1' as sku from events)\n",
    )
    order(plant, "1001", 9)
    order(plant, "1002", 1)
    plant.store.close()
    return workspace


def test_json_and_csv_carry_every_field(audited, runner):
    result = runner.invoke(app, ["-w", str(audited.root), "audit", "orders", "--format", "json"])
    assert result.exit_code == ExitStatus.FINDINGS, result.stderr
    document = json.loads(result.stdout)
    assert document["summary"]["by_severity"] == {"info": 0, "warning": 1, "error": 1}
    assert document["summary"]["by_owner"] == {"cx": {"info": 0, "warning": 1, "error": 1}}
    finding = document["audits"][0]["findings"][0]
    assert {
        k: finding[k] for k in ("order_number", "email", "sku", "severity", "owner", "state", "fix", "evidence")
    } == {
        "order_number": "1001",
        "email": "1001@example.org",
        "sku": "SKU-1",
        "severity": "error",
        "owner": "cx",
        "state": "new",
        "fix": "Call | them",
        "evidence": {"units": 42},
    }
    result = runner.invoke(app, ["-w", str(audited.root), "audit", "orders", "--format", "csv", "--fail-on", "info"])
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [(r["order_number"], r["state"], r["severity"], json.loads(r["evidence"])) for r in rows] == [
        ("1001", "persisting", "error", {"units": 42}),
        ("1002", "persisting", "warning", {"units": 42}),
    ]


def test_markdown_and_html_are_handover_documents(audited, runner, tmp_path):
    md, page = tmp_path / "audit.md", tmp_path / "audit.html"
    result = runner.invoke(app, ["-w", str(audited.root), "audit", "orders", "-f", "md", "-o", str(md)])
    assert result.exit_code == ExitStatus.FINDINGS
    text = md.read_text()
    assert text.startswith("# Audit report: Acme Outdoor\n")
    assert "| cx | 1 | 1 | 0 |" in text
    assert "### [ERROR] Order 1001" in text and "- **How to fix:** Call | them" in text
    assert "- Keys: order 1001, SKU SKU-1, email 1001@example.org" in text
    runner.invoke(app, ["-w", str(audited.root), "audit", "orders", "-f", "html", "-o", str(page)])
    html = page.read_text()
    assert html.startswith("<!doctype html>") and "<script" not in html and "http" not in html
    assert "<span class='sev error'>error</span>" in html and "Call | them" in html


def test_table_shows_summary_then_findings(audited, runner):
    result = runner.invoke(app, ["-w", str(audited.root), "audit", "orders", "--fail-on", "info"])
    assert result.exit_code == ExitStatus.FINDINGS
    out = result.stdout
    assert out.index("owner") < out.index("orders: ") and "Order 1001" in out and "Order 1002" in out


@pytest.mark.parametrize(("fail_on", "status"), [("info", 3), ("warning", 3), ("error", 3)])
def test_fail_on_reached_exits_with_findings_status(audited, runner, fail_on, status):
    result = runner.invoke(app, ["-w", str(audited.root), "audit", "orders", "-f", "json", "--fail-on", fail_on])
    assert result.exit_code == status == ExitStatus.FINDINGS


def test_fail_on_not_reached_exits_zero(workspace, runner, plant):
    write(workspace.root / "audits", "info.sql", "-- name: info-only\n-- severity: info\nselect 'x' as key\n")
    plant.store.close()
    ok = runner.invoke(app, ["-w", str(workspace.root), "audit", "info-only", "--fail-on", "warning"])
    failed = runner.invoke(app, ["-w", str(workspace.root), "audit", "info-only", "--fail-on", "info"])
    assert (ok.exit_code, failed.exit_code) == (0, ExitStatus.FINDINGS)


def test_bad_options_and_unknown_audit_are_usage_errors(workspace, runner):
    bad = runner.invoke(app, ["-w", str(workspace.root), "audit", "ship-methods", "--fail-on", "fatal"])
    unknown = runner.invoke(app, ["-w", str(workspace.root), "audit", "ship-method"])
    assert bad.exit_code == unknown.exit_code == ExitStatus.USAGE
    assert "No audit named 'ship-method'" in unknown.stderr


def test_audit_list_shows_builtins_and_custom_ones(workspace, runner):
    write(workspace.root / "audits", "big_orders.sql", BIG_ORDERS_SQL)
    result = runner.invoke(app, ["-w", str(workspace.root), "audit", "list"])
    assert result.exit_code == 0
    for name in (*BUILTINS, "big-orders"):
        assert name in result.stdout


def test_audits_needing_klaviyo_say_to_pull_first(workspace, store):
    [result] = AuditRunner(store, workspace.config, load_registry(workspace.root)).run(["refunds"])
    assert result.error == (
        "This audit compares with Klaviyo, but the Klaviyo mirror is empty. Run `cogent pull klaviyo` first "
        "(it copies profiles, catalog variants and events into the state file)."
    )


def documented(language: str) -> str:
    text = (Path(__file__).resolve().parents[2] / "docs" / "audits.md").read_text()
    return text.split(f"```{language}\n", 1)[1].split("```", 1)[0]


def test_the_documented_custom_audits_run(workspace, store, plant):
    write(workspace.root / "audits", "big_refunds.sql", documented("sql"))
    write(workspace.root / "audits", "unsent_returns.py", documented("python"))
    plant.fact(
        "refund.processed",
        {"refund_id": "R9", "total": {"amount": "650.00", "currency": "GBP"}, "lines": []},
        order="1009",
        email="big@example.org",
    )
    plant.fact("return.lodged", {"return_id": "RET9", "status": "open", "lines": []}, order="1010")
    runner = AuditRunner(store, workspace.config, load_registry(workspace.root))
    refunds, returns = runner.run(["big-refunds", "unsent-returns"])
    assert [(f.order_number, f.owner, f.title, f.evidence) for f in refunds.findings] == [
        ("1009", "finance", "Refund R9 of 650.00", {"amount": "650.00"})
    ]
    assert [(f.key, f.order_number, f.owner) for f in returns.findings] == [("RET9", "1010", "cx")]


def test_a_disabled_audit_is_skipped_by_all_but_runs_by_name(workspace, store):
    config = configured(workspace, audits={"metric-collisions": {"enabled": False}})
    runner = AuditRunner(store, config, load_registry(workspace.root))
    assert "metric-collisions" not in runner.enabled() and "refunds" in runner.enabled()


def test_table_can_be_written_to_a_file(audited, runner, tmp_path):
    target = tmp_path / "audit.txt"
    result = runner.invoke(app, ["-w", str(audited.root), "audit", "orders", "-o", str(target), "--fail-on", "info"])
    assert result.exit_code == ExitStatus.FINDINGS and result.stdout == ""
    text = target.read_text()
    assert "Order 1001" in text and "Order 1002" in text and f"Wrote {target}" in result.stderr.replace("\n", "")
