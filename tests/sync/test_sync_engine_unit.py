"""The engine against an in-memory Klaviyo: ordering, holds, CLV claims, identity, stock, consent."""

from __future__ import annotations

import gc
import time
from datetime import timedelta
from typing import Any

from sync_fakes import (
    NOW,
    FakeKlaviyo,
    add_events,
    event,
    placed,
    refund,
    return_event,
    shipment,
    stock,
)

from cogent_cli.sync.engine import RUN_YOUNG_THRESHOLD, SyncOptions, run_sync
from cogent_cli.sync.exceptions import list_exceptions
from cogent_cli.sync.mapping import Mapper
from cogent_cli.workspace import Workspace

PHONE = "+447911123456"


def sync(workspace: Workspace, fake: FakeKlaviyo, **options: object):
    return run_sync(workspace, SyncOptions(**options), client_factory=fake.session)  # type: ignore[arg-type]


def test_held_event_waits_for_its_predecessor_only_up_to_the_hold_time(workspace: Workspace, fake: FakeKlaviyo) -> None:
    with workspace.store() as store:
        add_events(store, [shipment("S1", [("T1", [("SKU-1", 1)])]), refund("R1", "10.00", [("SKU-1", 1, "10.00")])])
    # Klaviyo rejects every shipment: the refund waits behind it while the hold lasts.
    fake.reject_metric = "Fulfilled Shipment"
    summary = sync(workspace, fake)
    assert [e["metric"] for e in fake.events] == []
    assert summary.held == 1
    with workspace.store() as store:
        store.db.execute("update outbox set enqueued_at = ?", [(NOW - timedelta(hours=2)).isoformat()])
    sync(workspace, fake)
    assert [e["metric"] for e in fake.events] == ["Refunded Order"]


def test_unknown_sku_becomes_an_exception_owned_by_ecommerce(workspace: Workspace, fake: FakeKlaviyo) -> None:
    with workspace.store() as store:
        add_events(store, [stock("NOPE", "MAIN", 3)])
    summary = sync(workspace, fake)
    assert summary.failed == {"unknown_sku": 1}
    with workspace.store() as store:
        [record] = list_exceptions(store, exception_class="unknown_sku")
    assert record.owner == "ecommerce" and "NOPE" in (record.last_error or "")


def test_return_lifecycle_sets_then_clears_profile_properties(workspace: Workspace, fake: FakeKlaviyo) -> None:
    with workspace.store() as store:
        add_events(store, [return_event("return.lodged", "RET1", "lodged")])
    sync(workspace, fake)
    [profile] = fake.profiles.values()
    assert profile["properties"] == {"open_return": True, "last_return_reason": "Too small", "returned_skus": ["SKU-1"]}
    with workspace.store() as store:
        add_events(store, [return_event("return.restocked", "RET1", "restocked")])
    sync(workspace, fake)
    assert profile["properties"] == {}
    assert [e["metric"] for e in fake.events] == ["Return Lodged", "Return Restocked"]


def test_placed_orders_are_sent_only_for_sources_switched_on(workspace: Workspace, fake: FakeKlaviyo) -> None:
    with workspace.store() as store:
        add_events(store, [placed("30.00")])
    summary = sync(workspace, fake)
    assert fake.events == [] and sum(summary.enqueued.skipped.values()) == 1


def test_consent_becomes_a_subscription_job_and_orders_never_subscribe(workspace: Workspace, fake: FakeKlaviyo) -> None:
    with workspace.store() as store:
        add_events(
            store,
            [
                shipment("S1", [("T1", [("SKU-1", 1)])]),
                event(
                    "consent.changed",
                    {"channel": "email", "status": "subscribed", "captured_at": (NOW - timedelta(days=3)).isoformat()},
                    order=None,
                ),
                event(
                    "consent.changed", {"channel": "email", "status": "unsubscribed"}, order=None, email="bob@shop.test"
                ),
            ],
        )
    sync(workspace, fake)
    kinds = [(kind, item.email, historical) for kind, item, historical in fake.subscriptions]
    assert kinds == [("subscribe", "jane@shop.test", True), ("unsubscribe", "bob@shop.test", False)]
    assert fake.subscriptions[0][1].consented_at is not None


