"""The inbox and the normaliser framework, with a throwaway normaliser registered for the test."""

from __future__ import annotations

import gc
import json
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from cogent_cli.collector import YOUNG_THRESHOLD, fewer_collections
from cogent_cli.events import parse_event
from cogent_cli.inbox import Inbox, InboxError
from cogent_cli.normalise import base
from cogent_cli.normalise.base import NormaliseContext, NormaliseError, Record, register
from cogent_cli.workspace import Workspace

KIND = "test_cancellation"


@pytest.fixture(autouse=True)
def test_kind() -> Iterator[None]:
    @register("swap", KIND, matches=lambda r: "cancel_id" in r)
    def cancellation(record: Record, ctx: NormaliseContext):
        if "boom" in record:
            raise RuntimeError("unexpected")
        if not record.get("cancel_id"):
            raise NormaliseError("cancel_id", record.get("cancel_id"), "required")
        yield ctx.event(
            "order.cancelled",
            dedupe_key=f"cancel|{record['cancel_id']}",
            occurred_at=datetime(2025, 5, 1, 9, tzinfo=UTC),
            data={"scope": "full", "reason": record.get("reason")},
            order_ref={"order_number": record.get("order")},
        )

    yield
    base._REGISTRY.pop(("swap", KIND), None)


def receive(inbox: Inbox, key: str, record: dict) -> int:
    return inbox.receive("swap", "webhook", KIND, key, json.dumps(record)).id


def test_duplicate_delivery_is_stored_once(workspace: Workspace) -> None:
    inbox = Inbox(workspace.store())
    first = inbox.receive("swap", "webhook", KIND, "k1", '{"cancel_id": "1"}')
    second = inbox.receive("swap", "webhook", KIND, "k1", '{"cancel_id": "1"}')
    assert (first.duplicate, second.duplicate) == (False, True)
    assert second.id == first.id
    assert len(inbox.list()) == 1


def test_same_key_from_another_system_is_not_a_duplicate(workspace: Workspace) -> None:
    inbox = Inbox(workspace.store())
    inbox.receive("swap", "webhook", KIND, "k1", "{}")
    assert not inbox.receive("clarus", "webhook", KIND, "k1", "{}").duplicate


def test_receive_is_committed_before_it_returns(workspace: Workspace) -> None:
    Inbox(workspace.store()).receive("swap", "webhook", KIND, "k1", '{"cancel_id": "1"}', headers={"X-A": "b"})
    other = Inbox(workspace.store())  # a second connection sees it
    [row] = other.list()
    assert (row.status, row.headers, row.body) == ("pending", {"X-A": "b"}, '{"cancel_id": "1"}')


@pytest.mark.parametrize(
    ("system", "route", "key", "message"),
    [
        ("shopify", "webhook", "k", "Unknown system"),
        ("swap", "email", "k", "Unknown route"),
        ("swap", "pull", "", "idempotency"),
    ],
)
def test_receive_refuses_malformed_envelopes(
    workspace: Workspace, system: str, route: str, key: str, message: str
) -> None:
    with pytest.raises(InboxError, match=message):
        Inbox(workspace.store()).receive(system, route, KIND, key, "{}")


def test_bad_record_is_quarantined_and_the_ones_beside_it_flow(workspace: Workspace) -> None:
    store = workspace.store()
    inbox = Inbox(store)
    good1 = receive(inbox, "a", {"cancel_id": "1", "order": "SO-1"})
    bad = receive(inbox, "b", {"cancel_id": ""})
    broken = receive(inbox, "c", {"cancel_id": "3", "boom": True})
    not_json = inbox.receive("swap", "webhook", KIND, "d", "{not json").id
    good2 = receive(inbox, "e", {"cancel_id": "5"})
    summary = inbox.normalise_pending(workspace.config)
    assert (summary.processed, summary.normalised, summary.quarantined) == (5, 2, 3)
    assert summary.quarantined_ids == [bad, broken, not_json]
    assert inbox.get(bad).reason == "cancel_id = '': required"
    assert inbox.get(broken).reason.startswith("(record) = None: normaliser error RuntimeError: unexpected")
    assert inbox.get(not_json).reason.startswith("body = '{not json': not valid JSON")
    assert {inbox.get(i).status for i in (good1, good2)} == {"normalised"}
    rows = list(store.db.query("select * from events order by rowid"))
    assert [r["inbox_id"] for r in rows] == [good1, good2]
    event = parse_event(rows[0]["body"])
    assert (event.event_type, event.order_number, event.source.raw_ref) == ("order.cancelled", "SO-1", f"inbox:{good1}")
    assert rows[0]["order_number"] == "SO-1"


