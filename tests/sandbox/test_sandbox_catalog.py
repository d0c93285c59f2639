"""Catalog items and variants with inventory, bulk inventory updates, back-in-stock subscriptions."""

from __future__ import annotations

import httpx

from cogent_cli.sandbox import Sandbox

ITEM_ID = "$custom:::$default:::TENT-2P"
VARIANT_ID = "$custom:::$default:::TENT-2P-GRN"


def _item(api: httpx.Client) -> dict:
    body = {
        "data": {
            "type": "catalog-item",
            "attributes": {
                "external_id": "TENT-2P",
                "title": "Two-person tent",
                "description": "Light tent",
                "url": "https://shop.example.com/tent",
                "price": 249.0,
            },
        }
    }
    response = api.post("/api/catalog-items", json=body)
    assert response.status_code == 201, response.text
    return response.json()["data"]


def _variant(api: httpx.Client, external_id: str = "TENT-2P-GRN", quantity: float = 4) -> dict:
    body = {
        "data": {
            "type": "catalog-variant",
            "attributes": {
                "external_id": external_id,
                "title": f"Tent {external_id}",
                "description": "Green",
                "sku": external_id,
                "inventory_quantity": quantity,
                "price": 249.0,
                "url": "https://shop.example.com/tent?v=green",
            },
            "relationships": {"item": {"data": {"type": "catalog-item", "id": ITEM_ID}}},
        }
    }
    response = api.post("/api/catalog-variants", json=body)
    assert response.status_code == 201, response.text
    return response.json()["data"]


def test_item_and_variant_get_compound_ids_and_defaults(api: httpx.Client) -> None:
    item = _item(api)
    variant = _variant(api)

    assert item["id"] == ITEM_ID
    assert variant["id"] == VARIANT_ID
    assert variant["attributes"]["inventory_policy"] == 0
    assert variant["attributes"]["inventory_quantity"] == 4
    assert variant["relationships"]["item"]["data"] == {"type": "catalog-item", "id": ITEM_ID}


def test_creating_an_existing_variant_is_409(api: httpx.Client) -> None:
    _item(api)
    _variant(api)

    body = {
        "data": {
            "type": "catalog-variant",
            "attributes": {
                "external_id": "TENT-2P-GRN",
                "title": "x",
                "description": "x",
                "sku": "x",
                "inventory_quantity": 1,
                "price": 1,
                "url": "https://x",
            },
            "relationships": {"item": {"data": {"type": "catalog-item", "id": ITEM_ID}}},
        }
    }
    assert api.post("/api/catalog-variants", json=body).status_code == 409


def test_variant_for_an_unknown_item_is_404(api: httpx.Client) -> None:
    body = {
        "data": {
            "type": "catalog-variant",
            "attributes": {
                "external_id": "X",
                "title": "x",
                "description": "x",
                "sku": "X",
                "inventory_quantity": 1,
                "price": 1,
                "url": "https://x",
            },
            "relationships": {"item": {"data": {"type": "catalog-item", "id": "$custom:::$default:::NOPE"}}},
        }
    }

    response = api.post("/api/catalog-variants", json=body)

    assert response.status_code == 404
    assert response.json()["errors"][0]["source"]["pointer"] == "/data/relationships/item/data/id"


def test_patch_variant_updates_stock(api: httpx.Client, sandbox: Sandbox) -> None:
    _item(api)
    _variant(api)

    body = {
        "data": {
            "type": "catalog-variant",
            "id": VARIANT_ID,
            "attributes": {"inventory_quantity": 0, "inventory_policy": 1},
        }
    }
    response = api.patch(f"/api/catalog-variants/{VARIANT_ID}", json=body)

    assert response.status_code == 200
    assert response.json()["data"]["attributes"]["inventory_quantity"] == 0
    row = sandbox.db["catalog_variants"].get(VARIANT_ID)
    assert (row["inventory_quantity"], row["inventory_policy"]) == (0, 1)


