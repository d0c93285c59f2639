"""Client behaviour under failure: retries, typed errors, pagination, batching, secrets."""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from klaviyo_fakes import API_KEY, FakeClock, ScriptedTransport, errors_body, make_client

from cogent_cli.errors import ExitStatus
from cogent_cli.klaviyo.client import (
    MAX_REQUEST_BYTES,
    KlaviyoClient,
    _event_batches,
    encode_body,
    encode_plain,
    import_batches,
    plan_event_batches,
)
from cogent_cli.klaviyo.errors import (
    AuthError,
    BulkDeliveryError,
    DuplicateProfileError,
    KlaviyoError,
    KlaviyoNotFoundError,
    KlaviyoValidationError,
    ScopeError,
    ThrottledError,
    TransientError,
)
from cogent_cli.klaviyo.filters import ProfileFilter
from cogent_cli.klaviyo.models import (
    EventIn,
    PatchProperties,
    ProfileIn,
    SubscriptionIn,
    UnsubscriptionIn,
    VariantInventory,
    iso,
    json_number,
    jsonable,
)
from cogent_cli.klaviyo.ratelimit import RetryPolicy
from cogent_cli.logs import setup_logging

pytestmark = pytest.mark.anyio

EVENT = EventIn(metric="Placed Order", email="ada@example.org", unique_id="order-1", properties={"OrderId": "1"})


def throttled(retry_after: str = "2") -> httpx.Response:
    body = errors_body(429, "throttled", "Request was throttled. Expected available in 2 seconds.")
    return httpx.Response(429, json=body, headers={"Retry-After": retry_after})


def profile_response(status: int = 200) -> httpx.Response:
    return httpx.Response(
        status, json={"data": {"type": "profile", "id": "01P", "attributes": {"email": "ada@example.org"}}}
    )


async def test_requests_carry_key_revision_and_json_api_headers(clock: FakeClock) -> None:
    transport = ScriptedTransport()
    async with make_client(transport, clock) as klaviyo:
        await klaviyo.create_event(EVENT)
    request = transport.requests[0]
    assert request.headers["Authorization"] == f"Klaviyo-API-Key {API_KEY}"
    assert request.headers["revision"] == "2026-07-15"
    assert request.headers["Content-Type"] == "application/vnd.api+json"
    assert request.headers["Accept"] == "application/vnd.api+json"


async def test_429_storm_waits_retry_after_each_time_then_succeeds(clock: FakeClock) -> None:
    transport = ScriptedTransport([throttled("2"), throttled("3"), throttled("1")])
    async with make_client(transport, clock) as klaviyo:
        await klaviyo.create_event(EVENT)
    assert len(transport.requests) == 4
    waits = [s for s in clock.sleeps if s >= 1]
    assert [round(w) for w in waits[:3]] == [2, 3, 1] or all(w >= 1 for w in waits)
    assert 2 <= clock.sleeps[0] <= 3.0
    stats = klaviyo.stats.operations["create_event"]
    assert (stats.requests, stats.throttled, stats.retries, stats.failures) == (4, 3, 3, 0)


async def test_429_pauses_the_operation_for_every_request_until_retry_after(clock: FakeClock) -> None:
    transport = ScriptedTransport([throttled("30")])
    async with make_client(transport, clock) as klaviyo:
        start = clock.now()
        await klaviyo.create_event(EVENT)
        bucket = klaviyo.limiter.bucket("create_event")
        assert bucket.reserve() >= start + 30


async def test_throttled_error_after_the_allowed_number_of_429s(clock: FakeClock) -> None:
    transport = ScriptedTransport(default=throttled("1"))
    async with make_client(transport, clock, retry=RetryPolicy(max_throttled_retries=2)) as klaviyo:
        with pytest.raises(ThrottledError) as caught:
            await klaviyo.create_event(EVENT)
    assert len(transport.requests) == 3
    assert caught.value.retry_after == 1
    assert caught.value.exit_status == ExitStatus.UNAVAILABLE
    assert "max_in_flight" in str(caught.value)


