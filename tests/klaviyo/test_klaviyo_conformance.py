"""Every request the client can build conforms to Klaviyo's official spec (revision 2026-07-15)."""

from __future__ import annotations

import hashlib
import inspect
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import httpx
import pytest
from klaviyo_fakes import FakeClock, make_client
from klaviyo_spec_check import conformance_problems, filter_problems, parse_filter

from cogent_cli.klaviyo import filters
from cogent_cli.klaviyo.client import RETRY_AMBIGUOUS, KlaviyoClient
from cogent_cli.klaviyo.filters import ProfileFilter
from cogent_cli.klaviyo.models import (
    BackInStockIn,
    CatalogItemIn,
    CatalogVariantIn,
    CatalogVariantUpdate,
    EventIn,
    Location,
    PatchProperties,
    ProfileIn,
    SubscriptionIn,
    UnsubscriptionIn,
    VariantInventory,
    catalog_id,
)
from cogent_cli.klaviyo.spec import SPEC_FILE, load_spec, match_operation, operation, operations

pytestmark = pytest.mark.anyio

NOW = datetime.now(UTC).replace(microsecond=0)
HISTORICAL = datetime(1995, 3, 1, 9, 30, tzinfo=UTC)


def _resource(op_type: str, **attributes: Any) -> dict[str, Any]:
    return {"type": op_type, "id": "01JABCDEF", "attributes": attributes, "links": {"self": "https://a.klaviyo.com/x"}}


def canned(request: httpx.Request) -> httpx.Response:
    """A plausible Klaviyo answer for whichever operation the request is."""
    path = unquote(request.url.raw_path.decode().split("?")[0])
    op = match_operation(request.method, path)
    assert op is not None, f"{request.method} {path} is not an operation of the spec"
    success = next(code for code in op.definition["responses"] if code.startswith("2"))
    content = op.definition["responses"][success].get("content")
    if not content:
        return httpx.Response(int(success))
    kind = {
        "get_profiles": _resource("profile", email="ada@example.org"),
        "create_profile": _resource("profile", email="ada@example.org"),
        "update_profile": _resource("profile", email="ada@example.org"),
        "create_or_update_profile": _resource("profile", email="ada@example.org"),
        "merge_profiles": {"type": "profile", "id": "01DEST"},
        "get_events": _resource("event", timestamp=1, datetime="2026-01-01T00:00:00+00:00", event_properties={}),
        "get_metrics": _resource("metric", name="Placed Order"),
        "get_catalog_items": _resource("catalog-item", external_id="SKU-1", title="Tent"),
        "create_catalog_item": _resource("catalog-item", external_id="SKU-1", title="Tent"),
        "get_catalog_variants": _resource("catalog-variant", sku="SKU-1-M", inventory_quantity=3),
        "create_catalog_variant": _resource("catalog-variant", sku="SKU-1-M", inventory_quantity=3),
        "update_catalog_variant": _resource("catalog-variant", sku="SKU-1-M", inventory_quantity=0),
        "get_errors_for_bulk_import_profiles_job": _resource("import-error", code="invalid", title="t", detail="d"),
    }.get(op.operation_id) or _resource(op.path.split("/")[2].rstrip("s"), status="queued")
    collection = op.method == "GET" and "{" not in op.path.split("/")[-1]
    body = {"data": [kind] if collection else kind, "links": {"self": str(request.url)}}
    return httpx.Response(int(success), json=body)


def events(count: int, **overrides: Any) -> list[EventIn]:
    return [
        EventIn(
            metric="Fulfilled Order",
            email=f"customer{i}@example.org",
            unique_id=f"shipment-{i}",
            time=NOW - timedelta(days=1),
            properties={
                "OrderId": f"100{i}",
                "Items": [{"SKU": "TENT-2P", "Quantity": 1, "ItemPrice": Decimal("249.00")}],
            },
            value=Decimal("249.00"),
            value_currency="GBP",
            **overrides,
        )
        for i in range(count)
    ]


Scenario = Callable[[KlaviyoClient], Awaitable[Any]]


async def _collect(iterator: Any) -> list[Any]:
    return [item async for item in iterator]


