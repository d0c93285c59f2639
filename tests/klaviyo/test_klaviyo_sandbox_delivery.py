"""Through the real HTTP stack against the sandbox: faults are absorbed and nothing is lost or doubled."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from klaviyo_fakes import API_KEY

from cogent_cli.klaviyo.client import KlaviyoClient
from cogent_cli.klaviyo.filters import ProfileFilter
from cogent_cli.klaviyo.models import EventIn
from cogent_cli.klaviyo.ratelimit import RetryPolicy
from cogent_cli.sandbox.server import run_sandbox

pytestmark = pytest.mark.anyio

FAULTS = "5xx=0.1,429=0.05,timeout=0.02,reset=0.02,seed=11,delay=12"
QUICK_RETRIES = RetryPolicy(max_retries=10, base_delay=0.05, max_delay=1.0)


async def test_10000_events_arrive_exactly_once_through_injected_faults(tmp_path: Path) -> None:
    start = datetime(2026, 7, 1, tzinfo=UTC)
    events = [
        EventIn(
            metric="Fulfilled Order" if i % 3 else "Placed Order",
            email=f"customer{i % 1500}@shop.example",
            unique_id=f"evt-{i:05d}",
            time=start + timedelta(seconds=i),
            value=i % 100,
            value_currency="GBP",
            properties={"OrderId": f"SO-{i:05d}", "Index": i},
        )
        for i in range(10_000)
    ]
    # A replayed slice: the same facts sent again must not be counted twice either.
    resent = events[:100]
    with run_sandbox(tmp_path / "sandbox", rate_scale=20, faults=FAULTS) as sandbox:
        async with KlaviyoClient(
            # The sandbox serves one request at a time: more in flight would only queue (and time out).
            API_KEY,
            base_url=sandbox.base_url,
            timeout=10.0,
            max_in_flight=3,
            rate_scale=20,
            retry=QUICK_RETRIES,
            seed=5,
        ) as klaviyo:
            outcome = await klaviyo.bulk_create_events([*events, *resent], batch_size=100)
            stats = klaviyo.stats
        rows = list(sandbox.db.query("select unique_id, count(*) as n from events group by unique_id"))
        injected = {name: count for name, count in sandbox.stats.items() if name.startswith("fault.")}

    assert outcome.failures == []
    assert outcome.accepted == 10_100
    assert len(rows) == 10_000
    assert {row["unique_id"] for row in rows} == {e.unique_id for e in events}
    assert all(row["n"] == 1 for row in rows)
    # The faults really happened, including ones after the write was applied (absorbed by unique_id).
    assert stats.retries > 0 and stats.throttled > 0
    assert injected.get("fault.5xx.before", 0) > 0
    assert injected.get("fault.timeout.after", 0) + injected.get("fault.reset.after", 0) > 0


async def test_profiles_written_by_events_read_back_with_filters(tmp_path: Path) -> None:
    with run_sandbox(tmp_path / "sandbox", rate_scale=10) as sandbox:
        async with KlaviyoClient(API_KEY, base_url=sandbox.base_url, rate_scale=10) as klaviyo:
            await klaviyo.create_event(
                EventIn(metric="Placed Order", email="zoë@shop.example", phone_number="+447700900123", unique_id="o-1")
            )
            found = [p async for p in klaviyo.get_profiles(ProfileFilter(phone_number="+447700900123"))]
            metrics = [m.name async for m in klaviyo.get_metrics()]
            events = [e async for e in klaviyo.get_events()]
    assert [p.email for p in found] == ["zoë@shop.example"]
    assert "Placed Order" in metrics
    assert [e.profile_id for e in events] == [found[0].id]