async def test_retry_after_beyond_the_policy_gives_up_without_waiting(clock: FakeClock) -> None:
    transport = ScriptedTransport([throttled("86400")])
    async with make_client(transport, clock) as klaviyo:
        with pytest.raises(ThrottledError):
            await klaviyo.create_event(EVENT)
    assert len(transport.requests) == 1
    assert clock.sleeps == []


async def test_5xx_is_retried_with_growing_jittered_backoff(clock: FakeClock) -> None:
    transport = ScriptedTransport([httpx.Response(503), httpx.Response(500), httpx.Response(502)])
    async with make_client(transport, clock) as klaviyo:
        await klaviyo.create_event(EVENT)
    assert len(transport.requests) == 4
    assert 0.25 <= clock.sleeps[0] <= 0.75
    assert 0.5 <= clock.sleeps[1] <= 1.5
    assert 1.0 <= clock.sleeps[2] <= 3.0
    assert klaviyo.stats.retries == 3


async def test_timeouts_and_resets_are_retried_for_events(clock: FakeClock) -> None:
    transport = ScriptedTransport(
        [
            httpx.ReadTimeout("timed out"),
            httpx.RemoteProtocolError("peer closed connection"),
            httpx.ReadError("connection reset by peer"),
        ]
    )
    async with make_client(transport, clock) as klaviyo:
        await klaviyo.bulk_create_events([EVENT])
    assert len(transport.requests) == 4


async def test_bounded_retries_give_up_with_transient_error(clock: FakeClock) -> None:
    transport = ScriptedTransport(default=httpx.Response(503, json=errors_body(503, "error", "Service unavailable")))
    async with make_client(transport, clock, retry=RetryPolicy(max_retries=3)) as klaviyo:
        with pytest.raises(TransientError) as caught:
            await klaviyo.create_event(EVENT)
    assert len(transport.requests) == 4
    assert caught.value.maybe_applied is True
    assert caught.value.exit_status == ExitStatus.UNAVAILABLE
    assert "after 4 attempts" in caught.value.message
    assert caught.value.errors[0].detail == "Service unavailable"
    assert sum(clock.sleeps) <= 3 * RetryPolicy().max_delay


async def test_create_profile_is_not_resent_after_an_ambiguous_timeout(clock: FakeClock) -> None:
    transport = ScriptedTransport([httpx.ReadTimeout("timed out")], default=profile_response(201))
    async with make_client(transport, clock) as klaviyo:
        with pytest.raises(TransientError) as caught:
            await klaviyo.create_profile(ProfileIn(email="ada@example.org"))
    assert len(transport.requests) == 1
    assert caught.value.maybe_applied is True
    assert "not resent" in caught.value.message


async def test_non_idempotent_call_that_may_have_arrived_earlier_is_not_resent_later(clock: FakeClock) -> None:
    transport = ScriptedTransport(
        [httpx.ConnectError("refused"), httpx.ReadError("reset")], default=profile_response(201)
    )
    async with make_client(transport, clock) as klaviyo:
        with pytest.raises(TransientError) as caught:
            await klaviyo.merge_profiles("01DEST", "01SOURCE")
    assert len(transport.requests) == 2
    assert caught.value.maybe_applied is True


async def test_connect_failure_is_retried_even_for_non_idempotent_calls(clock: FakeClock) -> None:
    transport = ScriptedTransport([httpx.ConnectError("refused")], default=profile_response(201))
    async with make_client(transport, clock) as klaviyo:
        profile = await klaviyo.create_profile(ProfileIn(email="ada@example.org"))
    assert profile.id == "01P"
    assert len(transport.requests) == 2


async def test_event_without_unique_id_or_time_is_not_resent_after_5xx(clock: FakeClock) -> None:
    transport = ScriptedTransport([httpx.Response(500)])
    async with make_client(transport, clock) as klaviyo:
        with pytest.raises(TransientError):
            await klaviyo.create_event(EventIn(metric="Viewed", email="ada@example.org"))
        await klaviyo.create_event(EventIn(metric="Viewed", email="ada@example.org", time=datetime.now(UTC)))
    assert len(transport.requests) == 2


