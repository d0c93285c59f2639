"""The Klaviyo mirror against the sandbox over HTTP: what it copies, and resuming after an interruption."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from cogent_cli import mirror
from cogent_cli.klaviyo.client import KlaviyoClient
from cogent_cli.klaviyo.models import CatalogItemIn, CatalogVariantIn, EventIn, ProfileIn
from cogent_cli.mirror import pull_klaviyo
from cogent_cli.sandbox.server import run_sandbox
from cogent_cli.workspace import Workspace

API_KEY = "pk_sandbox_mirror_tests"
PROFILES = 7


@pytest.fixture
def sandbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("COGENT_KLAVIYO_API_KEY", API_KEY)
    with run_sandbox(tmp_path / "sandbox", rate_scale=100.0) as running:
        yield running


@pytest.fixture
def klaviyo_workspace(tmp_path: Path, sandbox) -> Workspace:
    root = tmp_path / "ws"
    root.mkdir()
    (root / "cogent.toml").write_text(
        f'[workspace]\nname = "Mirror"\nid = "mirror-test-01"\n\n'
        f'[klaviyo]\nbase_url = "{sandbox.base_url}"\nrate_scale = 100.0\n',
        encoding="utf-8",
    )
    workspace = Workspace(root)
    workspace.store().close()
    return workspace


async def seed(base_url: str) -> None:
    now = datetime.now(UTC)
    async with KlaviyoClient(API_KEY, base_url=base_url, rate_scale=100.0) as client:
        for index in range(PROFILES):
            await client.create_profile(
                ProfileIn(
                    email=f"p{index}@example.org",
                    first_name=f"P{index}",
                    location={"zip": "E1 6AN", "city": "London"},
                    properties={"open_return": index == 0},
                )
            )
        for index, metric in enumerate(("Placed Order", "Fulfilled Shipment", "Some Other Metric")):
            await client.create_event(
                EventIn(
                    metric=metric,
                    email="p1@example.org",
                    properties={"OrderId": f"100{index}", "SourceEventId": f"evt-{index}"},
                    time=now - timedelta(hours=index + 1),
                    value=12.5,
                    value_currency="GBP",
                    unique_id=f"u-{index}",
                )
            )
        item = await client.create_catalog_item(
            CatalogItemIn(external_id="ITEM-1", title="Tent", description="A tent", url="https://shop.example/tent")
        )
        await client.create_catalog_variant(
            CatalogVariantIn(
                item_id=item.id,
                external_id="SKU-1",
                title="Tent",
                description="A tent",
                sku="SKU-1",
                inventory_quantity=4,
                price=99,
                url="https://shop.example/tent",
            )
        )


def spread_updates(sandbox) -> None:
    """Give each sandbox profile its own `updated` minute, as a real account's history has."""
    base = datetime(2026, 1, 1, tzinfo=UTC)
    for index, row in enumerate(sandbox.db.query("select id from profiles order by id")):
        stamp = (base + timedelta(minutes=index)).strftime("%Y-%m-%dT%H:%M:%S+00:00")
        sandbox.db.execute("update profiles set updated = ? where id = ?", [stamp, row["id"]])
    sandbox.db.conn.commit()


def test_pull_copies_profiles_variants_metrics_and_mapped_events(klaviyo_workspace, sandbox):
    asyncio.run(seed(sandbox.base_url))
    summary = pull_klaviyo(klaviyo_workspace)
    assert summary.counts["profiles"] == PROFILES and summary.counts["variants"] == 1
    with klaviyo_workspace.store() as store:
        db = store.db
        ann = next(db.query("select * from klaviyo_profiles where email = 'p0@example.org'"))
        assert ann["zip"] == "E1 6AN" and json.loads(ann["properties"]) == {"open_return": True}
        assert ann["email_consent"] in ("NEVER_SUBSCRIBED", None)
        events = {r["metric_name"]: r for r in db.query("select * from klaviyo_events")}
        assert set(events) == {"Placed Order", "Fulfilled Shipment"}
        shipped = events["Fulfilled Shipment"]
        assert (shipped["order_number"], shipped["source_event_id"], shipped["unique_id"], shipped["value"]) == (
            "1001",
            "evt-1",
            "u-1",
            12.5,
        )
        assert [r["sku"] for r in db.query("select sku from klaviyo_variants")] == ["SKU-1"]
        assert {r["name"] for r in db.query("select name from klaviyo_metrics")} >= {
            "Placed Order",
            "Some Other Metric",
        }


