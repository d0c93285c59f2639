"""`cogent ingest` and `cogent inbox`: streaming files in, detecting kinds, storing each fact once."""

from __future__ import annotations

import gc
import json
from pathlib import Path

import pytest
from pvx_scend_support import (
    PVX_DESPATCH,
    PVX_RETURN,
    SCEND_STOCK,
    SCEND_WEBHOOK,
    csv_text,
    events,
    ingest,
    jsonl,
    quarantined,
    write,
)
from typer.testing import CliRunner

from cogent_cli import ingest as ingest_module
from cogent_cli.cli import app
from cogent_cli.collector import YOUNG_THRESHOLD
from cogent_cli.config import Config
from cogent_cli.ingest import IngestError, ingest_paths, iter_json_values
from cogent_cli.state import Store
from cogent_cli.workspace import Workspace


@pytest.fixture
def store(workspace: Workspace) -> Store:
    return workspace.store()


@pytest.fixture
def config(workspace: Workspace) -> Config:
    return workspace.config


def test_ingesting_the_same_file_twice_stores_each_fact_once(store: Store, config: Config, tmp_path: Path) -> None:
    rows = [PVX_DESPATCH, {**PVX_DESPATCH, "Despatch number": "457", "Tracking number": "999"}]
    first = ingest(store, config, "peoplevox", tmp_path, "despatch.csv", rows)
    second = ingest(store, config, "peoplevox", tmp_path, "despatch.csv", rows)
    assert (first.stored, first.duplicates, first.normalised.events_written) == (2, 0, 2)
    assert (second.stored, second.duplicates, second.normalised.events_written) == (0, 2, 0)
    assert store.db["inbox"].count == 2 and store.db["events"].count == 2


def test_same_despatch_in_two_differently_named_files_is_one_inbox_row(
    store: Store, config: Config, tmp_path: Path
) -> None:
    ingest(store, config, "peoplevox", tmp_path, "monday.csv", [PVX_DESPATCH])
    again = ingest(store, config, "peoplevox", tmp_path, "tuesday.csv", [PVX_DESPATCH])
    assert again.duplicates == 1  # Peoplevox's natural key, not the file name


def test_scend_rows_are_keyed_by_file_name_and_row_hash(store: Store, config: Config, tmp_path: Path) -> None:
    ingest(store, config, "scend", tmp_path, "stock_1.csv", [SCEND_STOCK])
    ingest(store, config, "scend", tmp_path, "stock_1.csv", [SCEND_STOCK])
    ingest(store, config, "scend", tmp_path, "stock_2.csv", [SCEND_STOCK])
    keys = [r["idempotency_key"] for r in store.db.query("select idempotency_key from inbox order by id")]
    assert len(keys) == 2 and keys[0].startswith("file:stock_1.csv:") and keys[1].startswith("file:stock_2.csv:")
    assert store.db["events"].count == 1  # the unchanged snapshot is no change


def test_kind_is_detected_per_file_from_the_header(store: Store, config: Config, tmp_path: Path) -> None:
    paths = [write(tmp_path, "a.csv", [PVX_DESPATCH]), write(tmp_path, "b.csv", [PVX_RETURN])]
    summary = ingest_paths(store, config, "peoplevox", paths)
    assert summary.kinds == {"despatch_summary": 1, "return_summary": 1}


def test_json_lines_kinds_are_detected_per_record(store: Store, config: Config, tmp_path: Path) -> None:
    bodies = [
        {"sku": "A", "quantity": "3"},
        {"time": "2025-05-01T09:00:00Z", "order_no": "SO-1", "status": "Cancelled"},
        {"dispatch_number": "1", "tracking_number": "T", "order_number": "SO-2"},
    ]
    summary = ingest(store, config, "peoplevox", tmp_path, "callbacks.jsonl", jsonl(bodies))
    assert summary.kinds == {"availability_changed": 1, "sales_order_status_changed": 1, "tracking_number_received": 1}
    assert sorted(e.event_type for e in events(store)) == [
        "order.cancelled",
        "shipment.despatched",
        "stock.level_changed",
    ]


def test_a_json_array_file_is_read_element_by_element(store: Store, config: Config, tmp_path: Path) -> None:
    second = {**SCEND_WEBHOOK, "event_id": "evt_2", "despatch_id": "DSP-2"}
    summary = ingest(store, config, "scend", tmp_path, "hooks.json", json.dumps([SCEND_WEBHOOK, second], indent=2))
    assert (summary.records, summary.normalised.events_written) == (2, 2)


def test_a_single_pretty_printed_json_body_is_one_record(store: Store, config: Config, tmp_path: Path) -> None:
    summary = ingest(store, config, "scend", tmp_path, "hook.json", json.dumps(SCEND_WEBHOOK, indent=2))
    assert summary.records == 1 and summary.normalised.events_written == 1


def test_json_array_reader_handles_values_larger_than_its_buffer(tmp_path: Path) -> None:
    values = [{"n": i, "pad": "x" * 70_000} for i in range(3)]
    path = write(tmp_path, "big.json", json.dumps(values))
    assert [v["n"] for v in iter_json_values(path.open(encoding="utf-8"), path)] == [0, 1, 2]


