"""Each built-in audit finds the problems planted for it, and nothing on clean data."""

from __future__ import annotations

import pytest

from tests.audits.conftest import Plant, configured, money, run_audit

SHIP = {"carrier_code": "DPD", "service_code": "NEXTDAY"}


def despatch(plant: Plant, order: str, method: dict[str, str] | None = None, **kwargs) -> str:
    return plant.fact(
        "shipment.despatched",
        {
            "shipment_id": f"S-{order}",
            "despatched_at": "2026-11-20T10:00:00Z",
            "parcels": [{"items": [{"sku": "SKU-1", "quantity": 1}], "ship_method": method or SHIP}],
        },
        order=order,
        email=f"{order}@example.org",
        **kwargs,
    )


# -- ship-methods ------------------------------------------------------------------------------


def test_ship_methods_reports_unmapped_methods_with_orders_and_last_seen(workspace, store, plant):
    config = configured(workspace, mapping={"ship_methods": {"DPD/NEXTDAY": "next-day"}})
    despatch(plant, "1001", {"carrier_code": "EVRI", "service_code": "48H"}, hours_ago=30)
    despatch(plant, "1002", {"carrier_code": "EVRI", "service_code": "48H"}, hours_ago=10)
    despatch(plant, "1003")
    result = run_audit(store, workspace, "ship-methods", config)
    [finding] = result.findings
    assert finding.evidence["ship_method"] == "EVRI/48H"
    assert finding.evidence["orders"] == ["1001", "1002"]
    assert finding.count == 2 and finding.severity == "warning" and finding.owner == "ops"
    assert finding.evidence["last_seen"] == max(r["occurred_at"] for r in plant.db["events"].rows)


def test_ship_methods_is_an_error_from_fifty_orders(workspace, store, plant):
    config = configured(workspace, mapping={"ship_methods": {"DPD/NEXTDAY": "next-day"}})
    for number in range(50):
        despatch(plant, f"9{number:03d}", {"carrier_code": "EVRI", "service_code": "48H"})
    [finding] = run_audit(store, workspace, "ship-methods", config).findings
    assert (finding.count, finding.severity) == (50, "error")


def test_ship_methods_finds_nothing_when_every_method_is_mapped(workspace, store, plant):
    config = configured(workspace, mapping={"ship_methods": {"DPD/NEXTDAY": "next-day"}})
    despatch(plant, "1001")
    assert run_audit(store, workspace, "ship-methods", config).findings == []


# -- stock-feed --------------------------------------------------------------------------------


def stock(
    plant: Plant,
    sku: str,
    site: str,
    available: int,
    *,
    bin: str | None = None,
    quarantine: int = 0,
    back: bool | None = None,
) -> str:
    data = {
        "sku": sku,
        "location": {"site": site, "bin": bin},
        "as_of": "2026-11-20T10:00:00Z",
        "mode": "snapshot",
        "sellable": {"available": available},
        "non_sellable": {"quarantine": quarantine},
    }
    if back is not None:
        data["back_in_stock"] = back
    return plant.fact("stock.level_changed", data)


def test_stock_feed_finds_mismatch_leak_false_back_in_stock_and_missing_variant(workspace, store, plant):
    plant.mirrored()
    stock(plant, "MISMATCH", "MAIN", 5)
    plant.variant("MISMATCH", 9)
    stock(plant, "LEAK", "MAIN", 4, quarantine=3)
    plant.variant("LEAK", 7)
    stock(plant, "GOODSIN", "MAIN", 2)
    stock(plant, "GOODSIN", "GOODS-IN", 6, back=True)
    plant.variant("GOODSIN", 2)
    stock(plant, "NOVARIANT", "MAIN", 1)
    result = run_audit(store, workspace, "stock-feed")
    found = {f.key.split(":")[0] + ":" + (f.sku or ""): f for f in result.findings}
    assert set(found) == {"mismatch:MISMATCH", "leak:LEAK", "back-in-stock:GOODSIN", "no-variant:NOVARIANT"}
    assert found["mismatch:MISMATCH"].evidence["difference"] == 4
    assert found["leak:LEAK"].severity == "error" and found["leak:LEAK"].evidence["non_sellable"] == 3
    assert found["back-in-stock:GOODSIN"].severity == "error"
    assert found["no-variant:NOVARIANT"].owner == workspace.config.owner_of("unknown_sku")


def test_stock_feed_finds_nothing_when_the_catalog_matches_sellable_stock(workspace, store, plant):
    plant.mirrored()
    stock(plant, "SKU-1", "MAIN", 5, quarantine=2)
    stock(plant, "SKU-1", "QUARANTINE", 4)
    stock(plant, "SKU-1", "WEST", 3, back=True)
    plant.variant("SKU-1", 8)
    assert run_audit(store, workspace, "stock-feed").findings == []


# -- sync-gaps ---------------------------------------------------------------------------------


