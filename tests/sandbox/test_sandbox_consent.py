"""Consent rules of klaviyo.md section 8: subscribe / unsubscribe jobs, historical imports, suppressions."""

from __future__ import annotations

from typing import Any

import httpx


def _subscribe(profiles: list[dict[str, Any]], *, historical: bool | None = None, list_id: str | None = None) -> dict:
    attributes: dict[str, Any] = {
        "custom_source": "Returns portal",
        "profiles": {"data": [{"type": "profile", "attributes": p} for p in profiles]},
    }
    if historical is not None:
        attributes["historical_import"] = historical
    body: dict[str, Any] = {"data": {"type": "profile-subscription-bulk-create-job", "attributes": attributes}}
    if list_id:
        body["data"]["relationships"] = {"list": {"data": {"type": "list", "id": list_id}}}
    return body


def _unsubscribe(profiles: list[dict[str, Any]], list_id: str | None = None) -> dict:
    body: dict[str, Any] = {
        "data": {
            "type": "profile-subscription-bulk-delete-job",
            "attributes": {"profiles": {"data": [{"type": "profile", "attributes": p} for p in profiles]}},
        }
    }
    if list_id:
        body["data"]["relationships"] = {"list": {"data": {"type": "list", "id": list_id}}}
    return body


def _suppression(kind: str, emails: list[str]) -> dict:
    return {
        "data": {
            "type": f"profile-suppression-bulk-{kind}-job",
            "attributes": {"profiles": {"data": [{"type": "profile", "attributes": {"email": e}} for e in emails]}},
        }
    }


def _email_marketing(api: httpx.Client, email: str) -> dict:
    response = api.get(
        "/api/profiles", params={"filter": f'equals(email,"{email}")', "additional-fields[profile]": "subscriptions"}
    )
    [profile] = response.json()["data"]
    return profile["attributes"]["subscriptions"]


EMAIL_SUBSCRIBED = {"email": {"marketing": {"consent": "SUBSCRIBED"}}}


def test_subscribe_answers_202_and_consent_reads_back(api: httpx.Client) -> None:
    response = api.post(
        "/api/profile-subscription-bulk-create-jobs",
        json=_subscribe([{"email": "a@example.com", "subscriptions": EMAIL_SUBSCRIBED}]),
    )

    assert response.status_code == 202
    assert response.content == b""
    marketing = _email_marketing(api, "a@example.com")["email"]["marketing"]
    assert marketing["consent"] == "SUBSCRIBED"
    assert marketing["can_receive_email_marketing"] is True
    assert marketing["custom_method_detail"] == "Returns portal"


def test_historical_import_keeps_the_given_consent_time(api: httpx.Client) -> None:
    subscriptions = {"email": {"marketing": {"consent": "SUBSCRIBED", "consented_at": "2024-01-02T10:00:00+00:00"}}}

    response = api.post(
        "/api/profile-subscription-bulk-create-jobs",
        json=_subscribe([{"email": "a@example.com", "subscriptions": subscriptions}], historical=True),
    )

    assert response.status_code == 202
    marketing = _email_marketing(api, "a@example.com")["email"]["marketing"]
    assert marketing["consent_timestamp"] == "2024-01-02T10:00:00+00:00"


def test_historical_import_without_consented_at_is_400(api: httpx.Client) -> None:
    response = api.post(
        "/api/profile-subscription-bulk-create-jobs",
        json=_subscribe([{"email": "a@example.com", "subscriptions": EMAIL_SUBSCRIBED}], historical=True),
    )

    assert response.status_code == 400
    pointer = response.json()["errors"][0]["source"]["pointer"]
    assert pointer == "/data/attributes/profiles/data/0/attributes/subscriptions/email/marketing/consented_at"


def test_consented_at_without_historical_import_is_400(api: httpx.Client) -> None:
    subscriptions = {"email": {"marketing": {"consent": "SUBSCRIBED", "consented_at": "2024-01-02T10:00:00+00:00"}}}

    response = api.post(
        "/api/profile-subscription-bulk-create-jobs",
        json=_subscribe([{"email": "a@example.com", "subscriptions": subscriptions}]),
    )

    assert response.status_code == 400


def test_consented_at_in_the_future_is_400(api: httpx.Client) -> None:
    subscriptions = {"email": {"marketing": {"consent": "SUBSCRIBED", "consented_at": "2099-01-02T10:00:00+00:00"}}}

    response = api.post(
        "/api/profile-subscription-bulk-create-jobs",
        json=_subscribe([{"email": "a@example.com", "subscriptions": subscriptions}], historical=True),
    )

    assert response.status_code == 400


def test_sms_consent_needs_a_phone_number(api: httpx.Client) -> None:
    subscriptions = {"sms": {"marketing": {"consent": "SUBSCRIBED"}}}

    response = api.post(
        "/api/profile-subscription-bulk-create-jobs",
        json=_subscribe([{"email": "a@example.com", "subscriptions": subscriptions}]),
    )

    assert response.status_code == 400
    assert (
        response.json()["errors"][0]["source"]["pointer"] == "/data/attributes/profiles/data/0/attributes/phone_number"
    )


