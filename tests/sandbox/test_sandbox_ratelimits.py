"""Rate limits from the spec's x-klaviyo-ratelimit: burst and steady windows, 429 + Retry-After, --rate-scale."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from cogent_cli.klaviyo.spec import RateLimit
from cogent_cli.sandbox import run_sandbox
from cogent_cli.sandbox.ratelimit import RateLimiter


class FakeClock:
    def __init__(self, start: float = 1_000_040.0) -> None:  # 20 s into a minute
        self.now = start

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def _client(
    tmp_path: Path, clock: FakeClock, headers: dict[str, str], rate_scale: float = 1.0
) -> Iterator[httpx.Client]:
    with (
        run_sandbox(tmp_path / "rl", rate_scale=rate_scale, clock=clock) as sandbox,
        httpx.Client(base_url=sandbox.base_url, headers=headers) as client,
    ):
        yield client


@pytest.fixture
def metrics_api(tmp_path: Path, clock: FakeClock, headers: dict[str, str]) -> Iterator[httpx.Client]:
    yield from _client(tmp_path, clock, headers)


def test_burst_window_answers_429_with_retry_after_and_throttled_body(metrics_api: httpx.Client) -> None:
    # get_metrics: 10/s burst, 150/m steady in the spec.
    statuses = [metrics_api.get("/api/metrics").status_code for _ in range(10)]
    throttled = metrics_api.get("/api/metrics")

    assert statuses == [200] * 10
    assert throttled.status_code == 429
    assert throttled.headers["Retry-After"] == "1"
    assert "RateLimit-Remaining" not in throttled.headers
    [error] = throttled.json()["errors"]
    assert (error["code"], error["title"]) == ("throttled", "Request was throttled.")
    assert error["detail"] == "Request was throttled. Expected available in 1 second."


def test_next_second_opens_the_burst_window_again(metrics_api: httpx.Client, clock: FakeClock) -> None:
    for _ in range(11):
        metrics_api.get("/api/metrics")

    clock.now += 1

    assert metrics_api.get("/api/metrics").status_code == 200


def test_steady_window_limits_a_minute_and_retry_after_points_at_its_end(
    metrics_api: httpx.Client, clock: FakeClock
) -> None:
    allowed = 0
    for _ in range(16):  # 16 seconds x 10 requests > 150 per minute
        for _ in range(10):
            allowed += metrics_api.get("/api/metrics").status_code == 200
        clock.now += 1
    throttled = metrics_api.get("/api/metrics")

    assert allowed == 150
    assert throttled.status_code == 429
    assert throttled.headers["Retry-After"] == "24"  # clock is at 36 s into the minute


def test_limits_are_per_operation(metrics_api: httpx.Client) -> None:
    for _ in range(11):
        metrics_api.get("/api/metrics")

    assert metrics_api.get("/api/profiles").status_code == 200


def test_rate_scale_multiplies_every_limit(tmp_path: Path, clock: FakeClock, headers: dict[str, str]) -> None:
    for client in _client(tmp_path, clock, headers, rate_scale=0.3):
        statuses = [client.get("/api/metrics").status_code for _ in range(4)]
        limit = client.get("/api/profiles").headers["RateLimit-Limit"]

    assert statuses == [200, 200, 200, 429]  # 10/s x 0.3
    assert limit == "225"  # 750/m x 0.3


def test_scaled_limits_never_fall_below_one_request() -> None:
    limiter = RateLimiter(rate_scale=0.001, clock=lambda: 0.0)

    assert limiter.windows(RateLimit(burst=1, steady=15, daily=30)) == [(1, 1), (60, 1), (86_400, 1)]


def test_throttled_requests_do_not_use_up_the_window() -> None:
    clock = FakeClock()
    limiter = RateLimiter(clock=clock)
    limit = RateLimit(burst=2, steady=3)

    verdicts = [limiter.hit("op", limit).allowed for _ in range(5)]
    clock.now += 1
    later = limiter.hit("op", limit)

    assert verdicts == [True, True, False, False, False]
    assert later.allowed and later.remaining == 0


def test_non_positive_rate_scale_is_refused() -> None:
    with pytest.raises(ValueError):
        RateLimiter(rate_scale=0)