SCENARIOS: dict[str, tuple[str, Scenario]] = {
    "create_event": (
        "create_event",
        lambda k: k.create_event(events(1)[0]),
    ),
    "create_event_unicode_zero_value_historical_backfill": (
        "create_event",
        lambda k: k.create_event(
            EventIn(
                metric="Rückgabe erhalten — 返品",
                phone_number="+447700900123",
                external_id="C-9 91",
                first_name="Zoë",
                profile_properties={"tier": "gold", "since": date(2020, 1, 1)},
                properties={
                    "Reason": "Größe passt nicht 👟",
                    "Quantity": 0,
                    "Note": "",
                    "Nested": {"a": [1, 2.5, None]},
                },
                time=HISTORICAL,
                value=0,
                value_currency="EUR",
                unique_id="return-ü-1",
                backfill=True,
            )
        ),
    ),
    "create_event_by_profile_id_only": (
        "create_event",
        lambda k: k.create_event(EventIn(metric="Placed Order", profile_id="01PROFILE", properties={})),
    ),
    "bulk_create_events_max_batch": (
        "bulk_create_events",
        lambda k: k.bulk_create_events(events(1000)),
    ),
    "bulk_create_events_grouped_per_profile": (
        "bulk_create_events",
        lambda k: k.bulk_create_events(
            [e.model_copy(update={"email": "same@example.org"}) for e in events(5)]
            + [EventIn(metric="Placed Order", external_id="C-1", unique_id="o-1", backfill=True, value=0)]
        ),
    ),
    "get_profiles_by_email": (
        "get_profiles",
        lambda k: _collect(k.get_profiles(ProfileFilter(email='o"brien\\@example.org'))),
    ),
    "get_profiles_any_email_phone_external": (
        "get_profiles",
        lambda k: _collect(
            k.get_profiles(
                ProfileFilter(email=["a@x.com", "b@x.com"], phone_number="+15005550006", external_id=["C-1", "C-2"]),
                additional_fields=("subscriptions", "predictive_analytics"),
                page_size=100,
                sort="-updated",
            )
        ),
    ),
    "get_profiles_raw_filter_no_additional_fields": (
        "get_profiles",
        lambda k: _collect(
            k.get_profiles(filters.greater_than("updated", HISTORICAL), additional_fields=(), page_size=1)
        ),
    ),
    "create_profile": (
        "create_profile",
        lambda k: k.create_profile(
            ProfileIn(
                email="ada@example.org",
                phone_number="+447700900123",
                external_id="C-991",
                first_name="Ada",
                location=Location(city="Zürich", country="CH", latitude=47.37, longitude="8.54", zip="8001"),
                properties={"loyalty_tier": "gold", "points": 0},
            )
        ),
    ),
    "update_profile_clears_and_patches": (
        "update_profile",
        lambda k: k.update_profile(
            "01PROFILE",
            ProfileIn(
                last_name=None,
                properties={"vip": True},
                patch_properties=PatchProperties(append={"skus": "TENT-2P"}, unset=["old"]),
            ),
        ),
    ),
    "upsert_profile": (
        "create_or_update_profile",
        lambda k: k.upsert_profile(ProfileIn(id="01PROFILE", email="ada@example.org", locale="de-CH")),
    ),
    "bulk_import_profiles_max": (
        "bulk_import_profiles",
        lambda k: k.bulk_import_profiles(
            [ProfileIn(email=f"p{i}@example.org", external_id=f"C-{i}", properties={"i": i}) for i in range(10_000)],
            list_id="LIST1",
        ),
    ),
    "get_bulk_import_job": ("get_bulk_import_profiles_job", lambda k: k.get_bulk_import_job("JOB1")),
    "get_bulk_import_errors": (
        "get_errors_for_bulk_import_profiles_job",
        lambda k: _collect(k.get_bulk_import_errors("JOB1")),
    ),
    "subscribe_profiles_historical_max": (
        "bulk_subscribe_profiles",
        lambda k: k.subscribe_profiles(
            [
                SubscriptionIn(
                    email=f"s{i}@example.org",
                    phone_number="+447700900123" if i % 2 else None,
                    channels=("email", "sms") if i % 2 else ("email",),
                    consented_at=HISTORICAL + timedelta(minutes=i),
                    age_gated_date_of_birth=date(1990, 5, 1) if i % 2 else None,
                )
                for i in range(1000)
            ],
            historical_import=True,
            list_id="LIST1",
            custom_source="Returns portal",
        ),
    ),
    "subscribe_profiles_live_by_id": (
        "bulk_subscribe_profiles",
        lambda k: k.subscribe_profiles([SubscriptionIn(email="ada@example.org", profile_id="01PROFILE")]),
    ),
    "unsubscribe_profiles_max": (
        "bulk_unsubscribe_profiles",
        lambda k: k.unsubscribe_profiles(
            [
                UnsubscriptionIn(
                    email=f"u{i}@example.org",
                    phone_number="+447700900123" if i % 2 else None,
                    channels=("email", "sms") if i % 2 else ("email",),
                )
                for i in range(100)
            ],
            list_id="LIST1",
        ),
    ),
    "suppress_profiles": (
        "bulk_suppress_profiles",
        lambda k: k.suppress_profiles([f"x{i}@example.org" for i in range(100)]),
    ),
    "unsuppress_profiles": ("bulk_unsuppress_profiles", lambda k: k.unsuppress_profiles(["x@example.org"])),
    "merge_profiles": ("merge_profiles", lambda k: k.merge_profiles("01DEST", "01SOURCE")),
    "get_events_by_metric_and_window": (
        "get_events",
        lambda k: _collect(k.get_events("METRIC1", since=HISTORICAL, until=NOW, page_size=1000)),
    ),
    "get_events_for_profile": (
        "get_events",
        lambda k: _collect(k.get_events(profile_id="01PROFILE", sort="-datetime")),
    ),
    "get_events_unfiltered": ("get_events", lambda k: _collect(k.get_events())),
    "get_metrics": ("get_metrics", lambda k: _collect(k.get_metrics())),
    "get_catalog_items": (
        "get_catalog_items",
        lambda k: _collect(k.get_catalog_items(filters.any_of("ids", [catalog_id("TENT"), catalog_id("MAT")]))),
    ),
    "get_catalog_variants_by_sku": (
        "get_catalog_variants",
        lambda k: _collect(k.get_catalog_variants(filters.equals("sku", "TENT-2P-GRÜN"))),
    ),
    "get_catalog_variants_published": (
        "get_catalog_variants",
        lambda k: _collect(k.get_catalog_variants(filters.equals("published", True))),
    ),
    "create_catalog_item": (
        "create_catalog_item",
        lambda k: k.create_catalog_item(
            CatalogItemIn(
                external_id="TENT",
                title="Zelt 2P",
                description="Leicht",
                url="https://shop.example/tent",
                price=Decimal("249.00"),
                images=["https://shop.example/tent.jpg"],
                custom_metadata={"brand": "Acme"},
                published=True,
                category_ids=("$custom:::$default:::Tents",),
            )
        ),
    ),
    "create_catalog_variant": (
        "create_catalog_variant",
        lambda k: k.create_catalog_variant(
            CatalogVariantIn(
                item_id="TENT",
                external_id="TENT-2P-M",
                title="Tent M",
                description="Medium",
                sku="TENT-2P-M",
                inventory_quantity=0,
                price=Decimal("249.00"),
                url="https://shop.example/tent?v=m",
                inventory_policy=1,
            )
        ),
    ),
    "update_catalog_variant_stock": (
        "update_catalog_variant",
        lambda k: k.update_catalog_variant(
            catalog_id("TENT-2P-M"), CatalogVariantUpdate(inventory_quantity=0, inventory_policy=1)
        ),
    ),
    "bulk_update_catalog_variants_max": (
        "bulk_update_catalog_variants",
        lambda k: k.bulk_update_catalog_variants(
            [
                VariantInventory(id=catalog_id(f"SKU-{i}"), inventory_quantity=i, inventory_policy=i % 3)
                for i in range(100)
            ]
        ),
    ),
    "get_bulk_update_catalog_variants_job": (
        "get_bulk_update_variants_job",
        lambda k: k.get_bulk_update_catalog_variants_job("JOB2"),
    ),
    "create_back_in_stock_subscription": (
        "create_back_in_stock_subscription",
        lambda k: k.create_back_in_stock_subscription(
            BackInStockIn(
                variant_id="TENT-2P-M", channels=("EMAIL", "SMS"), email="ada@example.org", phone_number="+447700900123"
            )
        ),
    ),
}


