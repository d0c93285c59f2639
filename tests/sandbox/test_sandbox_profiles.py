"""Profiles: identity by email / phone / external_id, 409 duplicate_profile, upsert, filters, merge, bulk import."""

from __future__ import annotations

import re
import time
from pathlib import Path

import httpx

from cogent_cli.sandbox import Sandbox, run_sandbox
from cogent_cli.sandbox.store import new_profile_id

CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def _create(api: httpx.Client, profile, **attributes) -> dict:
    response = api.post("/api/profiles", json=profile(**attributes))
    assert response.status_code == 201, response.text
    return response.json()["data"]


def test_create_profile_answers_201_with_the_resource(api: httpx.Client, profile) -> None:
    created = _create(
        api,
        profile,
        email="Sarah@Example.com",
        phone_number="+15005550006",
        first_name="Sarah",
        properties={"tier": "gold"},
    )

    assert created["type"] == "profile"
    assert len(created["id"]) == 26
    assert created["attributes"]["email"] == "sarah@example.com"
    assert created["attributes"]["phone_number"] == "+15005550006"
    assert created["attributes"]["properties"] == {"tier": "gold"}
    assert created["links"]["self"].endswith(f"/api/profiles/{created['id']}/")


def test_profile_ids_are_ulids_of_their_creation_time() -> None:
    before = int(time.time() * 1000)
    ids = [new_profile_id() for _ in range(200)]
    after = int(time.time() * 1000)

    assert all(re.fullmatch(r"[0-7][0-9A-HJKMNP-TV-Z]{25}", profile_id) for profile_id in ids)
    assert len(set(ids)) == len(ids)
    for profile_id in ids:
        millis = 0
        for digit in profile_id[:10]:
            millis = millis * 32 + CROCKFORD.index(digit)
        assert before <= millis <= after
    # The 80 random bits use the whole alphabet, not a part of it.
    assert set("".join(profile_id[10:] for profile_id in ids)) == set(CROCKFORD)


def test_create_with_an_identifier_another_profile_holds_is_409_duplicate_profile(api: httpx.Client, profile) -> None:
    existing = _create(api, profile, external_id="C-991")

    response = api.post("/api/profiles", json=profile(email="new@example.com", external_id="C-991"))

    assert response.status_code == 409
    [error] = response.json()["errors"]
    assert error["code"] == "duplicate_profile"
    assert error["meta"]["duplicate_profile_id"] == existing["id"]


def test_update_giving_a_profile_another_profiles_phone_is_409(api: httpx.Client, profile) -> None:
    holder = _create(api, profile, phone_number="+15005550006")
    other = _create(api, profile, email="other@example.com")

    body = {"data": {"type": "profile", "id": other["id"], "attributes": {"phone_number": "+15005550006"}}}
    response = api.patch(f"/api/profiles/{other['id']}", json=body)

    assert response.status_code == 409
    assert response.json()["errors"][0]["meta"]["duplicate_profile_id"] == holder["id"]


def test_update_sets_given_fields_clears_nulls_and_keeps_the_rest(api: httpx.Client, profile) -> None:
    created = _create(
        api, profile, email="a@example.com", first_name="Ann", last_name="Lee", properties={"a": 1, "b": 2}
    )

    body = {
        "data": {
            "type": "profile",
            "id": created["id"],
            "attributes": {"first_name": "Anne", "last_name": None, "properties": {"b": None, "c": 3}},
            "meta": {"patch_properties": {"append": {"skus": "92538"}}},
        }
    }
    response = api.patch(f"/api/profiles/{created['id']}", json=body)

    assert response.status_code == 200
    attributes = response.json()["data"]["attributes"]
    assert (attributes["first_name"], attributes["last_name"], attributes["email"]) == ("Anne", None, "a@example.com")
    assert attributes["properties"] == {"a": 1, "c": 3, "skus": ["92538"]}


