"""Events and metrics as Klaviyo treats them: 202 without a body, dedupe, bulk all-or-nothing, read-back."""

from __future__ import annotations

import json
from urllib.parse import parse_qs, urlparse

import httpx
import pytest

from cogent_cli.sandbox import Sandbox
from cogent_cli.sandbox.store import INSERT_CHUNK


def test_create_event_answers_202_without_body_and_stores_it(api: httpx.Client, sandbox: Sandbox, events) -> None:
    response = api.post("/api/events", json=events(value=29.98, value_currency="USD"))

    assert response.status_code == 202
    assert response.content == b""
    [row] = list(sandbox.db["events"].rows)
    assert (row["metric_name"], row["unique_id"], row["value"], row["value_currency"]) == (
        "Placed Order",
        "order-1",
        29.98,
        "USD",
    )
    assert row["time"] == "2026-07-20T12:00:00+00:00"


@pytest.mark.parametrize(
    "sent",
    [
        "2026-07-20T12:00:00+00:00",
        "2026-07-20T12:00:00Z",
        "2026-07-20T14:00:00+02:00",
        "2026-07-20T12:00:00.750+00:00",
        "2026-07-20T07:00:00-05:00",
    ],
)
def test_event_time_is_stored_in_utc_to_the_second_whatever_form_it_is_sent_in(
    api: httpx.Client, sandbox: Sandbox, events, sent: str
) -> None:
    assert api.post("/api/events", json=events(time=sent)).status_code == 202

    [row] = list(sandbox.db["events"].rows)
    assert (row["time"], row["timestamp"]) == ("2026-07-20T12:00:00+00:00", 1784548800)


def test_repeated_unique_id_for_same_profile_and_metric_is_dropped_with_the_same_silent_202(
    api: httpx.Client, sandbox: Sandbox, events
) -> None:
    first = api.post("/api/events", json=events(properties={"attempt": 1}))
    second = api.post("/api/events", json=events(properties={"attempt": 2}))

    assert (first.status_code, second.status_code) == (202, 202)
    assert second.content == b""
    [row] = list(sandbox.db["events"].rows)
    assert json.loads(row["properties"]) == {"attempt": 1}


def test_same_unique_id_under_another_metric_or_profile_is_a_new_event(
    api: httpx.Client, sandbox: Sandbox, events
) -> None:
    api.post("/api/events", json=events("Placed Order", "order-1"))
    api.post("/api/events", json=events("Fulfilled Order", "order-1"))
    api.post("/api/events", json=events("Placed Order", "order-1", profile={"email": "other@example.com"}))

    assert sandbox.db["events"].count == 3


def test_event_without_unique_id_is_deduplicated_on_its_time_to_the_second(
    api: httpx.Client, sandbox: Sandbox, events
) -> None:
    api.post("/api/events", json=events(unique_id=None, time="2026-07-20T12:00:00.100+00:00"))
    api.post("/api/events", json=events(unique_id=None, time="2026-07-20T12:00:00.900+00:00"))
    api.post("/api/events", json=events(unique_id=None, time="2026-07-20T12:00:01+00:00"))

    assert sandbox.db["events"].count == 2


def test_metric_is_created_by_name_on_first_event_and_listed(api: httpx.Client, events) -> None:
    assert api.get("/api/metrics").json()["data"] == []

    api.post("/api/events", json=events("Partially Shipped Order", "a"))
    api.post("/api/events", json=events("Partially Shipped Order", "b"))
    metrics = api.get("/api/metrics").json()["data"]

    assert [m["attributes"]["name"] for m in metrics] == ["Partially Shipped Order"]
    assert metrics[0]["type"] == "metric"
    one = api.get(f"/api/metrics/{metrics[0]['id']}").json()["data"]
    assert one["attributes"]["name"] == "Partially Shipped Order"


def test_bulk_create_stores_every_event_and_creates_profiles(
    api: httpx.Client, sandbox: Sandbox, bulk, bulk_entry
) -> None:
    body = bulk(
        [
            ({"email": "a@example.com"}, [bulk_entry("Placed Order", "o-1"), bulk_entry("Ordered Product", "o-1:l1")]),
            ({"phone_number": "+15005550006"}, [bulk_entry("Placed Order", "o-2")]),
        ]
    )

    response = api.post("/api/event-bulk-create-jobs", json=body)

    assert response.status_code == 202
    assert response.content == b""
    assert sandbox.db["events"].count == 3
    assert sandbox.db["profiles"].count == 2


