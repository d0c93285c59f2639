"""Client interactions recorded against the sandbox, replayed from `cassettes/klaviyo/`.

Re-record (starts a sandbox; the key header is filtered out of every cassette):
    pytest tests/klaviyo/test_klaviyo_cassettes.py --record-mode=rewrite
Without `--record-mode`, cassettes are only replayed (pytest-recording's default `none`).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from klaviyo_fakes import API_KEY

from cogent_cli.klaviyo import filters
from cogent_cli.klaviyo.client import KlaviyoClient
from cogent_cli.klaviyo.errors import DuplicateProfileError, KlaviyoValidationError
from cogent_cli.klaviyo.filters import ProfileFilter
from cogent_cli.klaviyo.models import (
    CatalogItemIn,
    CatalogVariantIn,
    EventIn,
    ProfileIn,
    SubscriptionIn,
    VariantInventory,
    catalog_id,
)
from cogent_cli.sandbox.server import run_sandbox

pytestmark = [pytest.mark.anyio, pytest.mark.vcr]

CASSETTES = Path(__file__).resolve().parents[2] / "cassettes"
REPLAY_BASE_URL = "http://127.0.0.1:8765"
KEY_HEADERS = ("authorization", "x-api-key", "api-key", "x-klaviyo-api-key")


@pytest.fixture(scope="module")
def vcr_config() -> dict[str, Any]:
    return {
        "filter_headers": list(KEY_HEADERS),
        # The sandbox listens on a random port while recording.
        "match_on": ["method", "scheme", "path", "query", "raw_body"],
        "decode_compressed_response": True,
    }


@pytest.fixture(scope="module")
def vcr_cassette_dir() -> str:
    return str(CASSETTES / "klaviyo")


@pytest.fixture
def base_url(record_mode: str, tmp_path: Path) -> Iterator[str]:
    """A fresh sandbox while recording; a fixed address (never contacted) while replaying."""
    if record_mode == "none":
        yield REPLAY_BASE_URL
        return
    with run_sandbox(tmp_path / "sandbox") as sandbox:
        yield sandbox.base_url


async def test_event_creates_profile_that_reads_back_by_email_and_phone(base_url: str) -> None:
    async with KlaviyoClient(API_KEY, base_url=base_url) as klaviyo:
        await klaviyo.create_event(
            EventIn(
                metric="Placed Order",
                email="ada@shop.example",
                phone_number="+447700900123",
                unique_id="SO-1001",
                time=datetime(2026, 7, 1, 9, 30, tzinfo=UTC),
                value=249,
                value_currency="GBP",
                properties={"OrderId": "SO-1001", "ItemNames": ["Zelt 2P"]},
            )
        )
        by_email = [p async for p in klaviyo.get_profiles(ProfileFilter(email="ada@shop.example"))]
        by_phone = [p async for p in klaviyo.get_profiles(ProfileFilter(phone_number="+447700900123"))]
        metrics = {m.name: m.id async for m in klaviyo.get_metrics()}
        events = [e async for e in klaviyo.get_events(metrics["Placed Order"])]
    assert [p.email for p in by_email] == ["ada@shop.example"]
    assert [p.id for p in by_phone] == [by_email[0].id]
    assert len(events) == 1
    assert events[0].profile_id == by_email[0].id
    assert events[0].event_properties["OrderId"] == "SO-1001"


async def test_second_profile_with_taken_email_is_a_duplicate_profile_error(base_url: str) -> None:
    async with KlaviyoClient(API_KEY, base_url=base_url) as klaviyo:
        first = await klaviyo.create_profile(ProfileIn(email="grace@shop.example", first_name="Grace"))
        with pytest.raises(DuplicateProfileError) as caught:
            await klaviyo.create_profile(ProfileIn(email="grace@shop.example"))
        updated = await klaviyo.upsert_profile(ProfileIn(email="grace@shop.example", last_name="Hopper"))
    assert caught.value.duplicate_profile_id == first.id
    assert (updated.id, updated.first_name, updated.last_name) == (first.id, "Grace", "Hopper")


async def test_bad_identifier_is_a_validation_error_pointing_at_it(base_url: str) -> None:
    async with KlaviyoClient(API_KEY, base_url=base_url) as klaviyo:
        with pytest.raises(KlaviyoValidationError) as caught:
            await klaviyo.upsert_profile(ProfileIn(email="not-an-email"))
    assert caught.value.status == 400
    assert caught.value.pointer is not None and caught.value.pointer.endswith("/email")


async def test_historical_consent_reads_back_as_subscribed(base_url: str) -> None:
    async with KlaviyoClient(API_KEY, base_url=base_url) as klaviyo:
        await klaviyo.subscribe_profiles(
            [SubscriptionIn(email="linus@shop.example", consented_at=datetime(2024, 1, 2, 10, tzinfo=UTC))],
            historical_import=True,
            custom_source="Returns portal",
        )
        [profile] = [p async for p in klaviyo.get_profiles(ProfileFilter(email="linus@shop.example"))]
    assert profile.subscriptions is not None
    assert profile.subscriptions["email"]["marketing"]["consent"] == "SUBSCRIBED"


async def test_catalog_stock_update_reads_back_by_sku(base_url: str) -> None:
    async with KlaviyoClient(API_KEY, base_url=base_url) as klaviyo:
        item = await klaviyo.create_catalog_item(
            CatalogItemIn(external_id="TENT", title="Zelt 2P", description="Leicht", url="https://shop.example/tent")
        )
        await klaviyo.create_catalog_variant(
            CatalogVariantIn(
                item_id="TENT",
                external_id="TENT-M",
                title="Zelt 2P M",
                description="M",
                sku="TENT-M",
                inventory_quantity=5,
                price=249,
                url="https://shop.example/tent?m",
            )
        )
        job = await klaviyo.bulk_update_catalog_variants(
            [VariantInventory(id=catalog_id("TENT-M"), inventory_quantity=0, inventory_policy=1)]
        )
        [variant] = [v async for v in klaviyo.get_catalog_variants(filters.equals("sku", "TENT-M"))]
    assert item.id == catalog_id("TENT")
    assert job.type == "catalog-variant-bulk-update-job"
    assert (variant.inventory_quantity, variant.inventory_policy) == (0, 1)


def test_no_cassette_contains_an_api_key_or_authorization_header() -> None:
    files = [p for p in CASSETTES.rglob("*") if p.is_file()]
    assert files, f"no cassettes under {CASSETTES}"
    key_like = re.compile(r"(?:Klaviyo-API-Key\s+\S+|\bpk_[A-Za-z0-9_]{10,})")
    for path in files:
        text = path.read_text(encoding="utf-8")
        assert API_KEY not in text, path
        assert not key_like.search(text), f"{path}: {key_like.search(text)}"
        for interaction in (yaml.safe_load(text) or {}).get("interactions", []):
            for section in ("request", "response"):
                headers = {name.lower() for name in (interaction[section].get("headers") or {})}
                assert not headers & set(KEY_HEADERS), f"{path}: {section} carries {headers & set(KEY_HEADERS)}"
