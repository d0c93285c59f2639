"""Benchmark: mixed events through `cogent sync` against the rate-limit ceiling, side by side with
Klaviyo's official `klaviyo-api` SDK sending the same events one by one.

    python bench/sync.py --events 100000 --rate-scale 10 --sdk-events 2000
    python bench/sync.py --events 20000 --server mock --sdk-events 0     # the engine's own cost
    python bench/sync.py --mix returns --sdk-events 0 --job-seconds 5    # import jobs that take a while

The run is the real engine (`run_sync`): the events are written to a workspace's `events` table,
then one sync queues them in the outbox and delivers them. It prints

* events/minute end to end, and for the delivery phase alone (queueing excluded);
* the ceiling: the least time Klaviyo's published limits allow for the requests this mix needs.
  Each endpoint needs (operations / the most one request of it may carry) requests, plus identity
  lookups at 100 values per request, the catalog check of each variant and one poll per profile
  import job. Klaviyo counts requests in fixed windows of one second (burst) and one minute
  (steady), both x --rate-scale, so a lane sends full bursts until the minute's allowance is spent,
  then waits for the next minute; each second it sends in counts whole. Endpoints have separate
  budgets and run in parallel, so the slowest lane bounds the run; ceiling = events / that time,
  and the ratio is the end-to-end rate over it. Lanes are taken as independent, though identity
  lookups precede the events they resolve, which makes the ceiling stricter, not laxer.
  The ceiling at the steady rates alone (requests / per-minute limit, the figure reported before)
  is printed too: it is lenient for a lane that needs less than a minute's allowance (100,000
  events at --rate-scale 10 need 92 event requests: 3.7 s at the steady rate, 1 s in bursts), so a
  short run could exceed it;
* the requests actually made per endpoint, 429s and retries.

`--server sandbox` (default) runs `cogent sandbox serve` in its own process, as Klaviyo is another
machine, so the sandbox (which stores everything in SQLite) does not share this process's CPU.
`--server mock` answers from an in-process transport that only enforces Klaviyo's fixed windows
(429 with Retry-After when a window is full) and returns Klaviyo-shaped bodies, which shows the
engine's own ratio to the ceiling independently of the sandbox's speed.

The SDK sends one `create_event` per event (as integrations built on it do), so it is bound by
create_event's steady limit and by one round trip per event: 100,000 events would take many
minutes. `--sdk-events` sends a sample of the same events (the first N) and its rate is compared
with the sync's. Needs `pip install klaviyo-api` (the `bench` extra).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import math
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from cogent_cli.demo import create_catalog
from cogent_cli.events import Source, dump_event, make_event
from cogent_cli.klaviyo.client import (
    MAX_EVENTS_PER_REQUEST,
    MAX_PROFILES_PER_IMPORT,
    MAX_PROFILES_PER_SUBSCRIBE,
    MAX_PROFILES_PER_UNSUBSCRIBE,
    MAX_VARIANTS_PER_JOB,
    REVISION,
    KlaviyoClient,
)
from cogent_cli.klaviyo.spec import RateLimit, match_operation, operations
from cogent_cli.sandbox.ratelimit import RateLimiter as ServerWindows
from cogent_cli.sandbox.ratelimit import scaled
from cogent_cli.sync.engine import LaneProgress, SyncOptions, run_sync
from cogent_cli.sync.identity import LOOKUP_CHUNK, Identity
from cogent_cli.workspace import Workspace

KEY = "pk_bench"
SKUS = [f"SKU-{n:04d}" for n in range(100)]


def mixed_events(count: int, seed: int = 7, mix: str = "warehouse") -> list[Any]:
    """Shipments mostly, with returns, refunds, cancellations, consent and stock, like a warehouse day;
    or returns alone (`mix="returns"`: an event and a profile update each, a customer each)."""
    rng = random.Random(seed)
    now = datetime.now(UTC).replace(microsecond=0)
    events = []
    for n in range(count):
        kind = rng.random() if mix == "warehouse" else 0.75
        customer = rng.randrange(max(count // 5, 1)) if mix == "warehouse" else n
        order, email = f"O{n}", f"customer{customer}@bench.shop"
        source = Source(system="peoplevox", tenant="bench", transport="poll", dedupe_key=f"e{n}")
        at = now - timedelta(minutes=rng.randrange(600))
        common = {
            "source": source,
            "occurred_at": at,
            "customer": {"email": email},
            "order_ref": {"order_number": order},
        }
        sku = rng.choice(SKUS)
        if kind < 0.7:
            data = {
                "shipment_id": f"S{n}",
                "despatched_at": at,
                "parcels": [{"tracking_number": f"T{n}", "items": [{"sku": sku, "quantity": 1}]}],
            }
            events.append(make_event("shipment.despatched", data=data, **common))
        elif kind < 0.8:
            data = {
                "return_id": f"R{n}",
                "status": "received",
                "lines": [{"sku": sku, "quantity": 1, "reason_text": "Too small"}],
            }
            events.append(make_event("return.received", data=data, **common))
        elif kind < 0.88:
            money = {"amount": "19.99", "currency": "GBP"}
            data = {"refund_id": f"F{n}", "total": money, "lines": [{"sku": sku, "quantity": 1, "amount": money}]}
            events.append(make_event("refund.processed", data=data, **common))
        elif kind < 0.92:
            events.append(
                make_event(
                    "order.cancelled", data={"scope": "full", "value": {"amount": "9.99", "currency": "GBP"}}, **common
                )
            )
        elif kind < 0.95:
            data = {"channel": "email", "status": "subscribed", "captured_at": at - timedelta(days=1)}
            events.append(make_event("consent.changed", data=data, **{**common, "order_ref": None}))
        else:
            data = {
                "sku": sku,
                "location": {"site": "MAIN"},
                "as_of": at,
                "mode": "snapshot",
                "sellable": {"available": rng.randrange(50)},
            }
            events.append(make_event("stock.level_changed", data=data, source=source, occurred_at=at))
    return events


def write_workspace(root: Path, base_url: str, rate_scale: float, events: list[Any], max_in_flight: int) -> Workspace:
    root.mkdir(parents=True)
    (root / "cogent.toml").write_text(
        f'[workspace]\nname = "Bench"\nid = "bench-01"\n\n[klaviyo]\nbase_url = "{base_url}"\n'
        f"rate_scale = {rate_scale}\nmax_in_flight = {max_in_flight}\n\n[sync]\nwave_size = 20000\n",
        encoding="utf-8",
    )
    workspace = Workspace(root)
    with workspace.store() as store, store.transaction() as db:
        db["events"].insert_all(
            (
                {
                    "event_id": e.event_id,
                    "event_type": e.event_type,
                    "system": "peoplevox",
                    "tenant": "bench",
                    "occurred_at": dump_event(e)["occurred_at"],
                    "order_number": e.order_number,
                    "body": json.dumps(dump_event(e)),
                }
                for e in events
            ),
            batch_size=2000,
        )
    return workspace


# -- the ceiling ---------------------------------------------------------------------------------


def needed_requests(workspace: Workspace) -> Counter[str]:
    """The fewest requests per endpoint that deliver what the run queued, at each endpoint's largest request."""
    ops: Counter[str] = Counter()
    lookups: dict[str, set[str]] = {}
    variants: set[str] = set()
    with workspace.store() as store:
        for row in store.db.query("select kind, payload from outbox where kind != 'mapping'"):
            payload = json.loads(row["payload"])
            ops[row["kind"]] += 1
            if row["kind"] in ("event", "profile"):
                for _key, field_name, value in Identity.from_json(payload.get("profile") or {}).lookup_keys():
                    lookups.setdefault(field_name, set()).add(value)
            elif row["kind"] == "catalog":
                variants.add(payload["variant_id"])
    jobs = math.ceil(ops["profile"] / MAX_PROFILES_PER_IMPORT)
    return Counter(
        {
            "bulk_create_events": math.ceil(ops["event"] / MAX_EVENTS_PER_REQUEST),
            "bulk_import_profiles": jobs,
            "get_bulk_import_profiles_job": jobs,
            "bulk_subscribe_profiles": math.ceil(ops["subscribe"] / MAX_PROFILES_PER_SUBSCRIBE),
            "bulk_unsubscribe_profiles": math.ceil(ops["unsubscribe"] / MAX_PROFILES_PER_UNSUBSCRIBE),
            "get_profiles": sum(math.ceil(len(values) / LOOKUP_CHUNK) for values in lookups.values()),
            "get_catalog_variants": math.ceil(len(variants) / MAX_VARIANTS_PER_JOB),
            "bulk_update_catalog_variants": math.ceil(len(variants) / MAX_VARIANTS_PER_JOB),
        }
    )