def test_subscribe_consent_value_other_than_subscribed_fails_the_spec(api: httpx.Client) -> None:
    subscriptions = {"email": {"marketing": {"consent": "UNSUBSCRIBED"}}}

    response = api.post(
        "/api/profile-subscription-bulk-create-jobs",
        json=_subscribe([{"email": "a@example.com", "subscriptions": subscriptions}]),
    )

    assert response.status_code == 400
    assert response.json()["errors"][0]["source"]["pointer"].endswith("/subscriptions/email/marketing/consent")


def test_unsubscribe_outside_a_list_is_global_and_suppresses(api: httpx.Client) -> None:
    api.post(
        "/api/profile-subscription-bulk-create-jobs",
        json=_subscribe([{"email": "a@example.com", "subscriptions": EMAIL_SUBSCRIBED}]),
    )

    response = api.post(
        "/api/profile-subscription-bulk-delete-jobs",
        json=_unsubscribe(
            [{"email": "a@example.com", "subscriptions": {"email": {"marketing": {"consent": "UNSUBSCRIBED"}}}}]
        ),
    )

    assert response.status_code == 202
    marketing = _email_marketing(api, "a@example.com")["email"]["marketing"]
    assert marketing["consent"] == "UNSUBSCRIBED"
    assert marketing["can_receive_email_marketing"] is False
    assert [s["reason"] for s in marketing["suppression"]] == ["UNSUBSCRIBE"]


def test_unsubscribe_of_a_list_member_only_leaves_that_list(api: httpx.Client) -> None:
    api.post(
        "/api/profile-subscription-bulk-create-jobs",
        json=_subscribe([{"email": "a@example.com", "subscriptions": EMAIL_SUBSCRIBED}], list_id="NEWS"),
    )

    api.post(
        "/api/profile-subscription-bulk-delete-jobs",
        json=_unsubscribe(
            [{"email": "a@example.com", "subscriptions": {"email": {"marketing": {"consent": "UNSUBSCRIBED"}}}}],
            list_id="NEWS",
        ),
    )

    marketing = _email_marketing(api, "a@example.com")["email"]["marketing"]
    assert marketing["consent"] == "SUBSCRIBED"
    assert [(s["list_id"], s["reason"]) for s in marketing["list_suppressions"]] == [("NEWS", "UNSUBSCRIBE")]


def test_unsubscribe_over_100_profiles_is_refused(api: httpx.Client) -> None:
    rows = [
        {"email": f"p{i}@example.com", "subscriptions": {"email": {"marketing": {"consent": "UNSUBSCRIBED"}}}}
        for i in range(101)
    ]

    assert api.post("/api/profile-subscription-bulk-delete-jobs", json=_unsubscribe(rows)).status_code == 400


def test_suppress_blocks_email_marketing_and_unsuppress_lifts_only_user_suppression(api: httpx.Client) -> None:
    response = api.post(
        "/api/profile-suppression-bulk-create-jobs", json=_suppression("create", ["a@example.com", "b@example.com"])
    )

    assert response.status_code == 202
    job = response.json()["data"]
    assert (job["type"], job["attributes"]["total_count"]) == ("profile-suppression-bulk-create-job", 2)
    status = api.get(f"/api/profile-suppression-bulk-create-jobs/{job['id']}").json()["data"]["attributes"]
    assert (status["status"], status["completed_count"]) == ("complete", 2)
    marketing = _email_marketing(api, "a@example.com")["email"]["marketing"]
    assert marketing["can_receive_email_marketing"] is False
    assert [s["reason"] for s in marketing["suppression"]] == ["USER_SUPPRESSED"]

    # b also unsubscribes, so after unsuppressing it must stay suppressed for UNSUBSCRIBE.
    api.post(
        "/api/profile-subscription-bulk-delete-jobs",
        json=_unsubscribe(
            [{"email": "b@example.com", "subscriptions": {"email": {"marketing": {"consent": "UNSUBSCRIBED"}}}}]
        ),
    )
    lifted = api.post(
        "/api/profile-suppression-bulk-delete-jobs", json=_suppression("delete", ["a@example.com", "b@example.com"])
    )

    assert lifted.status_code == 202
    assert _email_marketing(api, "a@example.com")["email"]["marketing"]["can_receive_email_marketing"] is True
    b = _email_marketing(api, "b@example.com")["email"]["marketing"]
    assert [s["reason"] for s in b["suppression"]] == ["UNSUBSCRIBE"]


def test_subscribing_lifts_unsubscribe_and_user_suppression(api: httpx.Client) -> None:
    api.post("/api/profile-suppression-bulk-create-jobs", json=_suppression("create", ["a@example.com"]))

    api.post(
        "/api/profile-subscription-bulk-create-jobs",
        json=_subscribe([{"email": "a@example.com", "subscriptions": EMAIL_SUBSCRIBED}]),
    )

    marketing = _email_marketing(api, "a@example.com")["email"]["marketing"]
    assert marketing["suppression"] == []
    assert marketing["can_receive_email_marketing"] is True


def test_suppression_filter_finds_suppressed_profiles(api: httpx.Client) -> None:
    api.post("/api/profile-suppression-bulk-create-jobs", json=_suppression("create", ["a@example.com"]))
    api.post("/api/profiles", json={"data": {"type": "profile", "attributes": {"email": "b@example.com"}}})

    response = api.get(
        "/api/profiles", params={"filter": 'equals(subscriptions.email.marketing.suppression.reason,"USER_SUPPRESSED")'}
    )

    assert [p["attributes"]["email"] for p in response.json()["data"]] == ["a@example.com"]