def test_old_events_carry_the_backfill_flag_so_no_flow_fires(workspace: Workspace, fake: FakeKlaviyo) -> None:
    with workspace.store() as store:
        add_events(
            store,
            [
                shipment("S1", [("T1", [("SKU-1", 1)])], at=NOW - timedelta(days=30)),
                shipment("S2", [("T2", [("SKU-1", 1)])]),
            ],
        )
    sync(workspace, fake)
    assert [(e["properties"]["ShipmentId"], e["backfill"]) for e in fake.events] == [("S2", False), ("S1", True)]


def test_rerunning_sends_nothing_twice(workspace: Workspace, fake: FakeKlaviyo) -> None:
    with workspace.store() as store:
        add_events(store, [shipment("S1", [("T1", [("SKU-1", 1)])])])
    first = sync(workspace, fake)
    second = sync(workspace, fake)
    assert sum(first.sent.values()) == 1 and sum(second.sent.values()) == 0
    assert [c for c in fake.calls if c[0] == "bulk_create_events"] == [("bulk_create_events", 1)]


def test_klaviyo_unavailable_defers_the_batch_to_the_next_run_without_losing_it(
    workspace: Workspace, fake: FakeKlaviyo
) -> None:
    with workspace.store() as store:
        add_events(
            store, [shipment("S1", [("T1", [("SKU-1", 1)])]), shipment("S2", [("T2", [("SKU-1", 1)])], order="1002")]
        )
    fake.unavailable_calls = 1
    first = sync(workspace, fake)
    assert (sum(first.sent.values()), first.deferred, first.waiting) == (0, 2, 2)
    assert [c for c in fake.calls if c[0] == "bulk_create_events"] == [("bulk_create_events", 2)]
    second = sync(workspace, fake)
    assert (second.sent, second.waiting) == ({"Fulfilled Shipment": 2}, 0)
    assert len(fake.events) == 2


def test_profiles_an_import_job_reports_as_failed_become_validation_exceptions_and_the_rest_is_delivered(
    workspace: Workspace, fake: FakeKlaviyo
) -> None:
    with workspace.store() as store:
        add_events(
            store,
            [
                return_event("return.lodged", "RET1", "lodged", order="A1", email="good@shop.test"),
                return_event("return.lodged", "RET2", "lodged", order="A2", email="bad@shop.test"),
            ],
        )
    fake.import_errors = {"bad@shop.test": "This email address is not deliverable."}
    summary = sync(workspace, fake)
    assert ("bulk_import_profiles", 2) in fake.calls and ("get_bulk_import_errors", 1) in fake.calls
    assert summary.failed == {"validation_error": 1}
    with workspace.store() as store:
        [record] = list_exceptions(store, exception_class="validation_error")
    assert record.metric.startswith("profile") and record.payload["profile"] == {"email": "bad@shop.test"}
    assert record.pointer == "/data/attributes/email" and "not deliverable" in (record.last_error or "")
    [good] = [p for p in fake.profiles.values() if p.get("email") == "good@shop.test"]
    assert good["properties"]["open_return"] is True


def add_returns(workspace: Workspace, *customers: tuple[str, ...]) -> None:
    """A return per (status, email[, phone]), each of an order of its own: lodged opens one, restocked closes it."""
    with workspace.store() as store:
        add_events(
            store,
            [
                return_event(
                    f"return.{c[0]}", f"RET{n}", c[0], order=f"A{n}", email=c[1], phone=c[2] if c[2:] else None
                )
                for n, c in enumerate(customers, 1)
            ],
        )


def test_a_waves_profile_updates_go_in_one_import_job_up_to_klaviyos_limit(
    workspace: Workspace, fake: FakeKlaviyo
) -> None:
    add_returns(workspace, *(("lodged", f"c{i}@shop.test") for i in range(1500)))
    summary = sync(workspace, fake)
    assert sum(v for k, v in summary.sent.items() if k.startswith("profile")) == 1500
    assert [c for c in fake.calls if c[0] == "bulk_import_profiles"] == [("bulk_import_profiles", 1500)]
    assert all(p["properties"]["open_return"] is True for p in fake.profiles.values())


