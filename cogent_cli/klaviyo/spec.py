"""The official Klaviyo OpenAPI spec (revision 2026-07-15), shipped with cogent.

Both the client (rate limits per operation) and the sandbox (request validation, routing) read it,
so neither can drift from Klaviyo's published contract.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache, lru_cache
from importlib import resources
from typing import Any

SPEC_FILE = "openapi-2026-07-15.json"
_WINDOW_SECONDS = {"s": 1, "m": 60, "d": 86_400}


@cache
def load_spec() -> dict[str, Any]:
    text = resources.files("cogent_cli.klaviyo").joinpath(SPEC_FILE).read_text(encoding="utf-8")
    return json.loads(text)


@dataclass(frozen=True)
class RateLimit:
    """Requests allowed per window: burst per second, steady per minute, optional daily cap."""

    burst: int
    steady: int
    daily: int | None = None

    @property
    def bucket(self) -> str:
        return f"{self.burst}/s,{self.steady}/m" + (f",{self.daily}/d" if self.daily else "")


@dataclass(frozen=True)
class Operation:
    operation_id: str
    method: str
    path: str  # templated, e.g. /api/profiles/{id}
    rate_limit: RateLimit
    scopes: tuple[str, ...]
    definition: dict[str, Any]

    @property
    def pattern(self) -> re.Pattern[str]:
        return _path_pattern(self.path)


@cache
def _path_pattern(path: str) -> re.Pattern[str]:
    return re.compile("^" + re.sub(r"\\\{[^/]+?\\\}", r"[^/]+", re.escape(path)) + "$")


def _per_window(text: str) -> int:
    count, _, unit = text.partition("/")
    if unit not in _WINDOW_SECONDS:
        raise ValueError(f"unexpected rate-limit window {text!r}")
    return int(count)


@cache
def operations() -> dict[str, Operation]:
    """Every operation of the spec by operationId."""
    found: dict[str, Operation] = {}
    for path, item in load_spec()["paths"].items():
        for method, op in item.items():
            if method not in ("get", "post", "patch", "put", "delete"):
                continue
            limits = op.get("x-klaviyo-ratelimit", {})
            found[op["operationId"]] = Operation(
                operation_id=op["operationId"],
                method=method.upper(),
                path=path,
                rate_limit=RateLimit(
                    burst=_per_window(limits.get("burst", "1/s")),
                    steady=_per_window(limits.get("steady", "15/m")),
                    daily=_per_window(limits["daily"]) if "daily" in limits else None,
                ),
                scopes=tuple(op.get("x-klaviyo-scopes", ())),
                definition=op,
            )
    return found


def operation(operation_id: str) -> Operation:
    return operations()[operation_id]


# Every request the sandbox serves is routed through here; concrete paths repeat a lot.
@lru_cache(maxsize=4096)
def match_operation(method: str, path: str) -> Operation | None:
    """The operation a concrete request path belongs to, preferring literal over templated paths."""
    candidates = [op for op in operations().values() if op.method == method.upper() and op.pattern.match(path)]
    candidates.sort(key=lambda op: op.path.count("{"))
    return candidates[0] if candidates else None