@pytest.mark.parametrize("name", list(SCENARIOS))
async def test_request_conforms_to_official_spec(name: str) -> None:
    expected_operation, scenario = SCENARIOS[name]
    transport = httpx.MockTransport(lambda request: (sent.append(request), canned(request))[1])
    sent: list[httpx.Request] = []
    async with make_client(transport, FakeClock()) as klaviyo:
        await scenario(klaviyo)
    assert sent, "the scenario sent no request"
    for request in sent:
        operation_id, problems = conformance_problems(request)
        assert operation_id == expected_operation
        assert problems == []


def test_every_client_operation_has_a_conformance_scenario() -> None:
    methods = {
        name
        for name, member in inspect.getmembers(KlaviyoClient, inspect.isfunction)
        if not name.startswith("_") and name != "aclose"
    } | {
        name
        for name, member in inspect.getmembers(KlaviyoClient)
        if inspect.isasyncgenfunction(member) and not name.startswith("_")
    }
    covered = {name.split("_max")[0] for name in SCENARIOS}
    missing = {m for m in methods if not any(c.startswith(m) for c in covered)}
    assert missing == set()
    assert {op for op, _ in SCENARIOS.values()} == set(RETRY_AMBIGUOUS)


def test_retry_policy_names_only_operations_of_the_spec() -> None:
    assert set(RETRY_AMBIGUOUS) <= set(operations())