def test_a_profiles_updates_in_one_wave_merge_in_order_and_never_race(workspace: Workspace, fake: FakeKlaviyo) -> None:
    add_returns(
        workspace,
        ("lodged", "jane@shop.test"),
        ("lodged", "sam@shop.test"),
        ("lodged", "kim@shop.test"),
        ("restocked", "lee@shop.test"),
        # Another order of Sam's, its return closed after his first opened: merged into one item.
        ("restocked", " SAM@shop.test"),
        # Jane again, now with a phone number too: a later round, after her first update has run.
        ("restocked", "jane@shop.test", PHONE),
        # Lee's return closed, then another opened: the later one wins.
        ("lodged", "lee@shop.test"),
    )
    summary = sync(workspace, fake)
    assert sum(v for k, v in summary.sent.items() if k.startswith("profile")) == 7
    profile_calls = [c for c in fake.calls if c[0] in ("bulk_import_profiles", "get_bulk_import_job", "upsert_profile")]
    assert profile_calls == [("bulk_import_profiles", 4), ("get_bulk_import_job", 1), ("upsert_profile", 1)]
    properties = {p["email"]: p["properties"] for p in fake.profiles.values()}
    assert "open_return" not in properties["sam@shop.test"] and "open_return" not in properties["jane@shop.test"]
    assert properties["kim@shop.test"]["open_return"] is True and properties["lee@shop.test"]["open_return"] is True


def test_an_update_whose_predecessor_failed_waits_for_the_next_run(workspace: Workspace, fake: FakeKlaviyo) -> None:
    add_returns(
        workspace,
        ("lodged", "jane@shop.test"),
        ("lodged", "sam@shop.test"),
        ("lodged", "jane@shop.test"),
        ("restocked", "jane@shop.test", PHONE),
    )
    fake.import_errors = {"jane@shop.test": "This email address is not deliverable."}
    first = sync(workspace, fake)
    # Jane's first two updates went as one item and failed together, each with its own exception; her
    # third is not sent past them but kept for the next run.
    assert first.failed == {"validation_error": 2} and first.deferred == 1
    assert [c for c in fake.calls if c[0] in ("bulk_import_profiles", "upsert_profile")] == [
        ("bulk_import_profiles", 2)
    ]
    with workspace.store() as store:
        records = list_exceptions(store, exception_class="validation_error")
    assert len({r.outbox_id for r in records}) == 2
    assert all(r.payload["profile"] == {"email": "jane@shop.test"} for r in records)
    fake.import_errors = {}
    second = sync(workspace, fake)
    assert sum(v for k, v in second.sent.items() if k.startswith("profile")) == 1
    assert fake.calls[-1] == ("upsert_profile", 1)


def with_wave_size(workspace: Workspace, size: int) -> Workspace:
    workspace.config_path.write_text(
        workspace.config_path.read_text().replace("[sync]\n", f"[sync]\nwave_size = {size}\n")
    )
    return Workspace(workspace.root)


def test_import_jobs_klaviyo_is_still_running_do_not_hold_up_later_waves(
    workspace: Workspace, fake: FakeKlaviyo
) -> None:
    workspace = with_wave_size(workspace, 20)
    add_returns(workspace, *(("lodged", f"c{i}@shop.test") for i in range(100)))
    fake.job_seconds = 0.4
    summary = sync(workspace, fake)
    assert sum(v for k, v in summary.sent.items() if k.startswith("profile")) == 100
    # Five waves of twenty profiles: each wave's job was submitted while the ones before still ran.
    assert [c for c in fake.calls if c[0] == "bulk_import_profiles"] == [("bulk_import_profiles", 20)] * 5
    assert fake.running_peak == 5 and fake.running == {} and fake.raced == []
    assert all(p["properties"]["open_return"] is True for p in fake.profiles.values())


def sam_in_two_waves(workspace: Workspace) -> Workspace:
    """Waves of two: two of events, then Sam's and Kim's profile updates, then Sam's second and Lee's."""
    workspace = with_wave_size(workspace, 2)
    add_returns(
        workspace,
        ("lodged", "sam@shop.test"),
        ("lodged", "kim@shop.test"),
        ("restocked", "sam@shop.test"),
        ("lodged", "lee@shop.test"),
    )
    return workspace


