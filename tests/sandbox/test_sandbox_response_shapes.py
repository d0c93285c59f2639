"""Every body the sandbox answers with validates against the response schema the spec gives for it."""

from __future__ import annotations

from typing import Any

import httpx

from cogent_cli.klaviyo.spec import match_operation
from cogent_cli.sandbox.validation import schema_validator

VARIANT = "$custom:::$default:::SKU-1"


def _check(response: httpx.Response) -> None:
    operation = match_operation(response.request.method, response.request.url.path.rstrip("/"))
    assert operation is not None
    declared = operation.definition["responses"][str(response.status_code)]
    schema = declared["content"]["application/vnd.api+json"]["schema"]
    errors = [
        f"{list(e.instance_path)}: {e.message}"
        for e in schema_validator(schema["$ref"], closed=False).iter_errors(response.json())
    ]
    assert not errors, f"{operation.operation_id} {response.status_code}: {errors[:5]}"


def _post(api: httpx.Client, path: str, data: dict[str, Any]) -> httpx.Response:
    response = api.post(path, json={"data": data})
    assert response.status_code < 300, response.text
    return response


def test_responses_match_the_spec_schemas(api: httpx.Client, events) -> None:
    api.post("/api/events", json=events(value=12.5, value_currency="GBP"))
    profile = _post(
        api,
        "/api/profiles",
        {
            "type": "profile",
            "attributes": {"email": "b@example.com", "location": {"city": "Leeds"}, "properties": {"a": 1}},
        },
    )
    profile_id = profile.json()["data"]["id"]
    suppression = _post(
        api,
        "/api/profile-suppression-bulk-create-jobs",
        {
            "type": "profile-suppression-bulk-create-job",
            "attributes": {"profiles": {"data": [{"type": "profile", "attributes": {"email": "b@example.com"}}]}},
        },
    )
    import_job = _post(
        api,
        "/api/profile-bulk-import-jobs",
        {
            "type": "profile-bulk-import-job",
            "attributes": {"profiles": {"data": [{"type": "profile", "attributes": {"email": "c@example.com"}}]}},
        },
    )
    item = _post(
        api,
        "/api/catalog-items",
        {
            "type": "catalog-item",
            "attributes": {"external_id": "SKU", "title": "T", "description": "D", "url": "https://x"},
        },
    )
    variant = _post(
        api,
        "/api/catalog-variants",
        {
            "type": "catalog-variant",
            "attributes": {
                "external_id": "SKU-1",
                "title": "T",
                "description": "D",
                "sku": "SKU-1",
                "inventory_quantity": 2,
                "price": 5,
                "url": "https://x",
            },
            "relationships": {"item": {"data": {"type": "catalog-item", "id": "$custom:::$default:::SKU"}}},
        },
    )
    variant_job = _post(
        api,
        "/api/catalog-variant-bulk-update-jobs",
        {
            "type": "catalog-variant-bulk-update-job",
            "attributes": {
                "variants": {
                    "data": [{"type": "catalog-variant", "id": VARIANT, "attributes": {"inventory_quantity": 0}}]
                }
            },
        },
    )
    upsert = _post(
        api, "/api/profile-import", {"type": "profile", "attributes": {"email": "b@example.com", "first_name": "B"}}
    )
    patched = api.patch(
        f"/api/profiles/{profile_id}",
        json={"data": {"type": "profile", "id": profile_id, "attributes": {"last_name": "L"}}},
    )
    patched_variant = api.patch(
        f"/api/catalog-variants/{VARIANT}",
        json={"data": {"type": "catalog-variant", "id": VARIANT, "attributes": {"inventory_quantity": 3}}},
    )
    metric_id = api.get("/api/metrics").json()["data"][0]["id"]
    event_id = api.get("/api/events").json()["data"][0]["id"]

    responses = [
        profile,
        suppression,
        import_job,
        item,
        variant,
        variant_job,
        upsert,
        patched,
        patched_variant,
        api.get("/api/profiles", params={"additional-fields[profile]": "subscriptions"}),
        api.get(f"/api/profiles/{profile_id}", params={"additional-fields[profile]": "subscriptions"}),
        api.get("/api/events", params={"include": "metric,profile"}),
        api.get(f"/api/events/{event_id}"),
        api.get("/api/metrics"),
        api.get(f"/api/metrics/{metric_id}"),
        api.get(f"/api/profile-bulk-import-jobs/{import_job.json()['data']['id']}"),
        api.get(f"/api/profile-bulk-import-jobs/{import_job.json()['data']['id']}/import-errors"),
        api.get(f"/api/profile-suppression-bulk-create-jobs/{suppression.json()['data']['id']}"),
        api.get("/api/catalog-items", params={"include": "variants"}),
        api.get("/api/catalog-items/$custom:::$default:::SKU"),
        api.get("/api/catalog-variants"),
        api.get(f"/api/catalog-variants/{VARIANT}"),
        api.get(f"/api/catalog-variant-bulk-update-jobs/{variant_job.json()['data']['id']}"),
    ]
    for response in responses:
        assert response.status_code < 300, response.text
        _check(response)
