"""Catalog items and variants (stock levels), bulk variant updates, back-in-stock subscriptions."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from starlette.responses import Response

from cogent_cli.sandbox.calls import Call, handles, paginate, require_same_id
from cogent_cli.sandbox.jobs import job_created, record_job
from cogent_cli.sandbox.jsonapi import ApiError, error_entry, invalid, iso, json_response, not_found, now
from cogent_cli.sandbox.resources import catalog_item_resource, catalog_variant_resource
from cogent_cli.sandbox.store import new_short_id

PAGE_SIZE = 100
MAX_BULK_VARIANTS = 100
ITEM_DEFAULTS = {"description": "", "published": True, "images": [], "custom_metadata": {}}
VARIANT_DEFAULTS = {"inventory_policy": 0, "published": True, "images": [], "custom_metadata": {}}


def catalog_id(attributes: dict[str, Any]) -> str:
    """Klaviyo's compound id: {integration}:::{catalog}:::{external_id}."""
    integration = attributes.pop("integration_type", None) or "$custom"
    catalog = attributes.pop("catalog_type", None) or "$default"
    return f"{integration}:::{catalog}:::{attributes['external_id']}"


def _conflict(kind: str, resource_id: str) -> ApiError:
    return ApiError.one(
        409,
        f"A {kind} with id '{resource_id}' already exists.",
        code="duplicate",
        pointer="/data/attributes/external_id",
    )


def _item(call: Call, item_id: str, pointer: str | None = None) -> dict[str, Any]:
    row = call.store.one("select * from catalog_items where id = ?", [item_id])
    if row is None:
        raise not_found(f"A catalog item with id '{item_id}' does not exist.", pointer=pointer)
    return row


def _variant(call: Call, variant_id: str, pointer: str | None = None) -> dict[str, Any]:
    row = call.store.one("select * from catalog_variants where id = ?", [variant_id])
    if row is None:
        raise not_found(f"A catalog variant with id '{variant_id}' does not exist.", pointer=pointer)
    return row


def _one(call: Call, data: dict[str, Any], status: int = 200) -> Response:
    return json_response({"data": data, "links": {"self": str(call.url)}}, status)


@handles("create_catalog_item")
def create_catalog_item(call: Call) -> Response:
    data = call.data()
    attributes = dict(data["attributes"])
    item_id = catalog_id(attributes)
    if call.store.one("select 1 from catalog_items where id = ?", [item_id]):
        raise _conflict("catalog item", item_id)
    attributes = {**ITEM_DEFAULTS, **attributes}
    categories = [c["id"] for c in ((data.get("relationships") or {}).get("categories") or {}).get("data") or []]
    stamp = iso(now())
    row = {
        "id": item_id,
        "external_id": attributes["external_id"],
        "title": attributes["title"],
        "published": int(attributes["published"]),
        "categories": json.dumps(categories),
        "attributes": json.dumps(attributes),
        "created": stamp,
        "updated": stamp,
    }
    call.store.db["catalog_items"].insert(row)
    return _one(call, catalog_item_resource(call.base_url, row), 201)


@handles("update_catalog_item")
def update_catalog_item(call: Call) -> Response:
    require_same_id(call)
    row = _item(call, call.path_params["id"])
    data = call.data()
    attributes = {**json.loads(row["attributes"]), **data["attributes"]}
    changes: dict[str, Any] = {
        "title": attributes["title"],
        "published": int(attributes["published"]),
        "attributes": json.dumps(attributes),
        "updated": iso(now()),
    }
    categories = ((data.get("relationships") or {}).get("categories") or {}).get("data")
    if categories is not None:
        changes["categories"] = json.dumps([c["id"] for c in categories])
    call.store.db["catalog_items"].update(row["id"], changes)
    return _one(call, catalog_item_resource(call.base_url, _item(call, row["id"])))


def _catalog_conditions(call: Call) -> tuple[list[str], list[Any]]:
    where: list[str] = []
    params: list[Any] = []
    for condition in call.filters():
        field, value = condition.field, condition.value
        if field == "ids":
            where.append(f"id in ({', '.join('?' * len(value))})" if value else "0")
            params += value
        elif field == "title":
            where.append("instr(lower(title), lower(?)) > 0")
            params.append(value)
        elif field == "published":
            where.append("published = ?")
            params.append(int(bool(value)))
        elif field == "item.id":
            where.append("item_id = ?")
            params.append(value)
        elif field == "sku":
            where.append("sku = ?")
            params.append(value)
        elif field == "category.id":
            where.append("exists (select 1 from json_each(categories) where value = ?)")
            params.append(value)
    return where, params


@handles("get_catalog_items")
def get_catalog_items(call: Call) -> Response:
    where, params = _catalog_conditions(call)
    rows, links = paginate(call, "catalog_items", where, params, default_sort="created", size=PAGE_SIZE)
    body: dict[str, Any] = {"data": [catalog_item_resource(call.base_url, row) for row in rows], "links": links}
    if "variants" in call.query.get("include", []):
        body["included"] = [
            catalog_variant_resource(call.base_url, variant)
            for row in rows
            for variant in call.store.db.query(
                "select * from catalog_variants where item_id = ? order by rowid", [row["id"]]
            )
        ]
    return json_response(body)