def test_bulk_request_creating_more_profiles_than_one_insert_holds_stores_each(
    api: httpx.Client, sandbox: Sandbox, bulk, bulk_entry
) -> None:
    count = INSERT_CHUNK + 1
    body = bulk([({"email": f"c{n}@example.com"}, [bulk_entry("Placed Order", f"o-{n}")]) for n in range(count)])

    assert api.post("/api/event-bulk-create-jobs", json=body).status_code == 202

    emails = {row["id"]: row["email"] for row in sandbox.db["profiles"].rows}
    assert len(emails) == count
    assert {emails[row["profile_id"]] for row in sandbox.db["events"].rows} == {
        f"c{n}@example.com" for n in range(count)
    }
    assert all(f"c{row['unique_id'][2:]}@example.com" == emails[row["profile_id"]] for row in sandbox.db["events"].rows)
    # Sent again, every profile is found by its email and every event is a duplicate.
    assert api.post("/api/event-bulk-create-jobs", json=body).status_code == 202
    assert sandbox.db["profiles"].count == count
    assert sandbox.db["events"].count == count


def test_bulk_request_finds_profiles_by_external_ids_that_read_as_numbers(
    api: httpx.Client, sandbox: Sandbox, bulk, bulk_entry
) -> None:
    first = bulk([({"external_id": "00123"}, [bulk_entry("Placed Order", "o-1")])])
    again = bulk(
        [
            ({"external_id": "00123"}, [bulk_entry("Placed Order", "o-2")]),
            ({"external_id": "123"}, [bulk_entry("Placed Order", "o-3")]),
        ]
    )

    assert api.post("/api/event-bulk-create-jobs", json=first).status_code == 202
    assert api.post("/api/event-bulk-create-jobs", json=again).status_code == 202

    assert sorted(row["external_id"] for row in sandbox.db["profiles"].rows) == ["00123", "123"]
    owners = {row["unique_id"]: row["profile_id"] for row in sandbox.db["events"].rows}
    assert owners["o-1"] == owners["o-2"] != owners["o-3"]


def test_bulk_request_resolves_its_profiles_in_order_as_one_by_one_requests_would(
    api: httpx.Client, sandbox: Sandbox, bulk, bulk_entry
) -> None:
    api.post(
        "/api/event-bulk-create-jobs", json=bulk([({"email": "known@example.com"}, [bulk_entry("Viewed", "v-0")])])
    )
    body = bulk(
        [
            ({"email": "a@example.com"}, [bulk_entry("Placed Order", "o-1")]),
            # The email is the profile just created: it gains the phone number.
            ({"email": "A@Example.com", "phone_number": "+15005550006"}, [bulk_entry("Placed Order", "o-2")]),
            ({"phone_number": "+15005550006"}, [bulk_entry("Placed Order", "o-3")]),
            ({"email": "KNOWN@example.com"}, [bulk_entry("Placed Order", "o-4")]),
            ({"email": "b@example.com", "first_name": "Bo"}, [bulk_entry("Placed Order", "o-5")]),
        ]
    )

    assert api.post("/api/event-bulk-create-jobs", json=body).status_code == 202

    profiles = {row["email"]: row for row in sandbox.db["profiles"].rows}
    assert set(profiles) == {"known@example.com", "a@example.com", "b@example.com"}
    assert profiles["a@example.com"]["phone_number"] == "+15005550006"
    assert profiles["b@example.com"]["first_name"] == "Bo"
    owners = {row["unique_id"]: row["profile_id"] for row in sandbox.db["events"].rows}
    assert owners["o-1"] == owners["o-2"] == owners["o-3"] == profiles["a@example.com"]["id"]
    assert owners["o-4"] == owners["v-0"] == profiles["known@example.com"]["id"]
    assert owners["o-5"] == profiles["b@example.com"]["id"]
    profile = api.get(f"/api/profiles/{profiles['a@example.com']['id']}").json()["data"]
    assert profile["attributes"]["last_event_date"] == "2026-07-20T12:00:00+00:00"