def steady_seconds(requests: int, limit: RateLimit, rate_scale: float) -> float:
    """Time at the steady per-minute rate alone (the ceiling this benchmark reported before)."""
    return requests / (limit.steady * rate_scale) * 60


def window_seconds(requests: int, limit: RateLimit, rate_scale: float) -> float:
    """Least time Klaviyo's fixed windows allow: full one-second bursts until the minute's steady
    allowance is spent, then the next minute; each second a request is sent in counts whole."""
    burst, steady = scaled(limit.burst, rate_scale), scaled(limit.steady, rate_scale)
    minutes, rest = divmod(requests, steady)
    if rest == 0:
        minutes, rest = minutes - 1, steady
    return minutes * 60 + math.ceil(rest / burst)


def ceiling_seconds(
    requests: Counter[str], rate_scale: float, lane_time: Callable[[int, RateLimit, float], float] = window_seconds
) -> tuple[float, str]:
    """Least time for the run: every endpoint in parallel, so the slowest lane bounds it."""
    ops = operations()
    lanes = {name: lane_time(n, ops[name].rate_limit, rate_scale) for name, n in requests.items() if n}
    slowest = max(lanes, key=lanes.__getitem__)
    return lanes[slowest], slowest


# -- servers -------------------------------------------------------------------------------------