def test_update_with_a_body_id_other_than_the_path_is_refused(api: httpx.Client, profile) -> None:
    created = _create(api, profile, email="a@example.com")

    response = api.patch(
        f"/api/profiles/{created['id']}", json={"data": {"type": "profile", "id": "01OTHER", "attributes": {}}}
    )

    assert response.status_code == 409
    assert response.json()["errors"][0]["source"]["pointer"] == "/data/id"


def test_profile_import_creates_201_then_updates_200_the_same_profile(api: httpx.Client, profile) -> None:
    first = api.post("/api/profile-import", json=profile(email="a@example.com", first_name="Ann"))
    second = api.post("/api/profile-import", json=profile(email="A@example.com", phone_number="+15005550006"))

    assert (first.status_code, second.status_code) == (201, 200)
    assert first.json()["data"]["id"] == second.json()["data"]["id"]
    assert second.json()["data"]["attributes"]["first_name"] == "Ann"
    assert second.json()["data"]["attributes"]["phone_number"] == "+15005550006"


def test_profile_import_naming_two_different_profiles_is_409(api: httpx.Client, profile) -> None:
    _create(api, profile, email="a@example.com")
    phone_holder = _create(api, profile, phone_number="+15005550006")

    response = api.post("/api/profile-import", json=profile(email="a@example.com", phone_number="+15005550006"))

    assert response.status_code == 409
    assert response.json()["errors"][0]["meta"]["duplicate_profile_id"] == phone_holder["id"]


def test_profile_import_with_unknown_id_is_404(api: httpx.Client) -> None:
    body = {"data": {"type": "profile", "id": "01NOSUCHPROFILE0000000000", "attributes": {"email": "a@example.com"}}}

    response = api.post("/api/profile-import", json=body)

    assert response.status_code == 404
    assert response.json()["errors"][0]["code"] == "not_found"


def test_invalid_phone_number_is_400_at_its_pointer(api: httpx.Client, profile) -> None:
    response = api.post("/api/profiles", json=profile(email="a@example.com", phone_number="0412 345 678"))

    assert response.status_code == 400
    assert response.json()["errors"][0]["source"]["pointer"] == "/data/attributes/phone_number"


def test_profile_without_any_identifier_is_refused(api: httpx.Client, profile) -> None:
    response = api.post("/api/profiles", json=profile(first_name="Nobody"))

    assert response.status_code == 400


def test_events_find_their_profile_by_any_identifier(api: httpx.Client, sandbox: Sandbox, events, profile) -> None:
    created = _create(api, profile, email="a@example.com", phone_number="+15005550006", external_id="C-1")

    api.post("/api/events", json=events(unique_id="1", profile={"email": "A@EXAMPLE.COM"}))
    api.post("/api/events", json=events(unique_id="2", profile={"phone_number": "+15005550006"}))
    api.post("/api/events", json=events(unique_id="3", profile={"external_id": "C-1"}))

    assert {row["profile_id"] for row in sandbox.db["events"].rows} == {created["id"]}
    assert sandbox.db["profiles"].count == 1


def test_event_never_moves_an_identifier_held_by_another_profile(
    api: httpx.Client, sandbox: Sandbox, events, profile
) -> None:
    a = _create(api, profile, email="a@example.com")
    _create(api, profile, phone_number="+15005550006")

    response = api.post("/api/events", json=events(profile={"email": "a@example.com", "phone_number": "+15005550006"}))

    assert response.status_code == 202
    assert api.get(f"/api/profiles/{a['id']}").json()["data"]["attributes"]["phone_number"] is None


def test_get_profiles_filters_by_equals_and_any(api: httpx.Client, profile) -> None:
    a = _create(api, profile, email="a@example.com")
    b = _create(api, profile, phone_number="+15005550006")
    c = _create(api, profile, external_id="C-3")

    def ids(flt: str) -> set[str]:
        response = api.get("/api/profiles", params={"filter": flt})
        assert response.status_code == 200, response.text
        return {p["id"] for p in response.json()["data"]}

    assert ids('equals(email,"A@example.com")') == {a["id"]}
    assert ids('equals(phone_number,"+15005550006")') == {b["id"]}
    assert ids("equals(external_id,'C-3')") == {c["id"]}
    assert ids(f'equals(id,"{c["id"]}")') == {c["id"]}
    assert ids('any(email,["a@example.com","zz@example.com"])') == {a["id"]}
    assert ids(f'any(id,["{a["id"]}","{b["id"]}"])') == {a["id"], b["id"]}