async def test_profile_append_is_not_resent_after_5xx_but_plain_update_is(clock: FakeClock) -> None:
    appending = ProfileIn(patch_properties=PatchProperties(append={"skus": "TENT"}))
    transport = ScriptedTransport([httpx.Response(500), httpx.Response(500)], default=profile_response())
    async with make_client(transport, clock) as klaviyo:
        with pytest.raises(TransientError):
            await klaviyo.update_profile("01P", appending)
        await klaviyo.update_profile("01P", ProfileIn(first_name="Ada"))
    assert len(transport.requests) == 3


async def test_401_raises_auth_error_that_says_how_to_fix_it(clock: FakeClock) -> None:
    body = errors_body(401, "not_authenticated", "Incorrect authentication credentials.")
    transport = ScriptedTransport([httpx.Response(401, json=body)])
    async with make_client(transport, clock) as klaviyo:
        with pytest.raises(AuthError) as caught:
            await klaviyo.create_event(EVENT)
    assert len(transport.requests) == 1
    assert caught.value.exit_status == ExitStatus.AUTH
    assert "cogent auth set klaviyo" in str(caught.value)


async def test_403_names_the_scopes_the_operation_needs(clock: FakeClock) -> None:
    body = errors_body(403, "permission_denied", "You do not have permission to perform this action.")
    transport = ScriptedTransport([httpx.Response(403, json=body)])
    async with make_client(transport, clock) as klaviyo:
        with pytest.raises(ScopeError) as caught:
            await klaviyo.subscribe_profiles([SubscriptionIn(email="ada@example.org")])
    assert caught.value.scopes == ("lists:write", "profiles:write", "subscriptions:write")
    assert "subscriptions:write" in caught.value.message
    assert "Settings > API keys" in str(caught.value)


async def test_409_duplicate_profile_carries_the_existing_profile_id(clock: FakeClock) -> None:
    body = errors_body(
        409,
        "duplicate_profile",
        "A profile already exists with one of these identifiers.",
        source={"pointer": "/data/attributes"},
        meta={"duplicate_profile_id": "01EXISTING"},
    )
    transport = ScriptedTransport([httpx.Response(409, json=body)])
    async with make_client(transport, clock) as klaviyo:
        with pytest.raises(DuplicateProfileError) as caught:
            await klaviyo.create_profile(ProfileIn(email="ada@example.org"))
    assert caught.value.duplicate_profile_id == "01EXISTING"
    assert caught.value.status == 409
    assert "01EXISTING" in caught.value.message
    assert "merge" in str(caught.value)


async def test_validation_error_points_at_the_bad_field(clock: FakeClock) -> None:
    body = errors_body(
        400, "invalid", "Invalid phone number format.", source={"pointer": "/data/attributes/phone_number"}
    )
    transport = ScriptedTransport([httpx.Response(400, json=body)])
    async with make_client(transport, clock) as klaviyo:
        with pytest.raises(KlaviyoValidationError) as caught:
            await klaviyo.upsert_profile(ProfileIn(email="ada@example.org"))
    error = caught.value
    assert error.pointer == "/data/attributes/phone_number"
    assert error.errors[0].code == "invalid"
    assert error.errors[0].id == "e1"
    assert "Fix the value at /data/attributes/phone_number" in str(error)


async def test_bad_query_parameter_reported_by_name(clock: FakeClock) -> None:
    body = errors_body(
        400, "invalid", "'profiless' is not an allowed include parameter.", source={"parameter": "include"}
    )
    transport = ScriptedTransport([httpx.Response(400, json=body)])
    async with make_client(transport, clock) as klaviyo:
        with pytest.raises(KlaviyoValidationError) as caught:
            await klaviyo.get_metrics().__anext__()
    assert caught.value.parameter == "include"


async def test_404_is_not_found(clock: FakeClock) -> None:
    transport = ScriptedTransport([httpx.Response(404, json=errors_body(404, "not_found", "Not found."))])
    async with make_client(transport, clock) as klaviyo:
        with pytest.raises(KlaviyoNotFoundError):
            await klaviyo.get_bulk_import_job("JOB404")


