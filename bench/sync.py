"""Benchmark: mixed events through `cogent sync` into the sandbox, against the rate-limit ceiling,
side by side with the official `klaviyo-api` SDK sending the same events one by one.

    python bench/sync.py --events 100000 --rate-scale 10 --sdk-events 2000

Prints events and Klaviyo operations per minute, the ceiling the published limits allow (each
endpoint at its steady per-minute limit times the rate scale, all endpoints in parallel), the
ratio, 429s and retries; then the SDK's rate and the ratio of the two. The SDK part needs
`pip install klaviyo-api` (the `bench` extra).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import tempfile
import time
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cogent_cli.demo import create_catalog
from cogent_cli.events import Source, dump_event, make_event
from cogent_cli.klaviyo.client import KlaviyoClient
from cogent_cli.klaviyo.spec import operations
from cogent_cli.sandbox.server import run_sandbox
from cogent_cli.sync.engine import SyncOptions, default_client_factory, run_sync
from cogent_cli.workspace import Workspace

KEY = "pk_bench"
SKUS = [f"SKU-{n:04d}" for n in range(100)]


def mixed_events(count: int, seed: int = 7) -> list[Any]:
    """Shipments mostly, with returns, refunds, cancellations, consent and stock, like a warehouse day."""
    rng = random.Random(seed)
    now = datetime.now(UTC).replace(microsecond=0)
    events = []
    for n in range(count):
        kind = rng.random()
        order, email = f"O{n}", f"customer{rng.randrange(max(count // 5, 1))}@bench.shop"
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


def write_workspace(root: Path, base_url: str, rate_scale: float, events: list[Any]) -> Workspace:
    import json

    root.mkdir(parents=True)
    (root / "cogent.toml").write_text(
        f'[workspace]\nname = "Bench"\nid = "bench-01"\n\n[klaviyo]\nbase_url = "{base_url}"\n'
        f"rate_scale = {rate_scale}\nmax_in_flight = 64\n\n[sync]\nwave_size = 20000\n",
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


def ceiling_per_minute(requests_by_operation: dict[str, int], rate_scale: float, events: int) -> float:
    """Events per minute if every endpoint ran at its steady limit, all in parallel."""
    ops = operations()
    minutes = max(
        (count / (ops[name].rate_limit.steady * rate_scale) for name, count in requests_by_operation.items() if count),
        default=0.0,
    )
    return events / minutes if minutes else float("inf")


def sdk_one_by_one(base_url: str, events: list[Any]) -> float:
    """The official SDK, one create_event per event (as integrations built on it do); events/minute."""
    from klaviyo_api import KlaviyoAPI

    klaviyo = KlaviyoAPI(KEY, max_delay=60, max_retries=3, test_host=base_url)
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--rate-scale", type=float, default=10.0)
    parser.add_argument("--sdk-events", type=int, default=2000, help="0 skips the SDK comparison")
    args = parser.parse_args()
    os.environ["COGENT_KLAVIYO_API_KEY"] = KEY
    with (
        tempfile.TemporaryDirectory() as tmp,
        run_sandbox(Path(tmp) / "sandbox", rate_scale=args.rate_scale) as sandbox,
    ):
        print(f"generating {args.events:,} mixed events ...", file=sys.stderr)
        events = mixed_events(args.events)
        workspace = write_workspace(Path(tmp) / "ws", sandbox.base_url, args.rate_scale, events)
        asyncio.run(create_catalog(sandbox.base_url, SKUS, api_key=KEY, rate_scale=args.rate_scale))
        clients: list[KlaviyoClient] = []

        @asynccontextmanager
        async def recording(config: Any) -> Any:
            async with default_client_factory(config) as client:
                clients.append(client)
                yield client

        started = time.monotonic()
        summary = run_sync(workspace, SyncOptions(command="bench"), client_factory=recording)
        elapsed = time.monotonic() - started
        by_operation = {name: s.requests for name, s in clients[0].stats.operations.items()}
        data = summary.to_json()
        rate = args.events / elapsed * 60
        ceiling = ceiling_per_minute(by_operation, args.rate_scale, args.events)
        print(
            f"cogent sync: {args.events:,} events -> {data['sent']:,} operations sent, {data['failed']} failed, {data['waiting']} waiting, in {elapsed:.1f} s"
        )
        print(f"  rate:    {rate:,.0f} events/min ({data['sent'] / elapsed * 60:,.0f} Klaviyo operations/min)")
        print(
            f"  ceiling: {ceiling:,.0f} events/min from the steady limits x {args.rate_scale:g} of {', '.join(f'{k} {v}' for k, v in by_operation.items())} requests"
        )
        print(
            f"  ratio:   {rate / ceiling:.2f} of the ceiling; 429s {clients[0].stats.throttled}, retries {clients[0].stats.retries}"
        )
        if args.sdk_events:
            sample = events[: args.sdk_events]
            sdk_rate = sdk_one_by_one(sandbox.base_url, sample)
            print(f"klaviyo-api SDK one by one: {len(sample):,} events at {sdk_rate:,.0f} events/min")
            print(f"  cogent / SDK: {rate / sdk_rate:.1f}x")


if __name__ == "__main__":
    main()