def test_phone_filter_works_url_encoded(api: httpx.Client, profile) -> None:
    created = _create(api, profile, phone_number="+15005550006")

    response = api.get('/api/profiles?filter=equals(phone_number,"%2B15005550006")')

    assert [p["id"] for p in response.json()["data"]] == [created["id"]]


def test_unquoted_filter_value_is_invalid_filter(api: httpx.Client) -> None:
    response = api.get("/api/profiles", params={"filter": "equals(email,me@test.com)"})

    assert response.status_code == 400
    error = response.json()["errors"][0]
    assert error["source"] == {"parameter": "filter"}
    assert error["detail"].startswith("Invalid filter provided")


def test_filter_on_a_field_or_operator_the_spec_does_not_allow_is_refused(api: httpx.Client) -> None:
    assert api.get("/api/profiles", params={"filter": 'equals(first_name,"Ann")'}).status_code == 400
    assert api.get("/api/profiles", params={"filter": 'greater-than(email,"a")'}).status_code == 400


def test_get_profiles_pages_through_links_next(api: httpx.Client, profile) -> None:
    created = {_create(api, profile, email=f"p{i}@example.com")["id"] for i in range(5)}

    seen, url = [], "/api/profiles?page[size]=2"
    while url:
        body = api.get(url).json()
        assert len(body["data"]) <= 2
        seen += [p["id"] for p in body["data"]]
        url = body["links"].get("next")

    assert sorted(seen) == sorted(created)


def test_profile_page_size_over_100_is_refused(api: httpx.Client) -> None:
    assert api.get("/api/profiles", params={"page[size]": 101}).status_code == 400


def test_subscriptions_only_when_asked_for(api: httpx.Client, profile) -> None:
    created = _create(api, profile, email="a@example.com")

    plain = api.get(f"/api/profiles/{created['id']}").json()["data"]["attributes"]
    asked = api.get(f"/api/profiles/{created['id']}", params={"additional-fields[profile]": "subscriptions"}).json()

    assert "subscriptions" not in plain
    marketing = asked["data"]["attributes"]["subscriptions"]["email"]["marketing"]
    assert marketing["consent"] == "NEVER_SUBSCRIBED"
    assert marketing["can_receive_email_marketing"] is True


def test_get_unknown_profile_is_404(api: httpx.Client) -> None:
    response = api.get("/api/profiles/01NOSUCHPROFILE0000000000")

    assert response.status_code == 404
    assert response.json()["errors"][0]["code"] == "not_found"


def test_merge_keeps_the_destination_deletes_the_source_and_moves_its_events(
    api: httpx.Client, sandbox: Sandbox, events, profile
) -> None:
    destination = _create(api, profile, email="keep@example.com")
    source = _create(api, profile, phone_number="+15005550006", first_name="Sam")
    api.post(
        "/api/events",
        json=events(unique_id="o-1", profile={"phone_number": "+15005550006"}, time="2026-07-21T08:00:00+00:00"),
    )
    api.post("/api/events", json=events(unique_id="o-2", profile={"email": "keep@example.com"}))

    body = {
        "data": {
            "type": "profile-merge",
            "id": destination["id"],
            "relationships": {"profiles": {"data": [{"type": "profile", "id": source["id"]}]}},
        }
    }
    response = api.post("/api/profile-merge", json=body)

    assert response.status_code == 201
    assert response.json()["data"]["id"] == destination["id"]
    assert api.get(f"/api/profiles/{source['id']}").status_code == 404
    kept = api.get(f"/api/profiles/{destination['id']}").json()["data"]["attributes"]
    assert (kept["email"], kept["phone_number"], kept["first_name"]) == ("keep@example.com", "+15005550006", "Sam")
    # The source's later event is now the destination's last one.
    assert kept["last_event_date"] == "2026-07-21T08:00:00+00:00"
    assert {row["profile_id"] for row in sandbox.db["events"].rows} == {destination["id"]}
    assert sandbox.db["events"].count == 2


