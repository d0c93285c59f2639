"""Klaviyo client throughput: N events through the client, single create-event calls vs bulk jobs.

    python bench/klaviyo_throughput.py                      # 100,000 events, sandbox at --rate-scale 10
    python bench/klaviyo_throughput.py --events 20000 --modes bulk
    python bench/klaviyo_throughput.py --events 20000 --server mock

For each mode it prints events/minute achieved, two ceilings and the ratio to each, and the 429s:
- the steady ceiling: the steady (per-minute) window x events per request, scaled; what a long run
  can hold, and what the target (>= 90% for bulk, 429s under 1% of requests) is judged against;
- the ceiling for a run of this size: as fast as both windows allow for exactly this many requests
  (a run shorter than a minute is bounded by the burst window only, so this one is higher);
- with the sandbox in a child process, the CPU time it spent per request and how busy it was: near
  100% busy, the sandbox's speed, not the rate limit or the client, bounds the run.

`--server sandbox` (default) sends over loopback HTTP to `cogent sandbox` served by a child process,
so client and sandbox each have a core (`--server sandbox-thread` serves it in this process, as the
tests do). The sandbox validates and stores every event in SQLite, so on a small machine it, not
the rate limit, is usually the bottleneck. `--server mock` answers from an in-process transport that
only enforces Klaviyo's fixed windows (answering 429 with Retry-After like Klaviyo), which measures
how close the client's own pacing gets to the ceiling.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import multiprocessing
import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from multiprocessing.connection import Connection
from pathlib import Path

import httpx

from cogent_cli.klaviyo.client import MAX_EVENTS_PER_REQUEST, KlaviyoClient
from cogent_cli.klaviyo.models import EventIn
from cogent_cli.klaviyo.spec import match_operation, operation
from cogent_cli.sandbox.ratelimit import RateLimiter as ServerWindows
from cogent_cli.sandbox.server import STARTUP_TIMEOUT, run_sandbox, serve

API_KEY = "pk_bench_0000000000000000000000000000"
TARGET_SHARE = 0.9
MAX_THROTTLED_SHARE = 0.01


@dataclass
class Result:
    mode: str
    events: int
    seconds: float
    requests: int
    throttled: int
    sustained_ceiling: float  # events/minute the steady window allows: what a long run can hold
    run_ceiling: float | None  # events/minute if exactly this run's requests went as fast as both windows allow
    sandbox_cpu: float | None  # CPU seconds the sandbox process spent during the run (Linux only)

    @property
    def per_minute(self) -> float:
        return self.events / self.seconds * 60


def make_events(count: int) -> list[EventIn]:
    start = datetime(2026, 7, 1, tzinfo=UTC)
    return [
        EventIn(
            metric="Fulfilled Order",
            email=f"customer{i % 5000}@shop.example",
            unique_id=f"bench-{i:07d}",
            time=start + timedelta(seconds=i),
            value=49.5,
            value_currency="GBP",
            properties={"OrderId": f"SO-{i:07d}", "Carrier": "DPD"},
        )
        for i in range(count)
    ]


def limit_bound_seconds(requests: int, burst: int, steady: int) -> float:
    """Least time Klaviyo's fixed windows need for `requests` sent as early as they allow: each full
    steady window spent waits for the next minute, and within a minute each full burst window for the
    next second. 0 when every request fits in the first windows (nothing bounds such a run)."""
    full_minutes, rest = divmod(requests - 1, steady)
    return full_minutes * 60 + (rest // burst)


def mock_transport(rate_scale: float) -> httpx.MockTransport:
    windows = ServerWindows(rate_scale=rate_scale)

    def answer(request: httpx.Request) -> httpx.Response:
        op = match_operation(request.method, request.url.path)
        assert op is not None
        verdict = windows.hit(op.operation_id, op.rate_limit)
        if not verdict.allowed:
            return httpx.Response(429, headers={"Retry-After": str(verdict.retry_after)}, json={"errors": []})
        return httpx.Response(
            202,
            headers={
                "RateLimit-Limit": str(verdict.limit),
                "RateLimit-Remaining": str(verdict.remaining),
                "RateLimit-Reset": str(verdict.reset),
            },
        )

    return httpx.MockTransport(answer)


def _serve_child(data: str, rate_scale: float, ready: Connection) -> None:
    serve(Path(data), port=0, rate_scale=rate_scale, on_ready=ready.send)


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process so far, from /proc (None where there is no /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def sandbox_process(data: str, rate_scale: float) -> Iterator[tuple[str, int]]:
    """`cogent sandbox serve` on a free port in a child process; yields its base URL and process id."""
    receiver, sender = multiprocessing.Pipe(duplex=False)
    child = multiprocessing.get_context("spawn").Process(
        target=_serve_child, args=(data, rate_scale, sender), daemon=True
    )
    child.start()
    try:
        if not receiver.poll(STARTUP_TIMEOUT):
            raise SystemExit(f"the sandbox did not start within {STARTUP_TIMEOUT:g} s")
        assert child.pid is not None
        yield receiver.recv(), child.pid
    finally:
        child.terminate()  # uvicorn shuts down gracefully on SIGTERM
        child.join(STARTUP_TIMEOUT)


@contextmanager
def server(kind: str, rate_scale: float) -> Iterator[tuple[str, httpx.AsyncBaseTransport | None, int | None]]:
    """-> base URL, transport, and the process id of a sandbox in a process of its own."""
    if kind == "mock":
        yield "https://a.klaviyo.com", mock_transport(rate_scale), None
        return
    with tempfile.TemporaryDirectory() as data:
        if kind == "sandbox-thread":
            with run_sandbox(data, rate_scale=rate_scale) as sandbox:
                yield sandbox.base_url, None, None
        else:
            with sandbox_process(data, rate_scale) as (base_url, pid):
                yield base_url, None, pid


async def run_mode(mode: str, events: list[EventIn], args: argparse.Namespace) -> Result:
    operation_id = "create_event" if mode == "single" else "bulk_create_events"
    limit = operation(operation_id).rate_limit
    burst, steady = math.floor(limit.burst * args.rate_scale), math.floor(limit.steady * args.rate_scale)
    per_request = 1 if mode == "single" else args.batch_size
    in_flight = args.max_in_flight if mode == "single" else args.bulk_max_in_flight
    with server(args.server, args.rate_scale) as (base_url, transport, pid):
        async with KlaviyoClient(
            API_KEY,
            base_url=base_url,
            transport=transport,
            max_in_flight=in_flight,
            rate_scale=args.rate_scale,
        ) as klaviyo:
            started, sandbox_started = time.perf_counter(), cpu_seconds(pid) if pid else None
            if mode == "single":
                queue = iter(events)

                async def worker() -> None:
                    for event in queue:
                        await klaviyo.create_event(event)

                await asyncio.gather(*(worker() for _ in range(in_flight)))
            else:
                await klaviyo.bulk_create_events(events, batch_size=args.batch_size)
            seconds = time.perf_counter() - started
            sandbox_finished = cpu_seconds(pid) if pid else None
            stats = klaviyo.stats
    needed = math.ceil(len(events) / per_request)
    return Result(
        mode=mode,
        events=len(events),
        seconds=seconds,
        requests=stats.requests,
        throttled=stats.throttled,
        sustained_ceiling=steady * per_request,
        run_ceiling=len(events) / bound * 60 if (bound := limit_bound_seconds(needed, burst, steady)) else None,
        sandbox_cpu=sandbox_finished - sandbox_started
        if sandbox_started is not None and sandbox_finished is not None
        else None,
    )


def report(result: Result) -> None:
    share = result.throttled / result.requests if result.requests else 0.0
    print(
        f"{result.mode:>6}: {result.events:,} events in {result.seconds:,.1f} s = {result.per_minute:,.0f} events/min\n"
        f"        steady ceiling (steady window x events per request): {result.sustained_ceiling:,.0f} events/min -> "
        f"{result.per_minute / result.sustained_ceiling:.1%} of it\n"
        + (
            f"        ceiling for a run of this size (both windows): {result.run_ceiling:,.0f} events/min -> "
            f"{result.per_minute / result.run_ceiling:.1%} of it\n"
            if result.run_ceiling
            else "        ceiling for a run of this size (both windows): none, the windows let all its requests go at once\n"
        )
        + f"        requests {result.requests:,}, 429s {result.throttled:,} ({share:.2%} of requests)"
        + (
            f"\n        sandbox CPU {result.sandbox_cpu:.1f} s = {result.sandbox_cpu / result.requests * 1000:.1f} ms per "
            f"request, busy {result.sandbox_cpu / result.seconds:.0%} of the run (near 100%: the sandbox is the bound)"
            if result.sandbox_cpu is not None and result.requests
            else ""
        )
    )
    if result.mode == "bulk":
        met = result.per_minute >= TARGET_SHARE * result.sustained_ceiling and share < MAX_THROTTLED_SHARE
        print(
            f"        target (>= {TARGET_SHARE:.0%} of the steady ceiling, 429s < {MAX_THROTTLED_SHARE:.0%}): "
            + ("met" if met else "not met")
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--rate-scale", type=float, default=10.0)
    parser.add_argument("--modes", default="single,bulk", help="comma-separated: single, bulk")
    parser.add_argument("--server", choices=("sandbox", "sandbox-thread", "mock"), default="sandbox")
    parser.add_argument("--max-in-flight", type=int, default=32, help="requests in flight, single mode")
    # The sandbox handles one request at a time: a few bulk requests keep it busy, more only queue
    # there (past the client's timeout, once a request of 1,000 events takes a second).
    parser.add_argument("--bulk-max-in-flight", type=int, default=4, help="requests in flight, bulk mode")
    parser.add_argument("--batch-size", type=int, default=MAX_EVENTS_PER_REQUEST)
    args = parser.parse_args()
    events = make_events(args.events)
    print(
        f"{args.events:,} events, rate scale {args.rate_scale:g}, server {args.server}, "
        f"in flight {args.max_in_flight} (single) / {args.bulk_max_in_flight} (bulk)"
    )
    for mode in args.modes.split(","):
        report(asyncio.run(run_mode(mode.strip(), events, args)))


if __name__ == "__main__":
    main()