def test_unknown_kind_is_quarantined_naming_the_known_kinds(workspace: Workspace) -> None:
    inbox = Inbox(workspace.store())
    row = inbox.receive("swap", "webhook", "no_such_kind", "k", "{}").id
    inbox.normalise_pending(workspace.config)
    assert inbox.get(row).status == "quarantined"
    assert "no swap normaliser for this kind (known:" in inbox.get(row).reason
    assert KIND in inbox.get(row).reason


def test_same_fact_by_two_routes_is_one_event(workspace: Workspace) -> None:
    store = workspace.store()
    inbox = Inbox(store)
    receive(inbox, "webhook-key", {"cancel_id": "7"})
    inbox.receive("swap", "pull", KIND, "pull-key", json.dumps({"cancel_id": "7"}))
    summary = inbox.normalise_pending(workspace.config)
    assert (summary.events_written, summary.events_duplicate) == (1, 1)
    assert store.db["events"].count == 1


def test_retry_after_fix_renormalises_quarantined_rows(workspace: Workspace) -> None:
    store = workspace.store()
    inbox = Inbox(store)
    row = receive(inbox, "a", {"cancel_id": ""})
    inbox.normalise_pending(workspace.config)
    store.db.conn.execute("UPDATE inbox SET body = ? WHERE id = ?", ('{"cancel_id": "9"}', row))
    assert inbox.retry(all_quarantined=True) == [row]
    summary = inbox.normalise_pending(workspace.config, ids=[row])
    assert (summary.normalised, summary.events_written) == (1, 1)
    fixed = inbox.get(row)
    assert (fixed.status, fixed.reason, fixed.attempts) == ("normalised", None, 2)


def test_normalising_twice_writes_nothing_new(workspace: Workspace) -> None:
    store = workspace.store()
    inbox = Inbox(store)
    row = receive(inbox, "a", {"cancel_id": "1"})
    inbox.normalise_pending(workspace.config)
    inbox.retry([row])
    summary = inbox.normalise_pending(workspace.config)
    assert (summary.events_written, summary.events_duplicate) == (0, 1)


def test_a_quarantined_record_leaves_no_trace_of_the_shipment_it_announced(workspace: Workspace) -> None:
    @register("swap", "test_shipment")
    def shipment(record: Record, ctx: NormaliseContext):
        yield ctx.shipments.despatch(
            shipment_id="S1",
            despatched_at=datetime(2025, 5, 1, 9, tzinfo=UTC),
            parcels=[
                {
                    "tracking_number": record["tracking"],
                    "ship_method": {"carrier_code": "RM", "service_code": record["service"]},
                    "items": [{"sku": "A", "quantity": 1}],
                }
            ],
            granularity="shipment",
            dedupe_key=f"S1|{record['tracking']}",
            order_number="SO-1",
        )
        if record.get("fail"):
            raise NormaliseError("fail", True, "the record goes wrong after announcing its shipment")

    try:
        store = workspace.store()
        inbox = Inbox(store)
        bad = inbox.receive(
            "swap", "webhook", "test_shipment", "a", '{"tracking": "T1", "service": "TPN24", "fail": true}'
        ).id
        inbox.receive("swap", "webhook", "test_shipment", "b", '{"tracking": "T2", "service": "TPS48"}')
        summary = inbox.normalise_pending(workspace.config)
    finally:
        base._REGISTRY.pop(("swap", "test_shipment"), None)
    assert (summary.quarantined_ids, summary.events_written) == ([bad], 1)
    [event] = [parse_event(r["body"]) for r in store.db.query("select body from events")]
    # The shipment is new, not an upgrade of the quarantined record's version of it.
    assert (event.data.parcels[0].tracking_number, event.data.supersedes) == ("T2", None)
    stored = store.db.execute("select event_id from shipments").fetchall()
    items = store.db.execute("select shipment_id, sku, quantity from shipment_items").fetchall()
    assert (stored, items) == ([(event.event_id,)], [("S1", "A", 1)])
    # Nor is its ship method counted as seen: only the delivered event's is.
    methods = store.db.execute("select service_code, events, last_event_id from ship_methods_seen").fetchall()
    assert methods == [("TPS48", 1, event.event_id)]