def refund(plant: Plant, order: str, amount: str, refund_id: str, **kwargs) -> str:
    return plant.fact(
        "refund.processed",
        {
            "refund_id": refund_id,
            "total": money(amount),
            "lines": [{"sku": "SKU-1", "quantity": 1, "amount": money(amount)}],
        },
        order=order,
        email=f"{order}@example.org",
        **kwargs,
    )


def test_sync_gaps_reports_facts_past_sla_and_orphan_klaviyo_events(workspace, store, plant):
    plant.mirrored()
    missing = despatch(plant, "1001", hours_ago=10)
    despatch(plant, "1002", hours_ago=1)  # inside the 4 h SLA: not yet a gap
    sent = despatch(plant, "1003", hours_ago=10)
    plant.klaviyo_event("Fulfilled Shipment", order="1003", source_event_id=sent)
    cancelled = plant.fact("order.cancelled", {"scope": "full"}, order="1004", email="c@example.org", hours_ago=8)
    plant.fact("order.cancelled", {"scope": "full"}, order="1005", email="d@example.org", hours_ago=8)
    plant.klaviyo_event("Cancelled Order", order="1005", integration="Shopify")
    refund_gap = refund(plant, "1006", "10.00", "R1", hours_ago=30)
    plant.klaviyo_event("Fulfilled Shipment", order="1999", source_event_id="not-a-fact")
    result = run_audit(store, workspace, "sync-gaps")
    gaps = {f.evidence.get("event_id") for f in result.findings if f.key.startswith("gap:")}
    assert gaps == {missing, cancelled, refund_gap}
    [orphan] = [f for f in result.findings if f.key.startswith("orphan:")]
    assert orphan.order_number == "1999" and orphan.severity == "info"
    first = next(f for f in result.findings if f.evidence.get("event_id") == missing)
    assert first.evidence["outbox"] == "never queued" and first.order_number == "1001"


def test_sync_gaps_sla_is_configurable_per_type(workspace, store, plant):
    plant.mirrored()
    despatch(plant, "1001", hours_ago=10)
    config = configured(workspace, audits={"sync-gaps": {"params": {"sla_hours": {"shipment.despatched": 12}}}})
    assert run_audit(store, workspace, "sync-gaps", config).findings == []


def test_sync_gaps_finds_nothing_when_klaviyo_heard_of_every_fact(workspace, store, plant):
    plant.mirrored()
    sent = despatch(plant, "1001", hours_ago=10)
    plant.klaviyo_event("Fulfilled Shipment", order="1001", source_event_id=sent)
    assert run_audit(store, workspace, "sync-gaps").findings == []


# -- refunds -----------------------------------------------------------------------------------


def placed(plant: Plant, order: str, total: str) -> str:
    return plant.fact(
        "order.placed",
        {"lines": [{"sku": "SKU-1", "quantity": 2}], "totals": {"total": money(total)}},
        order=order,
        email=f"{order}@example.org",
        hours_ago=72,
    )


def test_refunds_finds_missing_partials_unnetted_events_and_over_refunds(workspace, store, plant):
    plant.mirrored()
    placed(plant, "2001", "100.00")
    first = refund(plant, "2001", "30.00", "R1")
    second = refund(plant, "2001", "20.00", "R2")
    plant.klaviyo_event("Placed Order", order="2001", unique_id="2001", value=100)
    plant.klaviyo_event("Refunded Order", order="2001", unique_id="2001", source_event_id=first, value=30)
    placed(plant, "2002", "50.00")
    plant.klaviyo_event("Placed Order", order="2002", unique_id="2002", value=50)
    plant.klaviyo_event("Cancelled Order", order="2002", unique_id="some-event-id", value=50)
    placed(plant, "2003", "40.00")
    for index, amount in enumerate(("30.00", "25.00")):
        sent = refund(plant, "2003", amount, f"R3-{index}")
        plant.klaviyo_event("Refunded Order", order="2003", unique_id=f"2003:{index}", source_event_id=sent)
    result = run_audit(store, workspace, "refunds")
    keys = {f.key for f in result.findings}
    assert keys == {f"partial-missing:{second}", "not-netted:Cancelled Order:2002", "over-refund:2003"}
    over = next(f for f in result.findings if f.key == "over-refund:2003")
    assert over.severity == "error" and over.evidence["refunded"] == "55.00"
    assert next(f for f in result.findings if f.key.startswith("not-netted")).evidence["value"] == 50


def test_refunds_finds_nothing_when_refunds_net_off_and_arrived(workspace, store, plant):
    plant.mirrored()
    placed(plant, "2001", "100.00")
    first = refund(plant, "2001", "30.00", "R1")
    second = refund(plant, "2001", "20.00", "R2")
    plant.klaviyo_event("Placed Order", order="2001", unique_id="2001", value=100)
    plant.klaviyo_event("Refunded Order", order="2001", unique_id="2001", source_event_id=first, value=30)
    plant.klaviyo_event("Refunded Order", order="2001", unique_id=f"{second}", source_event_id=second, value=20)
    assert run_audit(store, workspace, "refunds").findings == []


