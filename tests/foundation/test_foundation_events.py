"""The normalised event model: validation, round trips of the reference examples, derived ids."""

from __future__ import annotations

import copy
import json
import uuid
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from cogent_cli.events import (
    EVENT_NAMESPACE,
    EVENT_TYPES,
    Money,
    Source,
    derive_event_id,
    dump_event,
    make_event,
    parse_event,
)


@pytest.fixture
def examples(reference: Path) -> list[dict]:
    return json.loads((reference / "normalised-event-examples.json").read_text())


def example_of(examples: list[dict], event_type: str) -> dict:
    return copy.deepcopy(next(e for e in examples if e["event_type"] == event_type))


def errors_of(payload: dict) -> list[tuple[str, str]]:
    with pytest.raises(ValidationError) as caught:
        parse_event(payload)
    return [(".".join(map(str, e["loc"])), e["type"]) for e in caught.value.errors()]


def test_the_model_has_the_twelve_event_types_of_the_reference_schema(reference: Path):
    schema = json.loads((reference / "normalised-event-model.schema.json").read_text())
    assert sorted(EVENT_TYPES) == sorted(schema["properties"]["event_type"]["enum"])
    assert len(EVENT_TYPES) == 12


def test_every_reference_example_parses_and_dumps_back_identically(examples: list[dict]):
    assert len(examples) >= 8
    for example in examples:
        event = parse_event(example)
        assert dump_event(event) == example, example["event_type"]
        assert dump_event(parse_event(json.dumps(example))) == example


def test_parsed_examples_carry_decimal_money_and_utc_times(examples: list[dict]):
    refund = parse_event(example_of(examples, "refund.processed"))

    assert isinstance(refund.data.total.amount, Decimal)
    assert refund.occurred_at.tzinfo == UTC


@pytest.mark.parametrize("currency", ["GPB", "gbp", "£", "EURO", ""])
def test_a_bad_currency_is_rejected(examples: list[dict], currency: str):
    payload = example_of(examples, "refund.processed")
    payload["data"]["total"]["currency"] = currency

    assert errors_of(payload)[0][0] == "refund.processed.data.total.currency"


def test_money_keeps_its_exact_decimal_amount():
    money = Money(amount="19.90", currency="GBP")

    assert money.amount == Decimal("19.90")
    assert money.model_dump(mode="json") == {"amount": "19.90", "currency": "GBP"}


def test_a_naive_datetime_is_rejected(examples: list[dict]):
    payload = example_of(examples, "shipment.despatched")
    payload["occurred_at"] = "2017-07-03T05:03:00"

    assert errors_of(payload) == [("shipment.despatched.occurred_at", "timezone_aware")]


def test_an_offset_datetime_is_stored_and_written_as_utc(examples: list[dict]):
    payload = example_of(examples, "shipment.despatched")
    payload["occurred_at"] = "2017-07-03T15:03:00+10:00"

    event = parse_event(payload)

    assert event.occurred_at == datetime(2017, 7, 3, 5, 3, tzinfo=UTC)
    assert dump_event(event)["occurred_at"] == "2017-07-03T05:03:00Z"


def test_a_negative_quantity_is_rejected(examples: list[dict]):
    payload = example_of(examples, "shipment.despatched")
    payload["data"]["parcels"][0]["items"][0]["quantity"] = -1

    assert errors_of(payload) == [("shipment.despatched.data.parcels.0.items.0.quantity", "greater_than_equal")]


def test_an_unknown_event_type_is_rejected(examples: list[dict]):
    payload = example_of(examples, "order.placed")
    payload["event_type"] = "order.teleported"

    assert errors_of(payload) == [("", "union_tag_invalid")]


@pytest.mark.parametrize(
    ("remove", "location"),
    [
        (("data",), "shipment.despatched.data"),
        (("data", "shipment_id"), "shipment.despatched.data.shipment_id"),
        (("source", "dedupe_key"), "shipment.despatched.source.dedupe_key"),
        (("occurred_at",), "shipment.despatched.occurred_at"),
    ],
)
def test_missing_required_fields_are_rejected(examples: list[dict], remove: tuple[str, ...], location: str):
    payload = example_of(examples, "shipment.despatched")
    parent = payload
    for key in remove[:-1]:
        parent = parent[key]
    del parent[remove[-1]]

    assert errors_of(payload) == [(location, "missing")]