def test_inventory_policy_outside_the_enum_is_400(api: httpx.Client) -> None:
    body = {"data": {"type": "catalog-variant", "id": VARIANT_ID, "attributes": {"inventory_policy": 5}}}

    response = api.patch(f"/api/catalog-variants/{VARIANT_ID}", json=body)

    assert response.status_code == 400
    assert response.json()["errors"][0]["source"]["pointer"] == "/data/attributes/inventory_policy"


def test_variants_filter_by_sku_item_and_ids(api: httpx.Client) -> None:
    _item(api)
    _variant(api, "TENT-2P-GRN")
    _variant(api, "TENT-2P-RED")

    def ids(flt: str) -> list[str]:
        response = api.get("/api/catalog-variants", params={"filter": flt})
        assert response.status_code == 200, response.text
        return sorted(v["id"] for v in response.json()["data"])

    assert ids('equals(sku,"TENT-2P-RED")') == ["$custom:::$default:::TENT-2P-RED"]
    assert len(ids(f'equals(item.id,"{ITEM_ID}")')) == 2
    assert ids(f'any(ids,["{VARIANT_ID}"])') == [VARIANT_ID]
    assert len(ids('contains(title,"tent")')) == 2


def test_items_include_their_variants(api: httpx.Client) -> None:
    _item(api)
    _variant(api)

    body = api.get("/api/catalog-items", params={"include": "variants"}).json()

    assert [i["id"] for i in body["data"]] == [ITEM_ID]
    assert [v["id"] for v in body["included"]] == [VARIANT_ID]


def test_bulk_variant_update_job_applies_stock_and_reports_unknown_variants(
    api: httpx.Client, sandbox: Sandbox
) -> None:
    _item(api)
    _variant(api)
    body = {
        "data": {
            "type": "catalog-variant-bulk-update-job",
            "attributes": {
                "variants": {
                    "data": [
                        {
                            "type": "catalog-variant",
                            "id": VARIANT_ID,
                            "attributes": {"inventory_quantity": 12, "inventory_policy": 1},
                        },
                        {
                            "type": "catalog-variant",
                            "id": "$custom:::$default:::MISSING",
                            "attributes": {"inventory_quantity": 1},
                        },
                    ]
                }
            },
        }
    }

    response = api.post("/api/catalog-variant-bulk-update-jobs", json=body)

    assert response.status_code == 202
    job = response.json()["data"]
    status = api.get(f"/api/catalog-variant-bulk-update-jobs/{job['id']}").json()["data"]["attributes"]
    assert (status["status"], status["completed_count"], status["failed_count"]) == ("complete", 1, 1)
    assert status["errors"][0]["source"]["pointer"] == "/data/attributes/variants/data/1/id"
    assert sandbox.db["catalog_variants"].get(VARIANT_ID)["inventory_quantity"] == 12


def test_back_in_stock_subscription_is_202_and_stored_once_per_profile_and_variant(
    api: httpx.Client, sandbox: Sandbox
) -> None:
    _item(api)
    _variant(api, quantity=0)
    body = {
        "data": {
            "type": "back-in-stock-subscription",
            "attributes": {
                "channels": ["EMAIL"],
                "profile": {"data": {"type": "profile", "attributes": {"email": "a@example.com"}}},
            },
            "relationships": {"variant": {"data": {"type": "catalog-variant", "id": VARIANT_ID}}},
        }
    }

    first = api.post("/api/back-in-stock-subscriptions", json=body)
    second = api.post("/api/back-in-stock-subscriptions", json=body)

    assert (first.status_code, second.status_code) == (202, 202)
    assert first.content == b""
    [row] = list(sandbox.db["back_in_stock_subscriptions"].rows)
    assert row["variant_id"] == VARIANT_ID


def test_back_in_stock_for_an_unknown_variant_is_404(api: httpx.Client) -> None:
    body = {
        "data": {
            "type": "back-in-stock-subscription",
            "attributes": {
                "channels": ["EMAIL"],
                "profile": {"data": {"type": "profile", "attributes": {"email": "a@example.com"}}},
            },
            "relationships": {"variant": {"data": {"type": "catalog-variant", "id": "$custom:::$default:::NOPE"}}},
        }
    }

    assert api.post("/api/back-in-stock-subscriptions", json=body).status_code == 404