def test_merge_of_an_unknown_source_is_404(api: httpx.Client, profile) -> None:
    destination = _create(api, profile, email="keep@example.com")
    body = {
        "data": {
            "type": "profile-merge",
            "id": destination["id"],
            "relationships": {"profiles": {"data": [{"type": "profile", "id": "01NOSUCH"}]}},
        }
    }

    assert api.post("/api/profile-merge", json=body).status_code == 404


def _import_body(profiles: list[dict], list_id: str | None = None) -> dict:
    body: dict = {
        "data": {
            "type": "profile-bulk-import-job",
            "attributes": {"profiles": {"data": [{"type": "profile", "attributes": p} for p in profiles]}},
        }
    }
    if list_id:
        body["data"]["relationships"] = {"lists": {"data": [{"type": "list", "id": list_id}]}}
    return body


def test_bulk_import_job_reports_counts_and_row_errors(api: httpx.Client, sandbox: Sandbox, profile) -> None:
    _create(api, profile, email="a@example.com")
    _create(api, profile, phone_number="+15005550006")
    rows = [
        {"email": "a@example.com", "first_name": "Ann"},
        {"email": "new@example.com", "external_id": "C-9"},
        {"email": "a@example.com", "phone_number": "+15005550006"},
    ]

    response = api.post("/api/profile-bulk-import-jobs", json=_import_body(rows, list_id="LIST1"))

    assert response.status_code == 202
    job = response.json()["data"]
    assert job["type"] == "profile-bulk-import-job"
    assert job["attributes"]["status"] == "queued"
    assert job["attributes"]["total_count"] == 3
    done = api.get(f"/api/profile-bulk-import-jobs/{job['id']}").json()["data"]["attributes"]
    assert (done["status"], done["completed_count"], done["failed_count"]) == ("complete", 2, 1)
    errors = api.get(f"/api/profile-bulk-import-jobs/{job['id']}/import-errors").json()["data"]
    assert [e["attributes"]["source"]["pointer"] for e in errors] == ["/data/attributes/profiles/data/2/attributes"]
    assert errors[0]["attributes"]["original_payload"] == rows[2]
    assert sandbox.db["profiles"].count == 3
    assert sandbox.db["list_members"].count == 2


def test_a_bulk_import_job_reads_processing_for_the_sandboxs_job_seconds(tmp_path: Path, headers, profile) -> None:
    with (
        run_sandbox(tmp_path / "sandbox", job_seconds=2.0) as sandbox,
        httpx.Client(base_url=sandbox.base_url, headers=headers, timeout=10) as api,
    ):
        created = time.monotonic()
        job = api.post("/api/profile-bulk-import-jobs", json=_import_body([{"email": "a@example.com"}])).json()["data"]
        url = f"/api/profile-bulk-import-jobs/{job['id']}"
        running = api.get(url).json()["data"]["attributes"]
        assert time.monotonic() - created < 2.0, "the machine was too slow to read the job while it ran"
        assert (running["status"], running["completed_count"], running["completed_at"]) == ("processing", 0, None)
        time.sleep(max(0.0, created + 2.1 - time.monotonic()))
        done = api.get(url).json()["data"]["attributes"]
    assert (done["status"], done["completed_count"]) == ("complete", 1)
    assert done["completed_at"] is not None


def test_bulk_import_with_one_malformed_email_imports_nothing(api: httpx.Client, sandbox: Sandbox) -> None:
    rows = [{"email": "good@example.com"}, {"email": "not-an-email"}]

    response = api.post("/api/profile-bulk-import-jobs", json=_import_body(rows))

    assert response.status_code == 400
    assert response.json()["errors"][0]["source"]["pointer"] == "/data/attributes/profiles/data/1/attributes/email"
    assert sandbox.db["profiles"].count == 0


def test_unknown_bulk_import_job_is_404(api: httpx.Client) -> None:
    assert api.get("/api/profile-bulk-import-jobs/nope").status_code == 404