def test_a_record_failing_after_writing_state_is_quarantined_alone_with_its_writes_undone(
    workspace: Workspace,
) -> None:
    @register("swap", "test_order")
    def order(record: Record, ctx: NormaliseContext):
        ctx.ledger.record_order(record["order"], {"A": 1}, system="swap", at=datetime(2025, 5, 1, 9, tzinfo=UTC))
        if record.get("fail"):
            raise NormaliseError("fail", True, "the record goes wrong after recording its order")
        yield ctx.event(
            "order.cancelled",
            dedupe_key=f"cancel|{record['order']}",
            occurred_at=datetime(2025, 5, 1, 9, tzinfo=UTC),
            data={"scope": "full"},
        )
        record["order"] = "changed by the normaliser"  # the batch's second pass must not see this

    try:
        store = workspace.store()
        inbox = Inbox(store)
        stored, summary = inbox.store_and_normalise(
            workspace.config,
            "swap",
            "file",
            [
                ("test_order", "a", '{"order": "SO-1"}', {"order": "SO-1"}),
                ("test_order", "b", '{"order": "SO-2", "fail": true}', {"order": "SO-2", "fail": True}),
                ("test_order", "c", '{"order": "SO-3"}', {"order": "SO-3"}),
            ],
        )
    finally:
        base._REGISTRY.pop(("swap", "test_order"), None)
    bad = store.db.execute("select id from inbox where idempotency_key = 'b'").fetchone()[0]
    assert (stored, summary.normalised, summary.quarantined_ids, summary.events_written) == (3, 2, [bad], 2)
    orders = store.db.execute("select order_number from order_lines order by order_number").fetchall()
    assert orders == [("SO-1",), ("SO-3",)]
    statuses = store.db.execute("select idempotency_key, status, reason from inbox order by id").fetchall()
    assert [s[:2] for s in statuses] == [("a", "normalised"), ("b", "quarantined"), ("c", "normalised")]
    assert "goes wrong after recording its order" in statuses[1][2]


def test_a_normaliser_crash_is_logged_once_when_the_batch_is_normalised_again(
    workspace: Workspace, caplog: pytest.LogCaptureFixture
) -> None:
    @register("swap", "test_order_then_fail")
    def order(record: Record, ctx: NormaliseContext):
        ctx.ledger.record_order("SO-1", {"A": 1}, system="swap", at=datetime(2025, 5, 1, 9, tzinfo=UTC))
        raise NormaliseError("fail", True, "goes wrong after writing")

    try:
        store = workspace.store()
        inbox = Inbox(store)
        with caplog.at_level("ERROR", logger="cogent_cli.inbox"):
            # The crash comes first; the record after it makes the batch run again with savepoints.
            _, summary = inbox.store_and_normalise(
                workspace.config,
                "swap",
                "file",
                [
                    (KIND, "a", '{"cancel_id": "1", "boom": true}', {"cancel_id": "1", "boom": True}),
                    ("test_order_then_fail", "b", "{}", {}),
                ],
            )
    finally:
        base._REGISTRY.pop(("swap", "test_order_then_fail"), None)
    assert len(summary.quarantined_ids) == 2
    crashes = [r for r in caplog.records if "normaliser failed" in r.getMessage()]
    assert len(crashes) == 1 and crashes[0].exc_info is not None


def test_normalising_pending_rows_collects_young_objects_less_often_and_a_nested_use_keeps_the_outer_settings(
    workspace: Workspace,
) -> None:
    during: list[tuple[int, bool]] = []

    @register("swap", "test_collector")
    def record_collector(record: Record, ctx: NormaliseContext):
        during.append((gc.get_threshold()[0], gc.get_freeze_count() > 0))
        return ()

    before = gc.get_threshold()
    try:
        inbox = Inbox(workspace.store())
        inbox.receive("swap", "file", "test_collector", "a", "{}")
        inbox.normalise_pending(workspace.config)
        with fewer_collections(1234):
            inbox.receive("swap", "file", "test_collector", "b", "{}")
            inbox.normalise_pending(workspace.config)
            # The inner use left the outer settings in place.
            inside = (gc.get_threshold()[0], gc.get_freeze_count() > 0)
    finally:
        base._REGISTRY.pop(("swap", "test_collector"), None)
    assert during == [(YOUNG_THRESHOLD, True), (1234, True)]
    assert inside == (1234, True)
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0