@contextmanager
def sandbox_process(data: Path, rate_scale: float, job_seconds: float) -> Iterator[str]:
    """`cogent sandbox serve` in its own process; yields its base URL."""
    command = [sys.executable, "-m", "cogent_cli", "sandbox", "serve", "--port", "0", "--data", str(data)]
    process = subprocess.Popen(
        [*command, "--rate-scale", str(rate_scale), "--job-seconds", str(job_seconds)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        for line in process.stdout:
            if match := re.match(r'base_url = "(.+)"', line):
                yield match.group(1)
                return
        raise RuntimeError("the sandbox exited before it was ready")
    finally:
        process.terminate()
        process.wait(10)


def mock_transport(rate_scale: float) -> httpx.MockTransport:
    """Klaviyo's fixed windows and response shapes, nothing stored: no customer is known yet, every
    catalog variant asked for exists, every job completes without errors."""
    windows = ServerWindows(rate_scale=rate_scale)
    jobs = iter(range(1, 1 << 62))

    def job(kind: str, status: str) -> dict[str, Any]:
        return {"data": {"type": kind, "id": f"job{next(jobs)}", "attributes": {"status": status, "failed_count": 0}}}

    def answer(request: httpx.Request) -> httpx.Response:
        op = match_operation(request.method, request.url.path)
        assert op is not None, request.url
        verdict = windows.hit(op.operation_id, op.rate_limit)
        if not verdict.allowed:
            return httpx.Response(429, headers={"Retry-After": str(verdict.retry_after)}, json={"errors": []})
        headers = {
            "RateLimit-Limit": str(verdict.limit),
            "RateLimit-Remaining": str(verdict.remaining),
            "RateLimit-Reset": str(verdict.reset),
        }
        name = op.operation_id
        if name == "get_catalog_variants":
            ids = re.findall(r'"((?:[^"\\]|\\.)*)"', request.url.params.get("filter", ""))
            data = [{"type": "catalog-variant", "id": i, "attributes": {"sku": i.rsplit(":", 1)[-1]}} for i in ids]
            return httpx.Response(200, headers=headers, json={"data": data, "links": {"next": None}})
        if name in ("get_profiles", "get_errors_for_bulk_import_profiles_job"):
            return httpx.Response(200, headers=headers, json={"data": [], "links": {"next": None}})
        if name == "bulk_import_profiles":
            return httpx.Response(202, headers=headers, json=job("profile-bulk-import-job", "queued"))
        if name == "get_bulk_import_profiles_job":
            return httpx.Response(200, headers=headers, json=job("profile-bulk-import-job", "complete"))
        if name == "bulk_update_catalog_variants":
            return httpx.Response(202, headers=headers, json=job("catalog-variant-bulk-update-job", "queued"))
        return httpx.Response(202, headers=headers)

    return httpx.MockTransport(answer)


# -- the runs ------------------------------------------------------------------------------------


@dataclass
class SyncResult:
    seconds: float
    delivery_seconds: float
    cpu_seconds: float
    sent: int
    failed: int
    waiting: int
    requests: dict[str, int]
    throttled: int
    retries: int


def run_engine(workspace: Workspace, transport: httpx.AsyncBaseTransport | None) -> SyncResult:
    clients: list[KlaviyoClient] = []
    delivery_started: list[float] = []

    @asynccontextmanager
    async def recording(config: Any) -> Any:
        async with KlaviyoClient(
            KEY,
            base_url=config.klaviyo.base_url,
            max_in_flight=config.klaviyo.max_in_flight,
            rate_scale=config.klaviyo.rate_scale,
            transport=transport,
        ) as client:
            clients.append(client)
            yield client

    def progress(_update: LaneProgress) -> None:
        if not delivery_started:
            delivery_started.append(time.monotonic())

    started, cpu_started = time.monotonic(), time.process_time()
    summary = run_sync(workspace, SyncOptions(command="bench"), client_factory=recording, progress=progress)
    ended = time.monotonic()
    cpu = time.process_time() - cpu_started
    data = summary.to_json()
    stats = clients[0].stats
    return SyncResult(
        seconds=ended - started,
        delivery_seconds=ended - (delivery_started or [started])[0],
        cpu_seconds=cpu,
        sent=data["sent"],
        failed=data["failed"],
        waiting=data["waiting"],
        requests={name: s.requests for name, s in stats.operations.items() if s.requests},
        throttled=stats.throttled,
        retries=stats.retries,
    )


def sdk_one_by_one(base_url: str, events: list[Any]) -> float:
    """The official SDK, one create_event per event (as integrations built on it do); events/minute."""
    from klaviyo_api import KlaviyoAPI

    klaviyo = KlaviyoAPI(KEY, max_delay=60, max_retries=3, test_host=base_url)
    # Newer SDK releases send a later revision than the one the sandbox implements (and cogent speaks).
    klaviyo.api_client.default_headers["revision"] = REVISION
    started = time.monotonic()
    for event in events:
        body = {
            "data": {
                "type": "event",
                "attributes": {
                    "properties": {"OrderId": event.order_number, "Source": "sdk"},
                    "time": event.occurred_at.isoformat(),
                    "unique_id": f"sdk-{event.event_id}",
                    "metric": {"data": {"type": "metric", "attributes": {"name": "SDK " + event.event_type}}},
                    "profile": {
                        "data": {
                            "type": "profile",
                            "attributes": {"email": event.customer.email if event.customer else "stock@bench.shop"},
                        }
                    },
                },
            }
        }
        klaviyo.Events.create_event(body)
    return len(events) / (time.monotonic() - started) * 60


def report(args: argparse.Namespace, result: SyncResult, needed: Counter[str]) -> float:
    rate = args.events / result.seconds * 60
    bound, slowest = ceiling_seconds(needed, args.rate_scale)
    ceiling = args.events / bound * 60
    steady_ceiling = args.events / ceiling_seconds(needed, args.rate_scale, steady_seconds)[0] * 60
    queued = result.seconds - result.delivery_seconds
    print(
        f"cogent sync ({args.server}, rate scale {args.rate_scale:g}): {args.events:,} events -> "
        f"{result.sent:,} operations sent, {result.failed} failed, {result.waiting} waiting"
    )
    print(f"  time:     {result.seconds:.1f} s = {queued:.1f} s queueing + {result.delivery_seconds:.1f} s delivering")
    print(
        f"  CPU:      {result.cpu_seconds:.1f} s in this process ({result.cpu_seconds / args.events * 1e6:,.0f} µs/event)"
    )
    print(f"  rate:     {rate:,.0f} events/min end to end ({result.sent / result.seconds * 60:,.0f} operations/min)")
    print(f"            {args.events / result.delivery_seconds * 60:,.0f} events/min in the delivery phase")
    print(
        f"  ceiling:  {ceiling:,.0f} events/min ({bound:.1f} s; slowest lane {slowest}, "
        f"burst and steady windows x {args.rate_scale:g})"
    )
    print(
        f"            at the steady rates alone {steady_ceiling:,.0f} events/min "
        f"(ratio {rate / steady_ceiling:.2f}; lenient for runs shorter than a minute per lane)"
    )
    print(f"            needed requests: {', '.join(f'{k} {v}' for k, v in needed.items() if v)}")
    print(f"            made requests:   {', '.join(f'{k} {v}' for k, v in result.requests.items())}")
    print(
        f"  ratio:    {rate / ceiling:.2f} of the ceiling end to end, "
        f"{args.events / result.delivery_seconds * 60 / ceiling:.2f} in the delivery phase; "
        f"429s {result.throttled}, retries {result.retries}"
    )
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--rate-scale", type=float, default=10.0)
    parser.add_argument("--server", choices=("sandbox", "mock"), default="sandbox")
    parser.add_argument("--sdk-events", type=int, default=2000, help="sample sent with the SDK; 0 skips it")
    parser.add_argument("--mix", choices=("warehouse", "returns"), default="warehouse")
    parser.add_argument(
        "--job-seconds", type=float, default=0.0, help="how long the sandbox's import jobs read processing"
    )
    parser.add_argument(
        "--max-in-flight",
        type=int,
        default=8,
        help="concurrent requests; the sandbox stores each 1,000-event request in seconds, so more only queue "
        "there until the client's timeout",
    )
    args = parser.parse_args()
    if args.sdk_events and args.server == "sandbox" and importlib.util.find_spec("klaviyo_api") is None:
        parser.exit(2, "the SDK comparison needs klaviyo-api: `pip install -e '.[bench]'`, or pass --sdk-events 0\n")
    os.environ["COGENT_KLAVIYO_API_KEY"] = KEY
    print(f"generating {args.events:,} mixed events ...", file=sys.stderr)
    events = mixed_events(args.events, mix=args.mix)
    with tempfile.TemporaryDirectory() as tmp:
        if args.server == "mock":
            workspace = write_workspace(
                Path(tmp) / "ws", "https://a.klaviyo.com", args.rate_scale, events, args.max_in_flight
            )
            result = run_engine(workspace, mock_transport(args.rate_scale))
            report(args, result, needed_requests(workspace))
            if args.sdk_events:
                print("the SDK comparison needs the sandbox: run without --server mock", file=sys.stderr)
            return
        with sandbox_process(Path(tmp) / "sandbox", args.rate_scale, args.job_seconds) as base_url:
            workspace = write_workspace(Path(tmp) / "ws", base_url, args.rate_scale, events, args.max_in_flight)
            asyncio.run(create_catalog(base_url, SKUS, api_key=KEY, rate_scale=args.rate_scale))
            result = run_engine(workspace, None)
            rate = report(args, result, needed_requests(workspace))
            if args.sdk_events:
                sample = events[: args.sdk_events]
                sdk_rate = sdk_one_by_one(base_url, sample)
                print(f"klaviyo-api SDK one by one: {len(sample):,} events at {sdk_rate:,.0f} events/min")
                print(f"  cogent sync / SDK: {rate / sdk_rate:.1f}x")


if __name__ == "__main__":
    main()
