"""`cogent sandbox seed`: deterministic, coherent across systems, with the planted messiness really there."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cogent_cli.cli import app
from cogent_cli.sandbox.seed import seed_sources


def data_files(root: Path) -> dict[str, bytes]:
    files = {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}
    manifest = json.loads(files.pop("sources/manifest.json"))
    manifest.pop("scend_drop_dir")
    files["manifest"] = json.dumps(manifest, sort_keys=True).encode()
    return files


@pytest.fixture(scope="module")
def retailer(tmp_path_factory):
    result = seed_sources(tmp_path_factory.mktemp("seed"), orders=120, seed=11)
    data = {
        s: json.loads((result.data_dir / "sources" / f"{s}.json").read_text())
        for s in ("peoplevox", "clarus", "swap", "marketplacer")
    }
    return result, data


def planted(result, kind: str) -> list[dict]:
    return [p for p in result.manifest["planted"] if p["type"] == kind]


def test_the_same_seed_writes_the_same_data_set(tmp_path):
    first = seed_sources(tmp_path / "a", orders=40, seed=5)
    second = seed_sources(tmp_path / "b", orders=40, seed=5)
    other = seed_sources(tmp_path / "c", orders=40, seed=6)
    assert data_files(first.data_dir) == data_files(second.data_dir)
    assert data_files(first.data_dir) != data_files(other.data_dir)


def test_every_system_refers_to_the_same_orders(retailer):
    result, data = retailer
    orders = {inv["order"]["externalIds"][0]["value"] for inv in data["marketplacer"]["invoices"]}
    assert len(orders) == result.manifest["orders"]
    pvx = {r["Salesorder number"] for r in data["peoplevox"]["reports"]["Despatch summary"]["rows"]}
    clarus = {s["goods_out"]["external_system_reference1"] for s in data["clarus"]["shipments"]}
    swap = {r["order_name"] for r in data["swap"]["returns"] if r["order_name"]}
    assert pvx <= orders and clarus <= orders and swap <= orders
    assert pvx and clarus and swap


def test_duplicate_customers_use_case_whitespace_and_plus_variants(retailer):
    result, data = retailer
    plants = planted(result, "duplicate_customer")
    assert plants
    used = {inv["buyerEmailAddress"] for inv in data["marketplacer"]["invoices"]}
    variants = [v for p in plants for v in p["refs"]["email_variants"]]
    assert any(v in used for v in variants)
    assert any(v != v.strip() for v in variants)
    assert any("+" in v for v in variants)
    assert any(v != v.lower() for v in variants)
    phones = [v for p in plants for v in p["refs"]["phone_variants"]]
    assert any(v.startswith("0044") for v in phones) and any(v.startswith("(0") for v in phones)


def test_split_shipments_have_two_despatches_in_their_warehouse(retailer):
    result, data = retailer
    splits = planted(result, "split_shipment")
    assert splits
    for plant in splits:
        order = plant["refs"]["order_number"]
        warehouse = result.manifest["warehouses"][order]
        if warehouse == "peoplevox":
            rows = data["peoplevox"]["reports"]["Despatch summary"]["rows"]
            despatches = {
                r["Despatch number"]
                for r in rows
                if r["Salesorder number"] == order and not r["Despatch number"].startswith("BAD-")
            }
        elif warehouse == "clarus":
            shipments = data["clarus"]["shipments"]
            despatches = {s["id"] for s in shipments if s["goods_out"]["external_system_reference1"] == order}
        else:
            continue
        assert len(despatches) == 2, order


def test_unmapped_ship_methods_appear_in_warehouse_data(retailer):
    result, data = retailer
    unmapped = result.manifest["ship_methods"]["unmapped"]
    assert planted(result, "unmapped_ship_method")
    services = {r["Service"] for r in data["peoplevox"]["reports"]["Despatch summary"]["rows"]}
    services |= {s["carrier_service"]["name"] for s in data["clarus"]["shipments"]}
    assert any(method.split("/")[1] in services for method in unmapped)
    assert not set(unmapped) & set(result.manifest["ship_methods"]["mapping"])


def test_non_sellable_stock_is_planted_in_every_warehouse(retailer):
    result, data = retailer
    assert planted(result, "non_sellable_stock")
    assert {s["status"] for s in data["clarus"]["stocks"]} >= {"available", "quarantined", "awaiting_qc"}
    sites = {r["Site reference"] for r in data["peoplevox"]["reports"]["Item inventory summary all sites"]["rows"]}
    assert {"Quarantine", "GoodsIn"} <= sites
    stock_csv = next(result.drop_dir.glob("stock_*.csv")).read_text().splitlines()
    header = stock_csv[0].split(",")
    assert any(int(line.split(",")[header.index("quarantine")]) > 0 for line in stock_csv[1:])


def test_malformed_rows_are_planted_where_the_manifest_says(retailer):
    result, data = retailer
    refs = {json.dumps(p["refs"], sort_keys=True) for p in planted(result, "malformed_row")}
    assert len(refs) == 6
    despatches = {r["Despatch number"]: r for r in data["peoplevox"]["reports"]["Despatch summary"]["rows"]}
    assert despatches["BAD-QTY-1"]["No of items"] == "two"
    assert any(p["id"] == "BAD-PKG-1" and p["tracking_number"] is None for p in data["clarus"]["packages"])
    assert any(r["return_id"] == "ret_malformed" and r["products"] is None for r in data["swap"]["returns"])
    assert "SO-BROKEN" in next(result.drop_dir.glob("despatches_*.csv")).read_text()


def test_packed_shipments_that_did_not_leave_are_planted(retailer):
    result, data = retailer
    for plant in planted(result, "not_despatched"):
        reference = plant["refs"]["shipment_reference"]
        assert [s["status"] for s in data["clarus"]["shipments"] if s["reference"] == reference] == ["packed"]


def test_cli_seed_writes_the_manifest_and_prints_its_summary(tmp_path, runner):
    result = runner.invoke(
        app, ["sandbox", "seed", "--orders", "15", "--seed", "2", "--data", str(tmp_path), "--format", "json"]
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["counts"]["orders"] == 15
    assert Path(summary["manifest"]).is_file()
    toml = runner.invoke(app, ["sandbox", "seed", "--orders", "15", "--data", str(tmp_path)])
    assert "[sources.peoplevox]" in toml.stdout and "drop_dir" in toml.stdout


def test_seed_refuses_zero_orders(tmp_path):
    with pytest.raises(ValueError):
        seed_sources(tmp_path, orders=0)
