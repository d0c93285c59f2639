"""Klaviyo's rate limiting as the sandbox enforces it: per operation, fixed windows of one second (burst),
one minute (steady) and, where the spec sets one, one day; the first full window answers 429.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from cogent_cli.klaviyo.spec import RateLimit

Clock = Callable[[], float]


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    limit: int  # of the steady window, as Klaviyo reports it in RateLimit-Limit
    remaining: int
    reset: int  # seconds until the steady window starts afresh
    retry_after: int  # seconds until every full window has reset (only when refused)


def scaled(limit: int, scale: float) -> int:
    return max(1, math.floor(limit * scale))


class RateLimiter:
    """Fixed-window counters per (operation, window); `rate_scale` multiplies every limit."""

    def __init__(self, rate_scale: float = 1.0, clock: Clock = time.time) -> None:
        if rate_scale <= 0:
            raise ValueError("rate_scale must be positive")
        self.rate_scale = rate_scale
        self.clock = clock
        self._counts: dict[tuple[str, int], tuple[int, int]] = {}
        self._lock = threading.Lock()

    def windows(self, limit: RateLimit) -> list[tuple[int, int]]:
        """(window seconds, allowed requests) for an operation's limit after scaling."""
        found = [(1, scaled(limit.burst, self.rate_scale)), (60, scaled(limit.steady, self.rate_scale))]
        if limit.daily:
            found.append((86_400, scaled(limit.daily, self.rate_scale)))
        return found

    def hit(self, bucket: str, limit: RateLimit) -> Verdict:
        """Count one request against the bucket, unless a window is already full."""
        now = self.clock()
        with self._lock:
            state = []
            for seconds, allowed in self.windows(limit):
                index = math.floor(now / seconds)
                window_index, used = self._counts.get((bucket, seconds), (index, 0))
                if window_index != index:
                    used = 0
                state.append((seconds, allowed, index, used))
            full = [(seconds, index) for seconds, allowed, index, used in state if used >= allowed]
            steady_seconds, steady_allowed, steady_index, steady_used = state[1]
            steady_reset = max(1, math.ceil((steady_index + 1) * steady_seconds - now))
            if full:
                retry = max(math.ceil((index + 1) * seconds - now) for seconds, index in full)
                return Verdict(False, steady_allowed, 0, steady_reset, max(1, retry))
            for seconds, _allowed, index, used in state:
                self._counts[(bucket, seconds)] = (index, used + 1)
            return Verdict(True, steady_allowed, steady_allowed - steady_used - 1, steady_reset, 0)
