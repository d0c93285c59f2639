"""Reproducible fault injection: `5xx=0.05,429=0.02,timeout=0.01,reset=0.01,seed=7`.

The n-th API request the sandbox receives meets the same fate in every run with the same spec and seed.
A timeout or a reset hits either before the request's write is applied or after it (drawn from the same
seeded sequence): a client that retries after the second kind sends the same write twice, which is what
`unique_id` deduplication has to absorb.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass, field
from typing import Literal

from cogent_cli.errors import UsageError

FaultKind = Literal["5xx", "429", "timeout", "reset"]
Phase = Literal["before", "after"]
KINDS: tuple[FaultKind, ...] = ("5xx", "429", "timeout", "reset")
SERVER_ERRORS = (500, 502, 503, 504)
DEFAULT_DELAY = 35.0  # past the client's default 30 s timeout


class FaultSpecError(UsageError):
    pass


@dataclass(frozen=True)
class FaultSpec:
    rates: dict[str, float] = field(default_factory=dict)
    seed: int = 0
    delay: float = DEFAULT_DELAY  # how long a `timeout` fault holds the response

    @property
    def total(self) -> float:
        return sum(self.rates.values())

    def __str__(self) -> str:
        parts = [f"{kind}={self.rates[kind]:g}" for kind in KINDS if self.rates.get(kind)]
        return ",".join([*parts, f"seed={self.seed}", f"delay={self.delay:g}"])


def parse_faults(text: str) -> FaultSpec:
    """Parse `KIND=FRACTION,...[,seed=N][,delay=SECONDS]`; fractions in [0, 1] summing to at most 1."""
    hint = "Write it like `5xx=0.05,429=0.02,timeout=0.01,reset=0.01,seed=7` (kinds: 5xx, 429, timeout, reset)."
    rates: dict[str, float] = {}
    seed = 0
    delay = DEFAULT_DELAY
    seen: set[str] = set()
    for part in (piece.strip() for piece in text.split(",")):
        if not part:
            continue
        key, sep, raw = part.partition("=")
        key, raw = key.strip().lower(), raw.strip()
        if not sep or not raw:
            raise FaultSpecError(f"Fault spec part '{part}' has no value.", hint)
        if key in seen:
            raise FaultSpecError(f"Fault spec names '{key}' twice.", hint)
        seen.add(key)
        try:
            if key == "seed":
                seed = int(raw)
                continue
            number = float(raw)
        except ValueError:
            raise FaultSpecError(f"Fault spec value '{raw}' for '{key}' is not a number.", hint) from None
        if key == "delay":
            if number < 0:
                raise FaultSpecError(f"Fault delay must be zero or more seconds, not {raw}.", hint)
            delay = number
        elif key in KINDS:
            if not 0 <= number <= 1:
                raise FaultSpecError(f"Fault fraction for '{key}' must be between 0 and 1, not {raw}.", hint)
            rates[key] = number
        else:
            raise FaultSpecError(f"Unknown fault kind '{key}'.", hint)
    if sum(rates.values()) > 1:
        raise FaultSpecError(f"Fault fractions add up to {sum(rates.values()):g}, more than 1.", hint)
    return FaultSpec(rates=rates, seed=seed, delay=delay)


@dataclass(frozen=True)
class Fault:
    kind: FaultKind
    phase: Phase = "before"
    status: int = 0  # for 5xx


class FaultInjector:
    """Draws each request's fate from one seeded sequence, in arrival order."""

    def __init__(self, spec: FaultSpec) -> None:
        self.spec = spec
        self._random = random.Random(spec.seed)
        self._lock = threading.Lock()

    def draw(self) -> Fault | None:
        with self._lock:
            roll, phase_roll, status_roll = self._random.random(), self._random.random(), self._random.random()
        threshold = 0.0
        for kind in KINDS:
            threshold += self.spec.rates.get(kind, 0.0)
            if roll < threshold:
                phase: Phase = "after" if kind in ("timeout", "reset") and phase_roll < 0.5 else "before"
                status = SERVER_ERRORS[int(status_roll * len(SERVER_ERRORS))] if kind == "5xx" else 0
                return Fault(kind, phase, status)
        return None