async def test_api_key_never_appears_in_errors_repr_or_logs(
    clock: FakeClock, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    setup_logging(verbosity=2)
    echoed = errors_body(400, "invalid", f"bad key {API_KEY}", source={"pointer": "/data"})
    transport = ScriptedTransport([httpx.Response(400, json=echoed)])
    client = make_client(transport, clock)
    async with client as klaviyo:
        with pytest.raises(KlaviyoError) as caught:
            await klaviyo.create_event(EVENT)
    assert API_KEY not in repr(client)
    assert API_KEY not in str(caught.value)
    assert API_KEY not in repr(caught.value.args)
    assert API_KEY not in capsys.readouterr().err
    logging.getLogger().handlers.clear()


def test_missing_key_is_an_auth_error() -> None:
    with pytest.raises(AuthError):
        KlaviyoClient("")


async def test_pagination_follows_links_next_and_streams_pages(clock: FakeClock) -> None:
    def page(ids: list[str], next_url: str | None) -> httpx.Response:
        links = {"self": "https://a.klaviyo.com/api/profiles"} | ({"next": next_url} if next_url else {})
        data = [{"type": "profile", "id": i, "attributes": {"email": f"{i}@x.com"}} for i in ids]
        return httpx.Response(200, json={"data": data, "links": links})

    transport = ScriptedTransport(
        [
            page(["1", "2"], "https://a.klaviyo.com/api/profiles?page%5Bcursor%5D=c2&page%5Bsize%5D=2"),
            page(["3"], None),
        ]
    )
    async with make_client(transport, clock) as klaviyo:
        stream = klaviyo.get_profiles(ProfileFilter(phone_number="+15005550006"), page_size=2)
        first = await stream.__anext__()
        assert (first.id, len(transport.requests)) == ("1", 1)
        rest = [p.id async for p in stream]
    assert rest == ["2", "3"]
    assert "%2B15005550006" in str(transport.requests[0].url)
    assert "page%5Bcursor%5D=c2" in str(transport.requests[1].url)
    assert klaviyo.stats.operations["get_profiles"].requests == 2


async def test_pagination_refuses_to_send_the_key_to_another_host(clock: FakeClock) -> None:
    transport = ScriptedTransport(
        [httpx.Response(200, json={"data": [], "links": {"self": "x", "next": "https://evil.example/api/metrics"}})]
    )
    async with make_client(transport, clock) as klaviyo:
        with pytest.raises(KlaviyoError, match="another host"):
            [m async for m in klaviyo.get_metrics()]
    assert len(transport.requests) == 1


def _sent_events(transport: ScriptedTransport) -> list[list[str]]:
    batches = []
    for body in transport.bodies():
        entries = body["data"]["attributes"]["events-bulk-create"]["data"]
        batches.append(
            [e["attributes"]["unique_id"] for entry in entries for e in entry["attributes"]["events"]["data"]]
        )
    return batches


def _events(count: int, **extra: Any) -> list[EventIn]:
    return [
        EventIn(metric="Placed Order", email=f"c{i % 7}@example.org", unique_id=f"u{i}", **extra) for i in range(count)
    ]


async def test_bulk_events_split_into_requests_of_at_most_1000(clock: FakeClock) -> None:
    transport = ScriptedTransport()
    async with make_client(transport, clock) as klaviyo:
        outcome = await klaviyo.bulk_create_events(_events(2500))
    assert sorted(len(b) for b in _sent_events(transport)) == [500, 1000, 1000]
    assert (outcome.requests, outcome.accepted, outcome.failures) == (3, 2500, [])


async def test_repeated_unique_id_goes_to_a_later_request(clock: FakeClock) -> None:
    events = [
        *_events(10),
        EventIn(metric="Placed Order", email="late@example.org", unique_id="u3"),
        EventIn(metric="Placed Order", email="later@example.org", unique_id="u3"),
    ]
    transport = ScriptedTransport()
    async with make_client(transport, clock) as klaviyo:
        await klaviyo.bulk_create_events(events)
    batches = _sent_events(transport)
    assert [len(b) for b in batches] == [10, 1, 1]
    assert all(len(set(b)) == len(b) for b in batches)
    first_profile = transport.bodies()[1]["data"]["attributes"]["events-bulk-create"]["data"][0]
    assert first_profile["attributes"]["profile"]["data"]["attributes"]["email"] == "late@example.org"


def test_batch_plan_keeps_every_event_exactly_once() -> None:
    events = [EventIn(metric="M", email="a@x.com", unique_id=f"u{i % 30}") for i in range(100)]
    waves = plan_event_batches(events, max_events=7)
    planned = [e for wave in waves for batch in wave for e in batch]
    assert sorted(planned, key=id) == sorted(events, key=id)
    for wave in waves:
        for batch in wave:
            assert len(batch) <= 7
            assert len({e.unique_id for e in batch}) == len(batch)


async def test_bulk_events_stay_under_5_mb_per_request(clock: FakeClock) -> None:
    bulky = {f"p{j}": "x" * 90_000 for j in range(10)}
    transport = ScriptedTransport()
    async with make_client(transport, clock) as klaviyo:
        await klaviyo.bulk_create_events(_events(12, properties=bulky))
    sizes = [len(r.content) for r in transport.requests]
    assert len(sizes) >= 3
    assert max(sizes) <= 5_000_000
    assert sum(len(b) for b in _sent_events(transport)) == 12


async def test_rejected_batch_is_reported_with_its_events_while_others_go_through(clock: FakeClock) -> None:
    rejected = errors_body(
        400, "invalid", "bad event", source={"pointer": "/data/attributes/events-bulk-create/data/0"}
    )

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(400, json=rejected) if b'"u0"' in request.content else httpx.Response(202)

    transport = ScriptedTransport(default=answer)
    async with make_client(transport, clock) as klaviyo:
        with pytest.raises(BulkDeliveryError) as caught:
            await klaviyo.bulk_create_events(_events(25), batch_size=10)
    outcome = caught.value.outcome
    assert outcome.accepted == 15
    assert [e.unique_id for e in outcome.failures[0].items][:2] == ["u0", "u1"]
    assert isinstance(outcome.failures[0].error, KlaviyoValidationError)
    assert "10 of 25 items were not accepted" in caught.value.message


async def test_auth_failure_in_a_bulk_call_stops_it(clock: FakeClock) -> None:
    transport = ScriptedTransport(default=httpx.Response(401, json=errors_body(401, "not_authenticated", "no")))
    async with make_client(transport, clock, max_in_flight=1) as klaviyo:
        with pytest.raises(AuthError):
            await klaviyo.bulk_create_events(_events(50), batch_size=10)
    assert len(transport.requests) == 1


async def test_consent_calls_split_at_klaviyo_limits(clock: FakeClock) -> None:
    transport = ScriptedTransport(
        default=lambda r: (
            httpx.Response(
                202, json={"data": {"type": "profile-suppression-bulk-create-job", "id": "J", "attributes": {}}}
            )
            if b"suppression" in r.content
            else httpx.Response(202)
        )
    )
    async with make_client(transport, clock) as klaviyo:
        await klaviyo.subscribe_profiles([SubscriptionIn(email=f"s{i}@x.com") for i in range(2001)])
        await klaviyo.unsubscribe_profiles([UnsubscriptionIn(email=f"u{i}@x.com") for i in range(250)])
        suppressed = await klaviyo.suppress_profiles([f"x{i}@x.com" for i in range(201)])
    counts: dict[str, list[int]] = {}
    for body in transport.bodies():
        counts.setdefault(body["data"]["type"], []).append(len(body["data"]["attributes"]["profiles"]["data"]))
    assert sorted(counts["profile-subscription-bulk-create-job"]) == [1, 1000, 1000]
    assert sorted(counts["profile-subscription-bulk-delete-job"]) == [50, 100, 100]
    assert sorted(counts["profile-suppression-bulk-create-job"]) == [1, 100, 100]
    assert len(suppressed.jobs) == 3


async def test_historical_import_needs_a_past_consent_time(clock: FakeClock) -> None:
    transport = ScriptedTransport()
    future = datetime.now(UTC) + timedelta(days=1)
    async with make_client(transport, clock) as klaviyo:
        with pytest.raises(KlaviyoValidationError, match="historical_import needs consented_at") as missing:
            await klaviyo.subscribe_profiles([SubscriptionIn(email="a@x.com")], historical_import=True)
        with pytest.raises(KlaviyoValidationError, match="not in the past"):
            await klaviyo.subscribe_profiles(
                [SubscriptionIn(email="a@x.com", consented_at=future)], historical_import=True
            )
        with pytest.raises(KlaviyoValidationError, match="only accepted with historical_import"):
            await klaviyo.subscribe_profiles([SubscriptionIn(email="a@x.com", consented_at=future - timedelta(days=9))])
    assert (
        missing.value.pointer
        == "/data/attributes/profiles/data/0/attributes/subscriptions/email/marketing/consented_at"
    )
    assert transport.requests == []


async def test_single_job_calls_refuse_more_than_klaviyo_accepts(clock: FakeClock) -> None:
    async with make_client(ScriptedTransport(), clock) as klaviyo:
        with pytest.raises(ValueError, match="1 to 10000 profiles"):
            await klaviyo.bulk_import_profiles([ProfileIn(email=f"{i}@x.com") for i in range(10_001)])
        with pytest.raises(ValueError, match="1 to 100 variants"):
            await klaviyo.bulk_update_catalog_variants(
                [VariantInventory(id=f"v{i}", inventory_quantity=1) for i in range(101)]
            )


async def test_import_jobs_are_cut_at_10000_profiles_and_under_the_5_mb_request_limit(clock: FakeClock) -> None:
    few = [ProfileIn(email=f"{i}@x.com") for i in range(10_001)]
    assert [len(job) for job in import_batches(few, lambda p: p)] == [10_000, 1]
    # About 8 KB each: 700 of them are over 5 MB.
    large = [ProfileIn(email=f"{i}@x.com", properties={"notes": "x" * 8_000}) for i in range(700)]
    jobs = list(import_batches(large, lambda p: p))
    assert len(jobs) == 2 and [p for job in jobs for p in job] == large
    queued = {"data": {"type": "profile-bulk-import-job", "id": "J1", "attributes": {"status": "queued"}}}
    transport = ScriptedTransport(default=httpx.Response(202, json=queued))
    async with make_client(transport, clock) as klaviyo:
        for job in jobs:
            await klaviyo.bulk_import_profiles(job, list_id="LIST1")
    sizes = [len(request.content) for request in transport.requests]
    assert len(sizes) == 2 and max(sizes) <= MAX_REQUEST_BYTES
    assert sizes[0] > MAX_REQUEST_BYTES - 10_000  # the first job is as full as the limit allows


async def test_many_requests_in_flight_but_never_more_than_max_in_flight() -> None:
    in_flight = peak = 0

    async def slow(request: httpx.Request) -> httpx.Response:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.01)
        in_flight -= 1
        return httpx.Response(202)

    async with KlaviyoClient(API_KEY, transport=httpx.MockTransport(slow), max_in_flight=8) as klaviyo:
        await asyncio.gather(*(klaviyo.create_event(e) for e in _events(60)))
    assert peak == 8