@handles("get_catalog_item")
def get_catalog_item(call: Call) -> Response:
    return _one(call, catalog_item_resource(call.base_url, _item(call, call.path_params["id"])))


@handles("create_catalog_variant")
def create_catalog_variant(call: Call) -> Response:
    data = call.data()
    attributes = dict(data["attributes"])
    item_id = data["relationships"]["item"]["data"]["id"]
    _item(call, item_id, pointer="/data/relationships/item/data/id")
    variant_id = catalog_id(attributes)
    if call.store.one("select 1 from catalog_variants where id = ?", [variant_id]):
        raise _conflict("catalog variant", variant_id)
    attributes = {**VARIANT_DEFAULTS, **attributes}
    stamp = iso(now())
    row = {
        "id": variant_id,
        "item_id": item_id,
        "external_id": attributes["external_id"],
        "sku": attributes["sku"],
        "title": attributes["title"],
        "inventory_quantity": attributes["inventory_quantity"],
        "inventory_policy": attributes["inventory_policy"],
        "published": int(attributes["published"]),
        "attributes": json.dumps(attributes),
        "created": stamp,
        "updated": stamp,
    }
    call.store.db["catalog_variants"].insert(row)
    return _one(call, catalog_variant_resource(call.base_url, row), 201)


def _apply_variant_update(call: Call, row: dict[str, Any], changes: dict[str, Any]) -> None:
    attributes = {**json.loads(row["attributes"]), **changes}
    call.store.db["catalog_variants"].update(
        row["id"],
        {
            "sku": attributes["sku"],
            "title": attributes["title"],
            "inventory_quantity": attributes["inventory_quantity"],
            "inventory_policy": attributes["inventory_policy"],
            "published": int(attributes["published"]),
            "attributes": json.dumps(attributes),
            "updated": iso(now()),
        },
    )


@handles("update_catalog_variant")
def update_catalog_variant(call: Call) -> Response:
    require_same_id(call)
    row = _variant(call, call.path_params["id"])
    _apply_variant_update(call, row, call.data()["attributes"])
    return _one(call, catalog_variant_resource(call.base_url, _variant(call, row["id"])))


@handles("get_catalog_variants")
def get_catalog_variants(call: Call) -> Response:
    where, params = _catalog_conditions(call)
    rows, links = paginate(call, "catalog_variants", where, params, default_sort="created", size=PAGE_SIZE)
    return json_response({"data": [catalog_variant_resource(call.base_url, row) for row in rows], "links": links})


@handles("get_catalog_variant")
def get_catalog_variant(call: Call) -> Response:
    return _one(call, catalog_variant_resource(call.base_url, _variant(call, call.path_params["id"])))


@handles("bulk_update_catalog_variants")
def bulk_update_catalog_variants(call: Call) -> Response:
    entries = call.data()["attributes"]["variants"]["data"]
    base = "/data/attributes/variants/data"
    if len(entries) > MAX_BULK_VARIANTS:
        raise invalid(f"A bulk job may update at most {MAX_BULK_VARIANTS} variants, not {len(entries)}.", pointer=base)
    errors = []
    for i, entry in enumerate(entries):
        row = call.store.one("select * from catalog_variants where id = ?", [entry["id"]])
        if row is None:
            error = error_entry(
                404, f"A catalog variant with id '{entry['id']}' does not exist.", pointer=f"{base}/{i}/id"
            )
            errors.append({key: error[key] for key in ("id", "code", "title", "detail", "source")})
            continue
        _apply_variant_update(call, row, entry["attributes"])
    stamp = now()
    job = record_job(
        call,
        "catalog-variant-bulk-update-job",
        {
            "total_count": len(entries),
            "completed_count": len(entries) - len(errors),
            "failed_count": len(errors),
            "errors": errors,
            "expires_at": iso(stamp + timedelta(days=7)),
        },
        {"variants": {"data": [{"type": "catalog-variant", "id": entry["id"]} for entry in entries]}},
    )
    return job_created(call, job)


@handles("create_back_in_stock_subscription")
def create_back_in_stock_subscription(call: Call) -> Response:
    data = call.data()
    variant_id = data["relationships"]["variant"]["data"]["id"]
    _variant(call, variant_id, pointer="/data/relationships/variant/data/id")
    channels = sorted(set(data["attributes"]["channels"]))
    profile_data = (data["attributes"].get("profile") or {}).get("data")
    if profile_data is None:
        raise invalid(
            "A profile is required for a server-side back-in-stock subscription.", pointer="/data/attributes/profile"
        )
    attributes = profile_data.get("attributes") or {}
    for channel, identifier in (("EMAIL", "email"), ("SMS", "phone_number"), ("WHATSAPP", "phone_number")):
        if channel in channels and not attributes.get(identifier) and not profile_data.get("id"):
            raise invalid(
                f"Channel {channel} needs the profile's {identifier}.",
                pointer=f"/data/attributes/profile/data/attributes/{identifier}",
            )
    profile, _ = call.store.resolve_profile(profile_data, "/data/attributes/profile/data")
    call.store.db.execute(
        "insert into back_in_stock_subscriptions (id, profile_id, variant_id, channels, created) values (?, ?, ?, ?, ?)"
        " on conflict (variant_id, profile_id) do update set channels = excluded.channels",
        [new_short_id(16), profile["id"], variant_id, json.dumps(channels), iso(now())],
    )
    return Response(status_code=202)