# -- returns-suppression -----------------------------------------------------------------------


def return_event(plant: Plant, event_type: str, return_id: str, email: str, status: str) -> str:
    return plant.fact(
        event_type,
        {
            "return_id": return_id,
            "status": status,
            "lines": [{"sku": "SKU-1", "quantity": 1, "reason_text": "Too big"}],
        },
        order=f"O-{return_id}",
        email=email,
        system="swap",
    )


def test_returns_suppression_finds_open_returns_without_the_property(workspace, store, plant):
    plant.mirrored()
    return_event(plant, "return.lodged", "RET1", "Ann@Example.org ", "open")
    plant.profile("P-ANN", email="ann@example.org")
    return_event(plant, "return.lodged", "RET2", "bob@example.org", "open")
    plant.profile("P-BOB", email="bob@example.org", properties={"open_return": True})
    return_event(plant, "return.lodged", "RET3", "cat@example.org", "open")
    return_event(plant, "return.restocked", "RET3", "cat@example.org", "restocked")
    plant.profile("P-CAT", email="cat@example.org")
    [finding] = run_audit(store, workspace, "returns-suppression").findings
    assert (finding.profile_id, finding.order_number, finding.owner) == ("P-ANN", "O-RET1", "cx")
    assert finding.evidence["return_id"] == "RET1"


def test_returns_suppression_property_is_configurable_and_clean_data_finds_nothing(workspace, store, plant):
    plant.mirrored()
    return_event(plant, "return.received", "RET1", "ann@example.org", "received")
    plant.profile("P-ANN", email="ann@example.org", properties={"hold_marketing": True})
    config = configured(workspace, audits={"returns-suppression": {"params": {"property": "hold_marketing"}}})
    assert run_audit(store, workspace, "returns-suppression", config).findings == []


# -- consent -----------------------------------------------------------------------------------


def consent_fact(plant: Plant, email: str, status: str, captured_at: str) -> str:
    return plant.fact(
        "consent.changed",
        {"channel": "email", "status": status, "captured_at": captured_at, "method": "marketplace opt-in"},
        email=email,
        system="marketplacer",
    )


def test_consent_reports_disagreements_and_which_side_changed_last(workspace, store, plant):
    plant.mirrored()
    consent_fact(plant, "out@example.org", "unsubscribed", "2026-11-01T00:00:00Z")
    plant.profile("P-OUT", email="out@example.org", email_consent="SUBSCRIBED", email_consent_at="2026-10-01T00:00:00Z")
    consent_fact(plant, "in@example.org", "subscribed", "2026-09-01T00:00:00Z")
    plant.profile("P-IN", email="in@example.org", email_consent="UNSUBSCRIBED", email_consent_at="2026-10-01T00:00:00Z")
    result = run_audit(store, workspace, "consent")
    found = {f.profile_id: f for f in result.findings}
    assert set(found) == {"P-OUT", "P-IN"}
    assert found["P-OUT"].severity == "error" and found["P-OUT"].evidence["changed_last"] == "source"
    assert found["P-IN"].severity == "warning" and found["P-IN"].evidence["changed_last"] == "klaviyo"


def test_consent_finds_nothing_when_both_sides_agree(workspace, store, plant):
    plant.mirrored()
    consent_fact(plant, "a@example.org", "subscribed", "2026-11-01T00:00:00Z")
    plant.profile("P-A", email="A@example.org", email_consent="SUBSCRIBED")
    consent_fact(plant, "b@example.org", "never_subscribed", "2026-11-01T00:00:00Z")
    plant.profile("P-B", email="b@example.org")
    assert run_audit(store, workspace, "consent").findings == []


# -- metric-collisions -------------------------------------------------------------------------


def test_metric_collisions_reports_orders_counted_by_two_senders(workspace, store, plant):
    plant.mirrored()
    for order in ("3001", "3002"):
        plant.klaviyo_event("Placed Order", order=order, unique_id=order, integration="Shopify", value=80)
        plant.klaviyo_event("Placed Order", order=order, unique_id=f"cogent-{order}", integration="API", value=80)
    plant.klaviyo_event("Placed Order", order="3003", unique_id="3003", integration="Shopify", value=10)
    [finding] = run_audit(store, workspace, "metric-collisions").findings
    assert finding.count == 2 and finding.evidence["senders"] == "API + Shopify"
    assert finding.evidence["value_over_counted"] == 160
    assert [o["order"] for o in finding.evidence["orders"]] == ["3001", "3002"]


@pytest.mark.parametrize("metric", ["Placed Order", "Fulfilled Order"])
def test_metric_collisions_finds_nothing_with_one_sender_per_order(workspace, store, plant, metric):
    plant.mirrored()
    plant.klaviyo_event(metric, order="3001", unique_id="3001", integration="Shopify")
    plant.klaviyo_event(metric, order="3002", unique_id="3002", integration="Shopify")
    assert run_audit(store, workspace, "metric-collisions").findings == []