def _body_request(op_id: str, body: Any, query: str = "") -> httpx.Request:
    op = operation(op_id)
    return httpx.Request(
        op.method,
        f"https://a.klaviyo.com{op.path}{query}",
        headers={
            "Authorization": "Klaviyo-API-Key pk_x",
            "revision": "2026-07-15",
            "Accept": "application/vnd.api+json",
            "Content-Type": "application/vnd.api+json",
        },
        content=json.dumps(body).encode() if body is not None else b"",
    )


VALID_EVENT = {
    "data": {
        "type": "event",
        "attributes": {
            "properties": {},
            "metric": {"data": {"type": "metric", "attributes": {"name": "Placed Order"}}},
            "profile": {"data": {"type": "profile", "attributes": {"email": "a@b.com"}}},
        },
    }
}


def test_checker_accepts_a_known_good_request() -> None:
    assert conformance_problems(_body_request("create_event", VALID_EVENT)) == ("create_event", [])


@pytest.mark.parametrize(
    ("mutation", "expected"),
    [
        (lambda b: b["data"].update(type="events"), "type"),
        (lambda b: b["data"]["attributes"].update(unique_ID="x"), "unique_ID"),
        (lambda b: b["data"]["attributes"].update(value="9.99"), "value"),
        (lambda b: b["data"]["attributes"].update(time="yesterday"), "time"),
        (lambda b: b["data"]["attributes"].pop("metric"), "metric"),
        (lambda b: b["data"]["attributes"]["profile"]["data"]["attributes"].update(emial="a@b.com"), "emial"),
    ],
)
def test_checker_rejects_a_request_that_breaks_the_spec(
    mutation: Callable[[dict[str, Any]], Any], expected: str
) -> None:
    body = json.loads(json.dumps(VALID_EVENT))
    mutation(body)
    _, problems = conformance_problems(_body_request("create_event", body))
    assert problems
    assert any(expected in problem for problem in problems)


def test_checker_rejects_bad_query_parameters_and_headers() -> None:
    request = _body_request("get_profiles", None, "?page%5Bsize%5D=500&pagesize=5")
    request.headers["revision"] = "2023-01-01"
    _, problems = conformance_problems(request)
    assert any("page[size]" in p for p in problems)
    assert any("'pagesize' is not in the spec" in p for p in problems)
    assert any("revision header" in p for p in problems)


@pytest.mark.parametrize(
    ("expression", "problem"),
    [
        ("equals(email,a@b.com)", "must be quoted"),
        ('equals(first_name,"Ada")', "is not filterable"),
        ('greater-than(updated,"2024-01-01T00:00:00Z")', "must be unquoted"),
        ('contains(email,"a")', "not allowed"),
        ('equals(email,"a"', "does not parse"),
    ],
)
def test_filter_checker_rejects_what_klaviyo_rejects(expression: str, problem: str) -> None:
    assert any(problem in p for p in filter_problems(operation("get_profiles"), expression))


def test_filter_parser_reads_back_escaped_strings() -> None:
    expression = filters.and_(filters.equals("email", 'a"b\\c'), filters.any_of("external_id", ["x,y", "(z)"]))
    assert parse_filter(expression) == [
        ("equals", "email", ("string", 'a"b\\c')),
        ("any", "external_id", [("string", "x,y"), ("string", "(z)")]),
    ]


def test_packaged_spec_is_byte_identical_to_the_reference_copy(reference: Path) -> None:
    shared = reference / "klaviyo-openapi-2026-07-15.json"
    if not shared.exists():
        pytest.skip("reference spec not present")
    packaged = Path(__import__("cogent_cli.klaviyo", fromlist=["x"]).__file__).parent / SPEC_FILE
    assert hashlib.sha256(packaged.read_bytes()).hexdigest() == hashlib.sha256(shared.read_bytes()).hexdigest()
    assert load_spec()["info"]["version"] == "2026-07-15"