async def test_ratelimit_headers_rescale_and_pause_the_bucket(clock: FakeClock) -> None:
    transport = ScriptedTransport(
        [
            httpx.Response(
                202, headers={"RateLimit-Limit": "1500", "RateLimit-Remaining": "1499", "RateLimit-Reset": "40"}
            ),
            httpx.Response(
                202, headers={"RateLimit-Limit": "1500", "RateLimit-Remaining": "0", "RateLimit-Reset": "7"}
            ),
        ]
    )
    async with make_client(transport, clock) as klaviyo:
        await klaviyo.bulk_create_events(_events(1))
        bucket = klaviyo.limiter.bucket("bulk_create_events")
        assert (bucket.burst, bucket.steady) == (100, 1500)
        start = clock.now()
        await klaviyo.bulk_create_events(_events(1))
        await klaviyo.bulk_create_events(_events(1))
    assert clock.now() - start >= 7


async def test_stats_count_per_operation(clock: FakeClock) -> None:
    transport = ScriptedTransport([throttled("1"), httpx.Response(503)])
    async with make_client(transport, clock) as klaviyo:
        await klaviyo.create_event(EVENT)
        await klaviyo.bulk_create_events(_events(3))
    stats = klaviyo.stats.as_dict()
    assert stats["requests"] == 4
    assert stats["throttled"] == 1
    assert stats["retries"] == 2
    assert stats["operations"]["bulk_create_events"] == {"requests": 1, "throttled": 0, "retries": 0, "failures": 0}
    assert json.dumps(stats)


