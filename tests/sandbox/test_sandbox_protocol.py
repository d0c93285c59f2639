"""What every request goes through: auth, revision, routing, spec validation, RateLimit headers."""

from __future__ import annotations

import logging

import httpx
import pytest

from cogent_cli.sandbox import Sandbox


def test_missing_api_key_is_401_in_klaviyo_format(headers: dict[str, str], sandbox: Sandbox, events) -> None:
    headers = {k: v for k, v in headers.items() if k != "Authorization"}

    response = httpx.post(f"{sandbox.base_url}/api/events", json=events(), headers=headers)

    assert response.status_code == 401
    [error] = response.json()["errors"]
    assert set(error) >= {"id", "status", "code", "title", "detail", "source"}
    assert error["code"] == "not_authenticated"
    assert sandbox.db["events"].count == 0


def test_bearer_token_instead_of_klaviyo_api_key_is_401(headers: dict[str, str], sandbox: Sandbox) -> None:
    headers = {**headers, "Authorization": "Bearer pk_123"}

    assert httpx.get(f"{sandbox.base_url}/api/metrics", headers=headers).status_code == 401


def test_missing_revision_header_is_400_naming_the_parameter(headers: dict[str, str], sandbox: Sandbox) -> None:
    headers = {k: v for k, v in headers.items() if k != "revision"}

    response = httpx.get(f"{sandbox.base_url}/api/metrics", headers=headers)

    assert response.status_code == 400
    assert response.json()["errors"][0]["source"] == {"parameter": "revision"}


@pytest.mark.parametrize("revision", ["2026-13", "2027-01-15", "latest"])
def test_malformed_or_future_revision_is_400(headers: dict[str, str], sandbox: Sandbox, revision: str) -> None:
    response = httpx.get(f"{sandbox.base_url}/api/metrics", headers={**headers, "revision": revision})

    assert response.status_code == 400


def test_older_revision_is_accepted(headers: dict[str, str], sandbox: Sandbox) -> None:
    response = httpx.get(f"{sandbox.base_url}/api/metrics", headers={**headers, "revision": "2024-10-15"})

    assert response.status_code == 200


def test_api_key_never_reaches_the_log_or_the_data(
    headers: dict[str, str], sandbox: Sandbox, events, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "pk_live_do_not_store_me_123"
    caplog.set_level(logging.DEBUG)

    httpx.post(
        f"{sandbox.base_url}/api/events",
        json=events(),
        headers={**headers, "Authorization": f"Klaviyo-API-Key {secret}"},
    )

    assert sandbox.db["events"].count == 1
    assert secret not in caplog.text
    assert secret.encode() not in (sandbox.data_dir / "klaviyo.db").read_bytes()


def test_body_breaking_the_spec_is_400_with_pointers_to_each_field(api: httpx.Client, sandbox: Sandbox, events) -> None:
    body = events()
    attributes = body["data"]["attributes"]
    attributes["uniqueId"] = attributes.pop("unique_id")
    del attributes["metric"]
    attributes["value"] = "29.98"

    response = api.post("/api/events", json=body)

    assert response.status_code == 400
    errors = response.json()["errors"]
    assert {e["source"]["pointer"] for e in errors} == {
        "/data/attributes/metric",
        "/data/attributes/uniqueId",
        "/data/attributes/value",
    }
    by_pointer = {e["source"]["pointer"]: e for e in errors}
    assert (
        by_pointer["/data/attributes/uniqueId"]["detail"] == "'uniqueId' is not a valid field for the resource 'event'."
    )
    assert all(e["code"] == "invalid" and e["status"] == 400 for e in errors)
    assert sandbox.db["events"].count == 0


def test_wrong_resource_type_is_400_at_data_type(api: httpx.Client, events) -> None:
    body = events()
    body["data"]["type"] = "events"

    response = api.post("/api/events", json=body)

    assert response.status_code == 400
    assert response.json()["errors"][0]["source"]["pointer"] == "/data/type"


def test_bad_datetime_format_is_400(api: httpx.Client, events) -> None:
    response = api.post("/api/events", json=events(time="20/07/2026 12:00"))

    assert response.status_code == 400
    assert response.json()["errors"][0]["source"]["pointer"] == "/data/attributes/time"


def test_null_is_accepted_where_the_spec_says_nullable(api: httpx.Client, events) -> None:
    assert api.post("/api/events", json=events(value=None, value_currency=None, backfill=None)).status_code == 202


def test_body_that_is_not_json_is_400(api: httpx.Client) -> None:
    response = api.post("/api/events", content=b"{not json")

    assert response.status_code == 400
    assert response.json()["errors"][0]["source"]["pointer"] == "/"


def test_wrong_content_type_is_415(api: httpx.Client) -> None:
    response = api.post("/api/events", content=b"a=b", headers={"Content-Type": "application/x-www-form-urlencoded"})

    assert response.status_code == 415


def test_plain_application_json_is_accepted(api: httpx.Client, events) -> None:
    assert api.post("/api/events", json=events(), headers={"Content-Type": "application/json"}).status_code == 202


def test_unknown_endpoint_is_404_and_wrong_method_is_405(api: httpx.Client) -> None:
    assert api.get("/api/no-such-thing").status_code == 404
    assert api.delete("/api/events").status_code == 405


def test_spec_operation_the_sandbox_does_not_implement_is_501(api: httpx.Client) -> None:
    response = api.get("/api/campaigns", params={"filter": 'equals(messages.channel,"email")'})

    assert response.status_code == 501
    assert "get_campaigns" in response.json()["errors"][0]["detail"]


def test_undeclared_query_parameter_is_400(api: httpx.Client) -> None:
    response = api.get("/api/profiles", params={"pagesize": 5})

    assert response.status_code == 400
    assert response.json()["errors"][0]["source"] == {"parameter": "pagesize"}


def test_additional_fields_value_outside_the_spec_enum_is_400(api: httpx.Client) -> None:
    assert api.get("/api/profiles", params={"additional-fields[profile]": "subscription"}).status_code == 400


def test_success_carries_steady_window_ratelimit_headers(api: httpx.Client, events) -> None:
    first = api.post("/api/events", json=events(unique_id="a"))
    second = api.post("/api/events", json=events(unique_id="b"))

    assert first.headers["RateLimit-Limit"] == "3500"
    assert int(second.headers["RateLimit-Remaining"]) == int(first.headers["RateLimit-Remaining"]) - 1
    assert 1 <= int(first.headers["RateLimit-Reset"]) <= 60


def test_inspection_endpoints_need_no_key(api: httpx.Client, sandbox: Sandbox, events) -> None:
    api.post("/api/events", json=events())

    listed = httpx.get(f"{sandbox.base_url}/sandbox/events").json()
    stats = httpx.get(f"{sandbox.base_url}/sandbox/stats").json()
    profiles = httpx.get(f"{sandbox.base_url}/sandbox/profiles", params={"search": "sarah"}).json()

    assert [(e["metric"], e["email"], e["unique_id"]) for e in listed] == [
        ("Placed Order", "sarah@example.com", "order-1")
    ]
    assert stats["counts"]["events"] == 1
    assert stats["requests"]["status.202"] == 1
    assert [p["events"] for p in profiles] == [1]
