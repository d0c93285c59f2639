"""Test doubles for the Klaviyo client: a fake clock and a scripted HTTP transport."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterable
from typing import Any

import httpx

from cogent_cli.klaviyo.client import KlaviyoClient
from cogent_cli.klaviyo.ratelimit import RetryPolicy

API_KEY = "pk_test_0123456789abcdef0123456789abcdef"


class FakeClock:
    """Time that only moves when someone sleeps: limiter and retry tests run instantly."""

    def __init__(self, start: float = 1_000.0) -> None:
        self.time = start
        self.sleeps: list[float] = []

    def now(self) -> float:
        return self.time

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.time += max(0.0, seconds)
        await asyncio.sleep(0)  # let other tasks run, as a real sleep would


Reply = httpx.Response | Exception | Callable[[httpx.Request], httpx.Response]


class ScriptedTransport(httpx.MockTransport):
    """Answers requests from a script (responses or exceptions, in order), then with `default`."""

    def __init__(self, script: Iterable[Reply] = (), default: Reply | None = None) -> None:
        self.script = list(script)
        self.default = default if default is not None else httpx.Response(202)
        self.requests: list[httpx.Request] = []
        super().__init__(self._handle)

    def _handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        reply = self.script.pop(0) if self.script else self.default
        if isinstance(reply, Exception):
            raise reply
        if callable(reply):
            return reply(request)
        return reply

    def bodies(self) -> list[Any]:
        return [json.loads(r.content) for r in self.requests if r.content]


def make_client(transport: httpx.AsyncBaseTransport, clock: FakeClock | None = None, **kwargs: Any) -> KlaviyoClient:
    return KlaviyoClient(
        API_KEY,
        transport=transport,
        clock=clock or FakeClock(),
        seed=1,
        retry=kwargs.pop("retry", RetryPolicy()),
        **kwargs,
    )


def errors_body(status: int, code: str, detail: str, **extra: Any) -> dict[str, Any]:
    return {"errors": [{"id": "e1", "status": status, "code": code, "title": "Error.", "detail": detail, **extra}]}