def test_truncated_json_array_is_a_clear_error(tmp_path: Path) -> None:
    path = write(tmp_path, "cut.json", '[{"a": 1}, {"b": ')
    with pytest.raises(IngestError, match="not valid JSON near character"):
        list(iter_json_values(path.open(encoding="utf-8"), path))


def test_malformed_lines_are_quarantined_beside_valid_ones(store: Store, config: Config, tmp_path: Path) -> None:
    text = json.dumps(SCEND_WEBHOOK) + "\n{not json\n" + json.dumps([1, 2]) + "\n"
    summary = ingest(store, config, "scend", tmp_path, "hooks.jsonl", text)
    assert (summary.records, summary.normalised.normalised, summary.normalised.quarantined) == (3, 1, 2)
    reasons = [reason for _, reason in quarantined(store)]
    assert reasons[0].startswith("body = '{not json': not valid JSON")
    assert reasons[1] == "body = '[1, 2]': must be a JSON object"


def test_csv_row_with_the_wrong_number_of_cells_is_quarantined(store: Store, config: Config, tmp_path: Path) -> None:
    text = csv_text([PVX_DESPATCH]) + "1,2,3\n"
    ingest(store, config, "peoplevox", tmp_path, "despatch.csv", text)
    header_cells = len(PVX_DESPATCH)
    assert quarantined(store)[0][1] == f"row = 'row has 3 cells, the header has {header_cells}': malformed CSV row"
    assert store.db["events"].count == 1


def test_unknown_kind_is_an_error_listing_the_kinds(store: Store, config: Config, tmp_path: Path) -> None:
    with pytest.raises(IngestError) as caught:
        ingest(store, config, "peoplevox", tmp_path, "odd.csv", "colour,size\nred,M\n")
    message = str(caught.value)
    assert "Cannot tell which kind of peoplevox payload" in message
    assert "despatch_summary: Despatch summary report rows" in message and "--kind" in message
    assert store.db["inbox"].count == 0


def test_named_kind_overrides_detection_and_a_wrong_name_lists_the_kinds(
    store: Store, config: Config, tmp_path: Path
) -> None:
    summary = ingest(
        store, config, "peoplevox", tmp_path, "cb.jsonl", jsonl([{"sku": "A"}]), kind="availability_changed"
    )
    assert summary.kinds == {"availability_changed": 1}
    assert quarantined(store)[0][1] == "quantity = None: is required"
    with pytest.raises(IngestError, match=r"(?s)peoplevox has no kind 'despatch'.*despatch_summary"):
        ingest(store, config, "peoplevox", tmp_path, "x.csv", [PVX_DESPATCH], kind="despatch")


def test_cli_ingest_then_inbox_list_show_and_retry(workspace: Workspace, runner: CliRunner, tmp_path: Path) -> None:
    good = write(tmp_path, "despatch.csv", [PVX_DESPATCH, {**PVX_DESPATCH, "Despatch number": "9", "No of items": "x"}])
    ws = ["--workspace", str(workspace.root)]
    result = runner.invoke(app, [*ws, "ingest", "peoplevox", str(good), "--format", "json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["quarantined"] == 1

    listed = runner.invoke(app, [*ws, "inbox", "list", "--status", "quarantined", "--format", "json"])
    [row] = json.loads(listed.stdout)
    assert row["reason"] == "No of items = 'x': must be a whole number"

    shown = runner.invoke(app, [*ws, "inbox", "show", str(row["id"]), "--format", "json"])
    assert json.loads(json.loads(shown.stdout)["body"])["No of items"] == "x"

    retried = runner.invoke(app, [*ws, "inbox", "retry", "--all"])
    assert retried.exit_code == 1
    assert f"{row['id']} peoplevox/despatch_summary: No of items = 'x': must be a whole number" in retried.stderr

    missing = runner.invoke(app, [*ws, "inbox", "show", "999"])
    assert missing.exit_code == 1 and "No inbox row 999" in missing.stderr


def test_cli_ingest_unknown_kind_exits_with_usage_status(
    workspace: Workspace, runner: CliRunner, tmp_path: Path
) -> None:
    path = write(tmp_path, "odd.csv", "colour,size\nred,M\n")
    result = runner.invoke(app, ["--workspace", str(workspace.root), "ingest", "scend", str(path)])
    assert result.exit_code == 2
    assert "despatches: despatches_*.csv rows" in result.stderr


def test_garbage_is_collected_in_larger_steps_while_ingesting_and_as_before_afterwards(
    store: Store, config: Config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[tuple[int, int, int]] = []
    real_flush = ingest_module._flush
    monkeypatch.setattr(ingest_module, "_flush", lambda *a, **k: (seen.append(gc.get_threshold()), real_flush(*a, **k)))
    before = gc.get_threshold()
    ingest(store, config, "peoplevox", tmp_path, "despatch.csv", [PVX_DESPATCH])
    assert seen and all(t == (YOUNG_THRESHOLD, *before[1:]) for t in seen)
    assert gc.get_threshold() == before
    with pytest.raises(IngestError):
        ingest(store, config, "scend", tmp_path, "odd.csv", [{"unknown": "1"}])
    assert gc.get_threshold() == before