def test_bulk_request_with_a_repeated_unique_id_is_rejected_whole(
    api: httpx.Client, sandbox: Sandbox, bulk, bulk_entry
) -> None:
    body = bulk(
        [
            ({"email": "a@example.com"}, [bulk_entry("Placed Order", "o-1")]),
            ({"email": "b@example.com"}, [bulk_entry("Placed Order", "o-2")]),
            ({"email": "A@Example.com"}, [bulk_entry("Placed Order", "o-1")]),
        ]
    )

    response = api.post("/api/event-bulk-create-jobs", json=body)

    assert response.status_code == 400
    [error] = response.json()["errors"]
    assert error["code"] == "invalid"
    assert (
        error["source"]["pointer"]
        == "/data/attributes/events-bulk-create/data/2/attributes/events/data/0/attributes/unique_id"
    )
    assert "no events were processed" in error["detail"]
    assert sandbox.db["events"].count == 0
    assert sandbox.db["profiles"].count == 0


def test_bulk_unique_id_repeat_is_judged_per_profile(api: httpx.Client, sandbox: Sandbox, bulk, bulk_entry) -> None:
    # o-1 for a and for b is fine; b's second o-1 repeats b's, not a's.
    body = bulk(
        [
            ({"email": "a@example.com"}, [bulk_entry("Placed Order", "o-1")]),
            ({"email": "b@example.com"}, [bulk_entry("Placed Order", "o-1"), bulk_entry("Placed Order", "o-2")]),
            ({"email": "c@example.com"}, [bulk_entry("Placed Order", "o-1")]),
            ({"email": "B@example.com"}, [bulk_entry("Placed Order", "o-1")]),
        ]
    )

    response = api.post("/api/event-bulk-create-jobs", json=body)

    assert response.status_code == 400
    [error] = response.json()["errors"]
    base = "/data/attributes/events-bulk-create/data"
    assert error["source"]["pointer"] == f"{base}/3/attributes/events/data/0/attributes/unique_id"
    assert f"first at {base}/1/attributes/events/data/0/attributes/unique_id" in error["detail"]
    assert sandbox.db["events"].count == 0

    del body["data"]["attributes"]["events-bulk-create"]["data"][3]
    assert api.post("/api/event-bulk-create-jobs", json=body).status_code == 202
    assert sandbox.db["events"].count == 4


def test_bulk_request_with_an_invalid_event_writes_nothing(
    api: httpx.Client, sandbox: Sandbox, bulk, bulk_entry
) -> None:
    body = bulk(
        [
            ({"email": "a@example.com"}, [bulk_entry("Placed Order", "o-1")]),
            ({"email": "b@example.com"}, [bulk_entry("Placed Order", "o-2", time="1989-12-31T00:00:00+00:00")]),
        ]
    )

    response = api.post("/api/event-bulk-create-jobs", json=body)

    assert response.status_code == 400
    assert response.json()["errors"][0]["source"]["pointer"].endswith(
        "/data/1/attributes/events/data/0/attributes/time"
    )
    assert sandbox.db["events"].count == 0


def test_bulk_request_over_1000_events_is_refused(api: httpx.Client, bulk, bulk_entry) -> None:
    body = bulk([({"email": "a@example.com"}, [bulk_entry("Placed Order", f"o-{i}") for i in range(1001)])])

    response = api.post("/api/event-bulk-create-jobs", json=body)

    assert response.status_code == 400
    assert "at most 1000" in response.json()["errors"][0]["detail"]


def test_event_time_more_than_a_year_ahead_is_invalid(api: httpx.Client, events) -> None:
    response = api.post("/api/events", json=events(time="2099-01-01T00:00:00+00:00"))

    assert response.status_code == 400
    assert response.json()["errors"][0]["source"]["pointer"] == "/data/attributes/time"