def test_a_shipment_needs_at_least_one_parcel_and_unknown_fields_are_refused(examples: list[dict]):
    payload = example_of(examples, "shipment.despatched")
    payload["data"]["parcels"] = []
    payload["data"]["parcel_count"] = 0

    assert sorted(errors_of(payload)) == [
        ("shipment.despatched.data.parcel_count", "extra_forbidden"),
        ("shipment.despatched.data.parcels", "too_short"),
    ]


def test_derived_event_ids_are_deterministic_uuid5_per_system_tenant_and_key():
    first = derive_event_id("peoplevox", "myclientid", "456|1234567890")

    assert first == derive_event_id("peoplevox", "myclientid", "456|1234567890")
    assert uuid.UUID(first).version == 5
    # Pinned: these ids become Klaviyo unique_ids, so a change would re-send every fact.
    assert first == "2a3c2b5c-72f8-5d80-9fee-43dd70129264"
    assert first == str(uuid.uuid5(EVENT_NAMESPACE, "peoplevox|myclientid|456|1234567890"))
    assert (
        len(
            {
                first,
                derive_event_id("peoplevox", "otherclient", "456|1234567890"),
                derive_event_id("clarus", "myclientid", "456|1234567890"),
                derive_event_id("peoplevox", "myclientid", "456|1234567891"),
            }
        )
        == 4
    )


def test_make_event_derives_the_id_so_a_replayed_fact_gets_the_same_one():
    source = Source(system="swap", tenant="store_123abc", transport="webhook", dedupe_key="returnCreated|ret_abc")
    data = {"return_id": "ret_abc", "status": "lodged", "lines": [{"sku": "TSHIRT-M-BLK", "quantity": 1}]}
    when = datetime(2024, 1, 10, 9, 12, tzinfo=timezone(timedelta(hours=1)))

    first = make_event("return.lodged", source=source, occurred_at=when, data=data)
    replayed = make_event("return.lodged", source=source, occurred_at=when, data=data)

    assert first.event_id == replayed.event_id == derive_event_id("swap", "store_123abc", "returnCreated|ret_abc")
    assert dump_event(first)["occurred_at"] == "2024-01-10T08:12:00Z"


@given(
    system=st.sampled_from(["peoplevox", "clarus", "scend", "swap", "marketplacer"]),
    tenant=st.text(min_size=1, max_size=20),
    key=st.text(min_size=1, max_size=60),
    amount=st.decimals(allow_nan=False, allow_infinity=False, places=2, min_value=-(10**9), max_value=10**9),
)
def test_any_refund_round_trips_through_json(system: str, tenant: str, key: str, amount: Decimal):
    source = Source(system=system, tenant=tenant, transport="backfill", dedupe_key=key)
    money = {"amount": str(amount), "currency": "AUD"}
    event = make_event(
        "refund.processed",
        source=source,
        occurred_at=datetime(2025, 5, 1, tzinfo=UTC),
        data={"refund_id": "r1", "total": money, "lines": [{"sku": "S", "quantity": 1, "amount": money}]},
    )

    again = parse_event(json.dumps(dump_event(event)))

    assert again == event
    assert again.event_id == derive_event_id(system, tenant, key)


@given(system=st.text(max_size=12), tenant=st.text(max_size=20), key=st.text(max_size=60))
def test_event_id_is_the_uuid5_of_system_tenant_and_dedupe_key(system: str, tenant: str, key: str):
    assert derive_event_id(system, tenant, key) == str(uuid.uuid5(EVENT_NAMESPACE, f"{system}|{tenant}|{key}"))


@given(when=st.datetimes(min_value=datetime(1000, 1, 1), timezones=st.just(UTC)))
def test_event_times_are_written_as_utc_with_microseconds_only_when_present(when: datetime):
    pattern = "%Y-%m-%dT%H:%M:%S.%fZ" if when.microsecond else "%Y-%m-%dT%H:%M:%SZ"
    event = make_event(
        "order.cancelled",
        source=Source(system="scend", tenant="t", transport="file", dedupe_key="k"),
        occurred_at=when,
        received_at=when,
        data={"scope": "full"},
    )

    assert dump_event(event)["occurred_at"] == when.strftime(pattern)
    assert parse_event(event.model_dump_json(exclude_unset=True)) == event