def test_a_profiles_update_waits_for_an_earlier_waves_job_and_no_other_update_does(
    workspace: Workspace, fake: FakeKlaviyo
) -> None:
    workspace = sam_in_two_waves(workspace)
    fake.job_seconds = 0.3
    summary = sync(workspace, fake)
    assert sum(v for k, v in summary.sent.items() if k.startswith("profile")) == 4
    assert fake.log == [
        ("import", ("kim@shop.test", "sam@shop.test")),
        ("upsert", ("lee@shop.test",)),  # sent at once, while the job holding Sam runs
        ("ended", ("kim@shop.test", "sam@shop.test")),
        ("upsert", ("sam@shop.test",)),  # only once that job has run
    ]
    assert fake.raced == []
    properties = {p["email"]: p["properties"] for p in fake.profiles.values()}
    assert "open_return" not in properties["sam@shop.test"] and properties["lee@shop.test"]["open_return"] is True


def test_an_update_behind_an_earlier_waves_failed_one_waits_for_the_next_run(
    workspace: Workspace, fake: FakeKlaviyo
) -> None:
    workspace = sam_in_two_waves(workspace)
    fake.job_seconds = 0.2
    fake.import_errors = {"sam@shop.test": "This email address is not deliverable."}
    first = sync(workspace, fake)
    assert (first.failed, first.deferred) == ({"validation_error": 1}, 1)
    assert ("upsert", ("sam@shop.test",)) not in fake.log
    fake.import_errors = {}
    second = sync(workspace, fake)
    assert sum(v for k, v in second.sent.items() if k.startswith("profile")) == 1
    assert fake.log[-1] == ("upsert", ("sam@shop.test",))


def test_a_run_out_of_time_stops_waiting_on_import_jobs_and_leaves_their_rows_for_the_next(
    workspace: Workspace, fake: FakeKlaviyo
) -> None:
    add_returns(workspace, ("lodged", "sam@shop.test"), ("lodged", "kim@shop.test"))
    fake.job_seconds = 600  # Klaviyo is slow today
    started = time.monotonic()
    first = sync(workspace, fake, max_minutes=0.02)
    assert time.monotonic() - started < 30  # not the 15 minutes a job may be polled for
    assert first.sent == {"Return Lodged": 2} and first.deferred == 2
    with workspace.store() as store:
        statuses = [r["status"] for r in store.db.query("select status from outbox where kind = 'profile'")]
        errors = [r["last_error"] for r in store.db.query("select last_error from outbox where kind = 'profile'")]
    assert statuses == ["pending", "pending"]
    assert all("when the run's time was up" in (e or "") for e in errors)
    fake.job_seconds = 0
    second = sync(workspace, fake)
    assert sum(v for k, v in second.sent.items() if k.startswith("profile")) == 2


def profile_statuses(workspace: Workspace) -> list[tuple[str, str | None]]:
    with workspace.store() as store:
        return [
            (r["status"], r["import_job"])
            for r in store.db.query("select status, import_job from outbox where kind = 'profile' order by id")
        ]


def test_a_job_an_earlier_run_stopped_waiting_on_is_asked_about_before_its_rows_are_sent_again(
    workspace: Workspace, fake: FakeKlaviyo
) -> None:
    add_returns(workspace, ("lodged", "sam@shop.test"), ("lodged", "kim@shop.test"))
    fake.job_seconds = 600
    sync(workspace, fake, max_minutes=0.02)
    [(_, job)] = set(profile_statuses(workspace))
    assert profile_statuses(workspace) == [("pending", job), ("pending", job)]
    # Klaviyo is still running the job at the next run, which brings Sam's next return and Lee's first.
    with workspace.store() as store:
        add_events(
            store,
            [
                return_event("return.lodged", "RET4", "lodged", order="A4", email="sam@shop.test"),
                return_event("return.lodged", "RET3", "lodged", order="A3", email="lee@shop.test"),
            ],
        )
    sent_before = len(fake.log)
    second = sync(workspace, fake, max_minutes=0.02)
    # Lee's goes; Sam's and Kim's are not sent again, and Sam's later one waits behind the job.
    assert fake.log[sent_before:] == [("upsert", ("lee@shop.test",))]
    assert second.deferred == 3
    assert [status for status, _ in profile_statuses(workspace)] == ["pending", "pending", "pending", "sent"]
    # The job has run by the third run: its rows are delivered without being sent again.
    fake.job_seconds = 0
    sent_before = len(fake.log)
    sync(workspace, fake)
    assert fake.log[sent_before:] == [("ended", ("kim@shop.test", "sam@shop.test")), ("upsert", ("sam@shop.test",))]
    assert [status for status, _ in profile_statuses(workspace)] == ["sent"] * 4
    assert fake.raced == []


