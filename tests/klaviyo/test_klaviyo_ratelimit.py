"""The client-side limiter keeps both of Klaviyo's windows, driven by a fake clock (no sleeping)."""

from __future__ import annotations

import asyncio
import random

import pytest
from klaviyo_fakes import FakeClock

from cogent_cli.klaviyo.ratelimit import BucketLimiter, RateLimiter, RetryPolicy
from cogent_cli.klaviyo.spec import RateLimit, operation

pytestmark = pytest.mark.anyio


def sends_per_window(times: list[float], start: float, seconds: float) -> int:
    return max(sum(1 for t in times if s <= t < s + seconds) for s in times if s >= start)


def test_limits_come_from_the_spec_per_operation(clock: FakeClock) -> None:
    limiter = RateLimiter(clock)
    assert (limiter.bucket("create_event").burst, limiter.bucket("create_event").steady) == (350, 3500)
    assert (limiter.bucket("bulk_create_events").burst, limiter.bucket("bulk_create_events").steady) == (10, 150)
    assert limiter.bucket("get_profiles").rate == operation("get_profiles").rate_limit
    assert limiter.bucket("create_event") is limiter.bucket("create_event")


def test_burst_window_allows_burst_then_waits_a_second(clock: FakeClock) -> None:
    bucket = RateLimiter(clock).bucket("bulk_create_events")
    slots = [bucket.reserve() for _ in range(11)]
    assert slots[:10] == [clock.now()] * 10
    assert slots[10] == pytest.approx(clock.now() + 1.02)


def test_steady_window_caps_a_minute_at_the_steady_limit(clock: FakeClock) -> None:
    bucket = RateLimiter(clock).bucket("bulk_create_events")
    start = clock.now()
    slots = [bucket.reserve() for _ in range(400)]
    assert sends_per_window(slots, start, 1.0) <= 10
    assert sends_per_window(slots, start, 60.0) <= 150
    assert slots[150] >= start + 60


def test_sustained_pace_is_close_to_the_steady_ceiling(clock: FakeClock) -> None:
    bucket = RateLimiter(clock).bucket("bulk_create_events")
    start = clock.now()
    slots = [bucket.reserve() for _ in range(1351)]
    # 1350 requests fill nine steady windows; the 1351st opens the tenth.
    achieved_per_minute = 1350 / ((slots[1350] - start) / 60)
    assert 0.95 * 150 <= achieved_per_minute <= 150


def test_buckets_are_independent(clock: FakeClock) -> None:
    limiter = RateLimiter(clock)
    for _ in range(10):
        limiter.bucket("bulk_create_events").reserve()
    assert limiter.bucket("create_event").reserve() == clock.now()
    assert limiter.bucket("bulk_create_events").reserve() > clock.now()


def test_daily_cap_is_a_third_window(clock: FakeClock) -> None:
    bucket = BucketLimiter("capped", RateLimit(burst=1, steady=15, daily=30), clock)
    slots = [bucket.reserve() for _ in range(31)]
    assert slots[30] >= clock.now() + 86_400


def test_rate_scale_multiplies_every_window(clock: FakeClock) -> None:
    bucket = RateLimiter(clock, scale=10).bucket("bulk_create_events")
    assert (bucket.burst, bucket.steady) == (100, 1500)


async def test_acquire_sleeps_until_the_slot_without_real_time(clock: FakeClock) -> None:
    bucket = BucketLimiter("b", RateLimit(burst=2, steady=100), clock)
    start = clock.now()
    for _ in range(5):
        await bucket.acquire()
    assert clock.now() - start == pytest.approx(2 * 1.02)


async def test_a_pause_from_a_429_defers_requests_already_waiting(clock: FakeClock) -> None:
    bucket = BucketLimiter("b", RateLimit(burst=1, steady=100), clock)
    await bucket.acquire()
    start = clock.now()
    waiting = asyncio.ensure_future(bucket.acquire())
    await asyncio.sleep(0)  # the waiter has its slot (start + 1.02) and sleeps
    bucket.pause_until(start + 30)
    await waiting
    assert clock.now() >= start + 30


def test_headers_rescale_to_the_servers_steady_limit(clock: FakeClock) -> None:
    bucket = RateLimiter(clock).bucket("bulk_create_events")
    bucket.observe("1500, 1500;w=60", "1200", "30")
    assert (bucket.burst, bucket.steady) == (100, 1500)
    bucket.observe("nonsense", None, None)
    assert bucket.steady == 1500


def test_zero_remaining_pauses_until_reset(clock: FakeClock) -> None:
    bucket = RateLimiter(clock).bucket("create_event")
    bucket.observe("3500", "0", "12")
    assert bucket.reserve() == clock.now() + 12


def test_backoff_grows_is_jittered_and_capped() -> None:
    policy = RetryPolicy(base_delay=0.5, multiplier=2, max_delay=10)
    rng = random.Random(3)
    delays = [[policy.backoff(n, rng) for n in range(1, 9)] for _ in range(50)]
    for run in delays:
        for n, delay in enumerate(run, start=1):
            nominal = min(10, 0.5 * 2 ** (n - 1))
            assert 0.5 * nominal <= delay <= min(10, 1.5 * nominal)
    assert len({round(run[2], 6) for run in delays}) > 10


def test_throttle_delay_waits_at_least_retry_after_plus_a_little() -> None:
    policy = RetryPolicy()
    rng = random.Random(1)
    waits = [policy.throttle_delay(5, rng) for _ in range(100)]
    assert all(5 <= w <= 6 for w in waits)
    assert len(set(waits)) > 50
