"""Client-side rate limiting and retry timing for the Klaviyo client.

Klaviyo counts requests per endpoint in two fixed windows (burst per second, steady per minute)
and answers 429 once either is spent. The limiter keeps a log of the send times it handed out per
operation and gives each request the earliest slot at which neither window would be exceeded, so a
healthy run paces itself just under the ceiling instead of bouncing off 429s. Windows are slightly
lengthened (`guard`) because the server counts arrival times, which jitter with latency.

Time comes from an injectable `Clock`, so tests drive the limiter without sleeping.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections import deque
from dataclasses import dataclass
from typing import Protocol

from cogent_cli.klaviyo.spec import RateLimit, operation

DEFAULT_GUARD = 0.02


class Clock(Protocol):
    def now(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    def now(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


@dataclass(frozen=True)
class Window:
    count: int
    seconds: float


class BucketLimiter:
    """Paces the requests of one rate-limit bucket (one Klaviyo operation)."""

    def __init__(
        self, name: str, rate: RateLimit, clock: Clock, *, scale: float = 1.0, guard: float = DEFAULT_GUARD
    ) -> None:
        self.name = name
        self.rate = rate
        self.clock = clock
        self.guard = guard
        self._log: deque[float] = deque()
        self._paused_until = 0.0
        self.windows: tuple[Window, ...] = ()
        self.rescale(scale)

    def rescale(self, scale: float) -> None:
        """Use the spec's limits multiplied by `scale` (a sandbox's --rate-scale, or a larger account)."""
        self.scale = scale
        windows = [Window(max(1, math.floor(self.rate.burst * scale + 1e-9)), 1.0)]
        windows.append(Window(max(1, math.floor(self.rate.steady * scale + 1e-9)), 60.0))
        if self.rate.daily:
            windows.append(Window(max(1, math.floor(self.rate.daily * scale + 1e-9)), 86_400.0))
        self.windows = tuple(windows)

    @property
    def burst(self) -> int:
        return self.windows[0].count

    @property
    def steady(self) -> int:
        return self.windows[1].count

    def reserve(self) -> float:
        """Claim the earliest send time allowed by every window and the server's pause; return it."""
        slot = max(self.clock.now(), self._paused_until)
        for window in self.windows:
            if len(self._log) >= window.count:
                slot = max(slot, self._log[-window.count] + window.seconds * (1 + self.guard))
        self._log.append(slot)
        keep = max(w.count for w in self.windows)
        while len(self._log) > keep:
            self._log.popleft()
        return slot

    async def acquire(self) -> None:
        """Wait until this request may be sent."""
        while True:
            delay = self.reserve() - self.clock.now()
            if delay > 0:
                await self.clock.sleep(delay)
            # A 429 that arrived while we slept moves the whole bucket back; take a new slot then.
            if self._paused_until <= self.clock.now():
                return

    def pause_until(self, moment: float) -> None:
        self._paused_until = max(self._paused_until, moment)

    def observe(self, limit: str | None, remaining: str | None, reset: str | None) -> None:
        """Adapt to the `RateLimit-*` headers of a successful response (they describe the steady window)."""
        steady_limit = _leading_int(limit)
        if steady_limit and steady_limit != self.steady:
            self.rescale(steady_limit / self.rate.steady)
        left, reset_in = _leading_int(remaining), _leading_int(reset)
        if left == 0 and reset_in is not None:
            self.pause_until(self.clock.now() + reset_in)


def _leading_int(value: str | None) -> int | None:
    """`150`, `150, 150;w=60` -> 150; None when absent or unparsable."""
    if not value:
        return None
    head = value.split(",")[0].split(";")[0].strip()
    try:
        return int(float(head))
    except ValueError:
        return None


class RateLimiter:
    """One `BucketLimiter` per operationId (Klaviyo counts per endpoint), limits from the spec."""

    def __init__(self, clock: Clock | None = None, *, scale: float = 1.0, guard: float = DEFAULT_GUARD) -> None:
        self.clock = clock or SystemClock()
        self.scale = scale
        self.guard = guard
        self._buckets: dict[str, BucketLimiter] = {}

    def bucket(self, operation_id: str) -> BucketLimiter:
        found = self._buckets.get(operation_id)
        if found is None:
            found = BucketLimiter(
                operation_id, operation(operation_id).rate_limit, self.clock, scale=self.scale, guard=self.guard
            )
            self._buckets[operation_id] = found
        return found


@dataclass(frozen=True)
class RetryPolicy:
    """How long and how often the client retries before a caller sees the failure.

    Transient failures (5xx, timeouts, resets) back off exponentially with ±50% jitter, capped at
    `max_delay`; 429s wait `Retry-After` plus a little jitter (Klaviyo: "immediate retries will
    always receive a 429"), and give up when asked to wait longer than `max_retry_after`.
    """

    max_retries: int = 5
    max_throttled_retries: int = 10
    base_delay: float = 0.5
    multiplier: float = 2.0
    max_delay: float = 30.0
    max_retry_after: float = 300.0

    def backoff(self, retry: int, rng: random.Random) -> float:
        """Delay before transient retry number `retry` (1-based)."""
        delay = min(self.max_delay, self.base_delay * self.multiplier ** (retry - 1))
        return min(self.max_delay, delay * rng.uniform(0.5, 1.5))

    def throttle_delay(self, retry_after: float, rng: random.Random) -> float:
        return retry_after + rng.uniform(0.0, min(1.0, 0.1 * retry_after + 0.1))