def test_get_events_filters_by_metric_and_datetime_window(api: httpx.Client, events) -> None:
    for day in (1, 2, 3, 4):
        api.post("/api/events", json=events("Placed Order", f"p{day}", time=f"2026-07-0{day}T10:00:00+00:00"))
    api.post("/api/events", json=events("Refunded Order", "r1", time="2026-07-02T10:00:00+00:00"))
    metric_id = next(
        m["id"] for m in api.get("/api/metrics").json()["data"] if m["attributes"]["name"] == "Placed Order"
    )

    flt = f'and(equals(metric_id,"{metric_id}"),greater-or-equal(datetime,2026-07-02T00:00:00Z)),less-than(datetime,2026-07-04T00:00:00Z)'
    data = api.get("/api/events", params={"filter": flt}).json()["data"]

    assert [e["attributes"]["event_properties"]["$event_id"] for e in data] == ["p2", "p3"]
    assert {e["relationships"]["metric"]["data"]["id"] for e in data} == {metric_id}
    assert data[0]["attributes"]["datetime"] == "2026-07-02T10:00:00+00:00"
    assert data[0]["attributes"]["timestamp"] == 1782986400


def test_get_events_pages_with_links_next_until_the_last_page(api: httpx.Client, events) -> None:
    for i in range(7):
        api.post("/api/events", json=events(unique_id=f"e{i}", time=f"2026-07-01T10:00:0{i}+00:00"))

    seen, url, pages = [], "/api/events?page[size]=3&sort=-datetime", 0
    while url:
        body = api.get(url).json()
        seen += [e["attributes"]["event_properties"]["$event_id"] for e in body["data"]]
        url = body["links"].get("next")
        pages += 1

    assert seen == [f"e{i}" for i in range(6, -1, -1)]
    assert pages == 3


def test_get_events_includes_metric_and_profile_on_request(api: httpx.Client, events) -> None:
    api.post("/api/events", json=events())

    body = api.get("/api/events", params={"include": "metric,profile"}).json()

    assert sorted(item["type"] for item in body["included"]) == ["metric", "profile"]


def test_event_page_size_above_the_spec_maximum_is_refused(api: httpx.Client) -> None:
    response = api.get("/api/events", params={"page[size]": 1001})

    assert response.status_code == 400
    assert response.json()["errors"][0]["source"] == {"parameter": "page[size]"}


def test_tampered_page_cursor_is_a_400_on_page_cursor(api: httpx.Client) -> None:
    response = api.get("/api/events", params={"page[cursor]": "not-a-cursor"})

    assert response.status_code == 400
    assert response.json()["errors"][0]["source"] == {"parameter": "page[cursor]"}


def test_links_next_keeps_the_filter(api: httpx.Client, events) -> None:
    for i in range(3):
        api.post("/api/events", json=events("Placed Order", f"x{i}", time=f"2026-07-01T10:00:0{i}+00:00"))
    metric_id = api.get("/api/metrics").json()["data"][0]["id"]

    body = api.get("/api/events", params={"filter": f'equals(metric_id,"{metric_id}")', "page[size]": 2}).json()

    query = parse_qs(urlparse(body["links"]["next"]).query)
    assert query["filter"] == [f'equals(metric_id,"{metric_id}")']
    assert "page[cursor]" in query


@pytest.mark.parametrize(
    ("identifier", "value", "detail"),
    [
        ("email", "not-an-email", "Invalid email address: 'not-an-email'."),
        ("email", "  ", "Invalid email address: ''."),
        ("phone_number", "07700 900123", "Invalid phone number format"),
        ("external_id", "", "'external_id' must not be empty."),
    ],
)
def test_bulk_request_with_an_invalid_profile_identifier_points_at_it_and_writes_nothing(
    api: httpx.Client, sandbox: Sandbox, bulk, bulk_entry, identifier: str, value: str, detail: str
) -> None:
    body = bulk(
        [
            ({"email": "a@example.com"}, [bulk_entry("Placed Order", "o-1")]),
            ({identifier: value}, [bulk_entry("Placed Order", "o-2")]),
        ]
    )

    response = api.post("/api/event-bulk-create-jobs", json=body)

    assert response.status_code == 400
    [error] = response.json()["errors"]
    assert (
        error["source"]["pointer"]
        == f"/data/attributes/events-bulk-create/data/1/attributes/profile/data/attributes/{identifier}"
    )
    assert error["detail"].startswith(detail)
    assert sandbox.db["events"].count == 0
    assert sandbox.db["profiles"].count == 0