def test_rows_of_an_earlier_runs_job_that_did_not_complete_are_sent_again(
    workspace: Workspace, fake: FakeKlaviyo
) -> None:
    add_returns(workspace, ("lodged", "sam@shop.test"), ("lodged", "kim@shop.test"))
    fake.job_seconds, fake.import_status = 600, "cancelled"  # Klaviyo will give up on this one
    sync(workspace, fake, max_minutes=0.02)
    [(status, job)] = set(profile_statuses(workspace))
    assert status == "pending" and job is not None
    fake.job_seconds, fake.import_status = 0, "complete"
    sync(workspace, fake)
    assert [n for name, n in fake.calls if name == "bulk_import_profiles"] == [2, 2]
    assert profile_statuses(workspace) == [("sent", None), ("sent", None)]  # that job is forgotten
    assert all(p["properties"].get("open_return") for p in fake.profiles.values())


def test_a_cancelled_import_job_leaves_its_profiles_for_the_next_run(workspace: Workspace, fake: FakeKlaviyo) -> None:
    with workspace.store() as store:
        add_events(
            store,
            [
                return_event("return.lodged", "RET1", "lodged", order="A1", email="one@shop.test"),
                return_event("return.lodged", "RET2", "lodged", order="A2", email="two@shop.test"),
            ],
        )
    fake.import_status = "cancelled"
    first = sync(workspace, fake)
    assert (first.deferred, first.failed) == (2, {})
    fake.import_status = "complete"
    second = sync(workspace, fake)
    assert sum(v for k, v in second.sent.items() if k.startswith("profile")) == 2
    assert all(p["properties"].get("open_return") for p in fake.profiles.values())


def test_stock_of_successive_waves_reaches_the_catalog_in_order(workspace: Workspace, fake: FakeKlaviyo) -> None:
    workspace = with_wave_size(workspace, 1)
    variant = workspace.config.sync.catalog_variant_id.format(sku="SKU-1")
    fake.variants[variant] = 0
    with workspace.store() as store:
        add_events(store, [stock("SKU-1", "MAIN", 5, at=NOW - timedelta(hours=1)), stock("SKU-1", "MAIN", 3)])
    # The first wave's update is slow to answer; the second wave, sent meanwhile, must not overtake it.
    fake.catalog_delays = [0.05]
    summary = sync(workspace, fake)
    assert summary.sent == {"catalog inventory": 2}
    assert fake.variants[variant] == 3


def test_a_customer_klaviyo_does_not_know_is_looked_up_once_per_run(workspace: Workspace, fake: FakeKlaviyo) -> None:
    workspace = with_wave_size(workspace, 1)
    with workspace.store() as store:
        add_events(store, [shipment(f"S{i}", [(f"T{i}", [("SKU-1", 1)])], order=f"N{i}") for i in range(3)])
    summary = sync(workspace, fake)
    assert summary.sent == {"Fulfilled Shipment": 3}
    assert [c for c in fake.calls if c[0] == "get_profiles"] == [("get_profiles", 1)]
    assert len(fake.profiles) == 1 and len({e["profile_id"] for e in fake.events}) == 1


def test_a_run_collects_young_objects_less_often_and_restores_the_collector_after(
    workspace: Workspace, fake: FakeKlaviyo
) -> None:
    before = gc.get_threshold()
    during: list[tuple[int, int, int]] = []
    send = fake.bulk_create_events

    async def recording(events: list[Any]) -> Any:
        during.append(gc.get_threshold())
        return await send(events)

    fake.bulk_create_events = recording  # type: ignore[method-assign]
    with workspace.store() as store:
        add_events(store, [shipment("S1", [("T1", [("SKU-1", 1)])])])
    sync(workspace, fake)
    assert during and during[0][0] == RUN_YOUNG_THRESHOLD
    assert gc.get_threshold() == before


def test_empty_lists_dicts_and_nulls_are_left_out_of_event_properties_but_false_and_zero_stay(
    workspace: Workspace,
) -> None:
    [op] = Mapper(workspace.config).map(shipment("S1", [("T1", [("SKU-1", 0)])], final=False)).ops
    properties = op.payload["properties"]
    assert properties["IsFinal"] is False and properties["Parcels"][0]["Items"] == [{"SKU": "SKU-1", "Quantity": 0}]
    assert not {"PendingItems", "PendingSKUs", "Site", "TrackingGranularity"} & properties.keys()
