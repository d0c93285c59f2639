"""Peoplevox reports and callbacks into normalised events, rule by rule (peoplevox.md examples)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from pvx_scend_support import PVX_DESPATCH, PVX_RETURN, events, ingest, jsonl, quarantined

from cogent_cli.config import Config, PeoplevoxSettings
from cogent_cli.normalise.ledger import OrderLedger
from cogent_cli.state import Store
from cogent_cli.workspace import Workspace


@pytest.fixture
def store(workspace: Workspace) -> Store:
    return workspace.store()


@pytest.fixture
def config(workspace: Workspace) -> Config:
    return workspace.config.model_copy(deep=True)


def row(**changes: str) -> dict[str, str]:
    return {**PVX_DESPATCH, **changes}


def test_documented_despatch_row_becomes_one_shipment(store: Store, config: Config, tmp_path: Path) -> None:
    ingest(store, config, "peoplevox", tmp_path, "despatch.csv", [PVX_DESPATCH])
    [event] = events(store)
    assert event.event_type == "shipment.despatched"
    # '03/07/2017 06:03' is warehouse (UK summer) time.
    assert event.occurred_at == datetime(2017, 7, 3, 5, 3, tzinfo=UTC)
    data = event.data
    assert (data.shipment_id, data.site, data.tracking_granularity) == ("456", "PrimarySite", "shipment")
    [parcel] = data.parcels
    assert parcel.tracking_number == "1234567890"
    assert parcel.ship_method.model_dump() == {
        "carrier_code": "DPD",
        "carrier_name": "DPD",
        "service_code": "UK Standard 1-2 Days (Tracked)",
        "service_name": "UK Standard 1-2 Days (Tracked)",
    }
    assert [(i.sku, i.quantity) for i in parcel.items] == [("XXXX", 7)]
    assert (event.order_ref.order_number, event.order_ref.source_order_id) == ("1234", "1234")
    assert event.customer.email == "joe@zynk.com"
    assert event.source.dedupe_key == "456|1234567890"
    assert event.confidence == "documented"


def test_xml_style_column_names_are_read_too(store: Store, config: Config, tmp_path: Path) -> None:
    underscored = {key.replace(" ", "_"): value for key, value in PVX_DESPATCH.items()}
    ingest(store, config, "peoplevox", tmp_path, "despatch.csv", [underscored])
    [event] = events(store)
    assert (event.data.shipment_id, event.order_number) == ("456", "1234")


def test_rows_of_one_despatch_make_one_event_with_every_item(store: Store, config: Config, tmp_path: Path) -> None:
    rows = [row(), row(**{"Item code": "YYYY", "No of items": "2"}), row(**{"Item code": "XXXX", "No of items": "1"})]
    ingest(store, config, "peoplevox", tmp_path, "despatch.csv", rows[:2])
    [event] = events(store)
    assert [(i.sku, i.quantity) for i in event.data.parcels[0].items] == [("XXXX", 7), ("YYYY", 2)]


def test_split_shipment_sends_one_event_per_despatch_with_partial_then_final(
    store: Store, config: Config, tmp_path: Path
) -> None:
    # The storefront order (e.g. from Marketplacer) said: 7 x XXXX and 2 x YYYY.
    with store.transaction():
        OrderLedger(store.db.conn).record_order(
            "1234", {"XXXX": 7, "YYYY": 2}, system="marketplacer", at=datetime.now(UTC)
        )
    first = row()
    second = row(
        **{
            "Despatch number": "457",
            "Item code": "YYYY",
            "No of items": "2",
            "Tracking number": "999",
            "Despatch date": "04/07/2017 09:00",
        }
    )
    ingest(store, config, "peoplevox", tmp_path, "despatch.csv", [first, second])
    one, two = events(store)
    assert (one.data.shipment_id, one.data.is_partial, one.data.is_final) == ("456", True, False)
    assert [(i.sku, i.quantity) for i in one.data.pending_items] == [("YYYY", 2)]
    assert (two.data.shipment_id, two.data.is_partial, two.data.is_final) == ("457", False, True)
    assert two.data.pending_items == []


def test_partial_flags_follow_despatch_time_not_arrival_order(store: Store, config: Config, tmp_path: Path) -> None:
    with store.transaction():
        OrderLedger(store.db.conn).record_order(
            "1234", {"XXXX": 7, "YYYY": 2}, system="marketplacer", at=datetime.now(UTC)
        )
    later = row(
        **{"Despatch number": "457", "Item code": "YYYY", "No of items": "2", "Despatch date": "05/07/2017 09:00"}
    )
    ingest(store, config, "peoplevox", tmp_path, "later.csv", [later])
    ingest(store, config, "peoplevox", tmp_path, "earlier.csv", [row()])
    by_id = {e.data.shipment_id: e for e in events(store)}
    assert by_id["457"].data.is_final is False  # when it went, XXXX had not
    assert by_id["456"].data.is_final is False  # the earlier one never completes the order


def test_without_ordered_quantities_partial_is_unknown_not_guessed(
    store: Store, config: Config, tmp_path: Path
) -> None:
    ingest(store, config, "peoplevox", tmp_path, "despatch.csv", [row()])
    [event] = events(store)
    assert event.data.is_partial is None and event.data.is_final is None


def test_package_level_data_upgrades_the_despatch_instead_of_duplicating_it(
    store: Store, config: Config, tmp_path: Path
) -> None:
    ingest(store, config, "peoplevox", tmp_path, "despatch.csv", [row()])
    packages = [
        {
            "despatch_number": "456",
            "package": "1",
            "tracking": "PKG-A",
            "carrier": "DPD",
            "service": "NEXT",
            "order_no": "1234",
        },
        {
            "despatch_number": "456",
            "package": "2",
            "tracking": "PKG-B",
            "carrier": "DPD",
            "service": "NEXT",
            "order_no": "1234",
        },
    ]
    ingest(store, config, "peoplevox", tmp_path, "packages.jsonl", jsonl(packages))
    original, first_package, second_package = events(store)
    assert {e.data.shipment_id for e in (original, first_package, second_package)} == {"456"}
    assert first_package.data.supersedes == original.event_id
    assert second_package.data.supersedes == first_package.event_id
    assert second_package.data.tracking_granularity == "parcel"
    assert [(p.parcel_id, p.tracking_number) for p in second_package.data.parcels] == [("1", "PKG-A"), ("2", "PKG-B")]
    # Peoplevox does not say which package holds what: the contents stay on the shipment.
    assert [(i.sku, i.quantity) for i in second_package.data.items] == [("XXXX", 7)]
    # The same package again, or the despatch-level row again, announce nothing new.
    ingest(store, config, "peoplevox", tmp_path, "again.jsonl", jsonl(packages[1:]))
    ingest(store, config, "peoplevox", tmp_path, "despatch-again.csv", [row(**{"Username": "other"})])
    assert len(events(store)) == 3


def test_tracking_callback_repeating_a_known_despatch_adds_nothing(
    store: Store, config: Config, tmp_path: Path
) -> None:
    ingest(store, config, "peoplevox", tmp_path, "despatch.csv", [row()])
    callback = "dispatch_number=456&tracking_number=1234567890&carrier=17&service_name=Std&service_code=STD&order_number=1234&order_email=joe%40zynk.com"
    ingest(store, config, "peoplevox", tmp_path, "cb.jsonl", jsonl([dict(p.split("=") for p in callback.split("&"))]))
    assert len(events(store)) == 1


def test_tracking_callback_alone_is_a_despatch(store: Store, config: Config, tmp_path: Path) -> None:
    # The PeepConn TrackingNumberReceived template (peoplevox.md §3.3).
    body = {
        "dispatch_number": "900",
        "tracking_number": "TN1",
        "carrier": "DPD",
        "service_name": "Next day",
        "service_code": "ND",
        "order_number": "SO-9",
        "order_email": "ann@example.com",
    }
    ingest(store, config, "peoplevox", tmp_path, "cb.jsonl", jsonl([body]))
    [event] = events(store)
    assert (event.data.shipment_id, event.data.parcels[0].tracking_number) == ("900", "TN1")
    assert (event.order_number, event.customer.email) == ("SO-9", "ann@example.com")
    assert event.data.parcels[0].ship_method.service_code == "ND"


def test_documented_return_row_is_received_and_restocked(store: Store, config: Config, tmp_path: Path) -> None:
    ingest(store, config, "peoplevox", tmp_path, "returns.csv", [PVX_RETURN])
    received, restocked = events(store)
    assert (received.event_type, restocked.event_type) == ("return.received", "return.restocked")
    assert received.occurred_at == datetime(2018, 6, 14, 15, 55, 7, tzinfo=UTC)
    [line] = received.data.lines
    assert (line.sku, line.quantity, line.quantity_received, line.reason_text) == ("PROD001", 1, 1, "Why Not")
    assert (line.condition, line.disposition, line.quantity_restocked) == ("sellable", "restock", 1)
    assert line.unit_price.amount == Decimal("3.00") and line.unit_price.currency == "GBP"
    assert (received.data.return_id, received.data.native_status, received.data.site) == ("RET1", "NEW", "PrimarySite")
    assert (received.order_number, received.customer.email) == ("POO2", "support@zynk.com")
    assert restocked.data.lines[0].quantity_restocked == 1


def test_return_not_reusable_is_received_into_quarantine_only(store: Store, config: Config, tmp_path: Path) -> None:
    damaged = {**PVX_RETURN, "Is Reusable": "False", "Return condition": "DAMAGED"}
    ingest(store, config, "peoplevox", tmp_path, "returns.csv", [damaged])
    [received] = events(store)
    line = received.data.lines[0]
    assert (line.condition, line.disposition, line.quantity_restocked) == ("damaged", "quarantine", 0)


def test_return_lines_of_one_return_are_one_event(store: Store, config: Config, tmp_path: Path) -> None:
    second = {**PVX_RETURN, "Item code": "PROD002", "Is Reusable": "False"}
    ingest(store, config, "peoplevox", tmp_path, "returns.csv", [PVX_RETURN, second])
    received, restocked = events(store)
    assert [line.sku for line in received.data.lines] == ["PROD001", "PROD002"]
    assert [line.sku for line in restocked.data.lines] == ["PROD001"]


def inventory(site: str, available: str, on_hand: str = "10", allocated: str = "0") -> dict[str, str]:
    return {"Item code": "101365", "Item name": "Mini Clipboard Calculator", "Site reference": site,
            "On hand": on_hand, "Allocated": allocated, "Available": available}  # fmt: skip


def test_stock_snapshots_are_diffed_and_back_in_stock_is_flagged(store: Store, config: Config, tmp_path: Path) -> None:
    ingest(store, config, "peoplevox", tmp_path, "inv1.csv", [inventory("PrimarySite", "0", on_hand="0")])
    ingest(store, config, "peoplevox", tmp_path, "inv2.csv", [inventory("PrimarySite", "0", on_hand="0")])
    ingest(store, config, "peoplevox", tmp_path, "inv3.csv", [inventory("PrimarySite", "4", on_hand="4")])
    ingest(store, config, "peoplevox", tmp_path, "inv4.csv", [inventory("PrimarySite", "6", on_hand="6")])
    baseline, back, more = events(store, "stock.level_changed")
    assert baseline.data.back_in_stock is False  # the first level seen is a baseline
    assert (back.data.sellable.available, back.data.back_in_stock) == (4, True)
    assert more.data.back_in_stock is False
    assert back.data.location.site == "PrimarySite" and back.data.mode == "snapshot"


def test_documented_inventory_sites_are_tracked_separately(store: Store, config: Config, tmp_path: Path) -> None:
    rows = [inventory(site, "0", on_hand="0") for site in ("PrimarySite", "SystemSite", "TestSite")]
    ingest(store, config, "peoplevox", tmp_path, "inventory.csv", rows)
    assert sorted(e.data.location.site for e in events(store)) == ["PrimarySite", "SystemSite", "TestSite"]


def test_stock_at_a_non_sellable_site_is_never_sellable(store: Store, config: Config, tmp_path: Path) -> None:
    config.stock.non_sellable_locations = ["Quarantine", "Goods-in"]
    rows = [inventory("Quarantine", "5", on_hand="5"), inventory("Goods-in", "3", on_hand="3")]
    ingest(store, config, "peoplevox", tmp_path, "inventory.csv", rows)
    quarantine, goods_in = events(store)
    assert quarantine.data.sellable.available == 0 and quarantine.data.non_sellable.quarantine == 5
    assert goods_in.data.sellable.available == 0 and goods_in.data.non_sellable.goods_in == 3


def test_only_configured_sellable_sites_count_as_sellable(store: Store, config: Config, tmp_path: Path) -> None:
    config.stock.sellable_sites = ["PrimarySite"]
    ingest(store, config, "peoplevox", tmp_path, "inv.csv", [inventory("PrimarySite", "2"), inventory("TestSite", "9")])
    primary, test_site = events(store)
    assert primary.data.sellable.available == 2
    assert (test_site.data.sellable.available, test_site.data.non_sellable.on_hold) == (0, 10)


def test_availability_callback_is_an_all_sites_level(store: Store, config: Config, tmp_path: Path) -> None:
    ingest(store, config, "peoplevox", tmp_path, "a.jsonl", jsonl([{"sku": "101365", "quantity": "0"}]))
    ingest(store, config, "peoplevox", tmp_path, "b.jsonl", jsonl([{"sku": "101365", "quantity": "3"}]))
    first, second = events(store)
    assert first.data.location.site == "*" and second.data.back_in_stock is True


def test_incremental_change_is_a_delta_with_its_reason(store: Store, config: Config, tmp_path: Path) -> None:
    body = {"quantity": "-2", "updated_by": "JoeH", "updated_at": "2025-05-01T09:00:00Z", "reason": "Damaged",
            "product_name": "Mug", "product_sku": "MUG-1"}  # fmt: skip
    ingest(store, config, "peoplevox", tmp_path, "inc.jsonl", jsonl([body]))
    [event] = events(store)
    assert event.data.mode == "delta"
    assert (event.data.delta.quantity, event.data.delta.reason) == (-2, "Damaged")


def test_cancelled_status_is_a_cancellation_and_packed_is_not_a_despatch(
    store: Store, config: Config, tmp_path: Path
) -> None:
    bodies = [
        {"time": "2025-05-01T09:00:00Z", "order_no": "SO-123456", "status": "Cancelled"},
        {"time": "2025-05-01T08:00:00Z", "order_no": "SO-555", "status": "Packed"},
        {"time": "2025-05-01T08:30:00Z", "order_no": "SO-556", "status": "Despatched"},
    ]
    ingest(store, config, "peoplevox", tmp_path, "status.jsonl", jsonl(bodies))
    [event] = events(store)
    assert (event.event_type, event.order_number, event.data.scope) == ("order.cancelled", "SO-123456", "full")
    assert event.occurred_at == datetime(2025, 5, 1, 9, tzinfo=UTC)


def test_unknown_status_is_quarantined_until_mapped_then_retried(
    workspace: Workspace, store: Store, config: Config, tmp_path: Path
) -> None:
    from cogent_cli.inbox import Inbox

    body = {"time": "2025-05-01T09:00:00Z", "order_no": "SO-7", "status": "Voided by CS"}
    ingest(store, config, "peoplevox", tmp_path, "status.jsonl", jsonl([body]))
    [(row_id, reason)] = quarantined(store)
    assert reason.startswith(
        "status = 'Voided by CS': unknown peoplevox status; map it under [mapping.status.peoplevox]"
    )
    config.mapping.status["peoplevox"] = {"Voided by CS": "cancelled"}
    inbox = Inbox(store)
    inbox.retry([row_id])
    summary = inbox.normalise_pending(config, ids=[row_id])
    assert (summary.normalised, summary.events_written) == (1, 1)
    assert events(store)[0].event_type == "order.cancelled"


def test_unknown_ship_method_still_flows_and_is_recorded_as_unknown(
    store: Store, config: Config, tmp_path: Path
) -> None:
    config.mapping.ship_methods = {"DPD/UK Standard 1-2 Days (Tracked)": "standard"}
    unknown = row(**{"Despatch number": "457", "Service": "Drone", "Service type code": "DRONE"})
    ingest(store, config, "peoplevox", tmp_path, "despatch.csv", [row(), unknown])
    assert len(events(store)) == 2
    seen = {r["service_code"]: r["known"] for r in store.db.query("select * from ship_methods_seen")}
    assert seen == {"UK Standard 1-2 Days (Tracked)": 1, "DRONE": 0}


def test_storefront_order_number_comes_from_the_configured_column(store: Store, config: Config, tmp_path: Path) -> None:
    config.sources.peoplevox = PeoplevoxSettings(order_number_field="Customer order reference")
    ingest(store, config, "peoplevox", tmp_path, "despatch.csv", [row(**{"Customer order reference": "#1001"})])
    [event] = events(store)
    assert (event.order_ref.order_number, event.order_ref.source_order_id) == ("#1001", "1234")
    assert store.db.execute("select order_number from events").fetchone()[0] == "#1001"


def test_bad_rows_are_quarantined_with_field_value_and_rule_beside_good_ones(
    store: Store, config: Config, tmp_path: Path
) -> None:
    rows = [
        row(),
        row(**{"Despatch number": "458", "No of items": "seven"}),
        row(**{"Despatch number": "459", "Despatch date": "31/02/2017 06:03"}),
        row(**{"Despatch number": "460", "Item code": ""}),
        row(**{"Despatch number": "461"}),
    ]
    summary = ingest(store, config, "peoplevox", tmp_path, "despatch.csv", rows)
    assert summary.normalised.quarantined == 3
    assert [reason for _, reason in quarantined(store)] == [
        "No of items = 'seven': must be a whole number",
        "Despatch date = '31/02/2017 06:03': must be a date and time (ISO 8601 or dd/MM/yyyy HH:mm)",
        "Item code = '': is required",
    ]
    assert sorted(e.data.shipment_id for e in events(store)) == ["456", "461"]


def test_one_bad_row_of_a_despatch_does_not_hold_back_its_other_rows(
    store: Store, config: Config, tmp_path: Path
) -> None:
    rows = [row(), row(**{"Item code": "YYYY", "No of items": "-1"})]
    ingest(store, config, "peoplevox", tmp_path, "despatch.csv", rows)
    [event] = events(store)
    assert [i.sku for i in event.data.items] == ["XXXX"]
    assert quarantined(store)[0][1] == "No of items = '-1': must be at least 1"