def test_event_properties_nested_in_plain_lists_and_dicts_still_become_json_values() -> None:
    when = datetime(2026, 7, 1, 4, 5, tzinfo=timezone(timedelta(hours=1)))
    properties = {
        "Items": [{"SKU": "A", "Price": Decimal("19.90"), "At": when}, {"SKU": "B", "Quantity": Decimal("2")}],
        "Ids": {1: ("x", "y")},
        "Plain": [1, 2.5, "z", None, True],
    }
    attributes = EventIn(metric="M", email="a@x.com", properties=properties).event_attributes()
    assert attributes["properties"] == {
        "Items": [{"SKU": "A", "Price": 19.9, "At": "2026-07-01T03:05:00+00:00"}, {"SKU": "B", "Quantity": 2}],
        "Ids": {"1": ["x", "y"]},
        "Plain": [1, 2.5, "z", None, True],
    }


@pytest.mark.parametrize(
    "properties",
    [
        {"Items": [{"SKU": "A", "Quantity": 1, "Price": 19.99}], "Gift": False, "Note": 'naïve \u2028 "q"'},
        {"Price": Decimal("19.90"), "At": datetime(2026, 7, 1, 4, 5, tzinfo=timezone(timedelta(hours=1)))},
        {"Day": datetime(2026, 7, 1).date(), "Tags": {"b"}, "Pair": ("x", 1)},
        {1: "int key", "Big": 2**70},
        {"Missing": None, "NotANumber": float("nan"), "Huge": float("inf")},
    ],
    ids=["plain", "decimal-and-time", "date-set-tuple", "int-key-and-bigint", "null-nan-infinity"],
)
def test_event_properties_encode_to_the_same_bytes_as_their_json_values(properties: dict[str, Any]) -> None:
    assert encode_plain(properties) == encode_body(jsonable(properties))
    # EventIn takes text keys only; the bulk body's pieces still equal the single body's.
    text_keys = {str(k): v for k, v in properties.items()}
    event = EventIn(
        metric="M",
        email="a@x.com",
        profile_properties=text_keys,
        properties=text_keys,
        value=Decimal("10.00"),
        time=datetime(2026, 7, 1, 4, 5, 6, 7, tzinfo=timezone(timedelta(hours=-3))),
        unique_id="u1",
    )
    [[planned]] = list(_event_batches([event], 10, 1_000_000))
    assert planned.attributes == encode_body(event.event_attributes())
    assert planned.profile == encode_body(event.profile_resource())


@given(st.floats() | st.integers(min_value=-(2**80), max_value=2**80) | st.decimals(allow_nan=False))
def test_an_amount_becomes_the_json_number_its_decimal_text_gives(amount: float | int | Decimal) -> None:
    # Encoded, so that NaN compares equal to itself.
    assert encode_body(json_number(amount)) == encode_body(jsonable(Decimal(str(amount))))


@given(
    st.datetimes(
        min_value=datetime(2, 1, 1),
        max_value=datetime(9998, 12, 31),
        timezones=st.builds(timezone, st.timedeltas(min_value=timedelta(hours=-23), max_value=timedelta(hours=23))),
    )
)
def test_times_are_written_in_utc_as_isoformat_writes_them(moment: datetime) -> None:
    assert iso(moment) == moment.astimezone(UTC).isoformat()