def test_an_interrupted_pull_resumes_from_its_cursor(klaviyo_workspace, sandbox, monkeypatch):
    asyncio.run(seed(sandbox.base_url))
    spread_updates(sandbox)
    monkeypatch.setattr(mirror, "CHUNK", 2)
    seen: list[int] = []

    def crash_after_first_profiles(stream: str, count: int) -> None:
        if stream == "profiles":
            seen.append(count)
            if len(seen) == 2:
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        pull_klaviyo(klaviyo_workspace, progress=crash_after_first_profiles)
    with klaviyo_workspace.store() as store:
        cursor = store.db["mirror_cursors"].get("profiles")
        assert cursor["done"] == 0 and cursor["high_water"] == "2026-01-01T00:03:00Z"
        assert store.db["klaviyo_profiles"].count == 4

    fetched: list[int] = []
    pull_klaviyo(klaviyo_workspace, progress=lambda stream, count: stream == "profiles" and fetched.append(count))
    # Resumed after the 4th profile (with one second of overlap for equal timestamps), not from the start.
    assert sum(fetched) == PROFILES - 3
    with klaviyo_workspace.store() as store:
        assert store.db["klaviyo_profiles"].count == PROFILES
        assert store.db["mirror_cursors"].get("profiles")["done"] == 1
        assert store.db["klaviyo_events"].count == 2

    again: list[int] = []
    pull_klaviyo(klaviyo_workspace, progress=lambda stream, count: stream == "profiles" and again.append(count))
    assert sum(again) == 1  # only the newest, re-read because of the overlap


def test_merge_apply_merges_approved_profiles_in_the_sandbox_and_dry_run_sends_nothing(
    klaviyo_workspace, sandbox, runner, tmp_path
):
    from cogent_cli.cli import app

    asyncio.run(seed(sandbox.base_url))
    ids = [r["id"] for r in sandbox.db.query("select id from profiles order by email")]
    proposals = {
        "generated_at": "2026-11-23T09:00:00Z",
        "proposals": [
            {"cluster": "c1", "approved": True, "confidence": 0.99, "destination_id": ids[0], "source_ids": [ids[1]]},
            {"cluster": "c2", "approved": False, "confidence": 0.8, "destination_id": ids[2], "source_ids": [ids[3]]},
        ],
    }
    file = tmp_path / "merges.json"
    file.write_text(json.dumps(proposals))
    workspace = ["-w", str(klaviyo_workspace.root)]

    dry = runner.invoke(app, [*workspace, "merge", "apply", str(file), "--dry-run"])
    assert dry.exit_code == 0, dry.stderr
    assert "Dry run: 1 merge(s) would be made" in dry.stderr and sandbox.db["profiles"].count == PROFILES

    declined = runner.invoke(app, [*workspace, "merge", "apply", str(file)], input="n\n")
    assert declined.exit_code == 0 and sandbox.db["profiles"].count == PROFILES

    merged = runner.invoke(app, [*workspace, "merge", "apply", str(file)], input="y\n")
    assert merged.exit_code == 0, merged.stderr
    assert "Merged 1, failed 0" in merged.stderr
    remaining = {r["id"] for r in sandbox.db.query("select id from profiles")}
    assert ids[1] not in remaining and {ids[0], ids[2], ids[3]} <= remaining
    with klaviyo_workspace.store() as store:
        statuses = [(r["source_id"], r["status"]) for r in store.db.query("select * from profile_merges order by id")]
    assert statuses == [(ids[1], "dry-run"), (ids[1], "merged")]
