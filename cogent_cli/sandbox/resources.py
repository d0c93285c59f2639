"""Rows -> JSON:API resource objects shaped as the spec's response schemas."""

from __future__ import annotations

import json
import uuid
from typing import Any

from cogent_cli.sandbox.schema import event_api_id
from cogent_cli.sandbox.store import IDENTIFIERS, PLAIN_FIELDS, SandboxStore

# Event uuids are derived from event ids in this namespace (stable, unique per id, never stored).
EVENT_UUIDS = uuid.UUID("5d1c1b52-7f0e-4d7a-9a55-3f2f6c9e8b10")

LOCATION_FIELDS = (
    "address1",
    "address2",
    "city",
    "country",
    "latitude",
    "longitude",
    "region",
    "zip",
    "timezone",
    "ip",
)
PROFILE_FIELDS = (
    *IDENTIFIERS,
    *(name for name in PLAIN_FIELDS if name != "anonymous_id"),
    "created",
    "updated",
)
# Klaviyo's default method names for consent given through the API.
CAN_RECEIVE_KEY = {
    ("email", "marketing"): "can_receive_email_marketing",
    ("sms", "marketing"): "can_receive_sms_marketing",
    ("sms", "transactional"): "can_receive_sms_transactional",
    ("push", "marketing"): "can_receive_push_marketing",
}


def relationship(base_url: str, owner_type: str, owner_id: str, name: str, data: Any) -> dict[str, Any]:
    own = f"{base_url}/api/{owner_type}s/{owner_id}"
    links = {"self": f"{own}/relationships/{name}", "related": f"{own}/{name}"}
    # Without linkage data (not requested), Klaviyo sends only the links.
    return {"links": links} if data is None else {"data": data, "links": links}


def _loads(text: str | None) -> Any:
    return json.loads(text) if text else None


def subscriptions_of(store: SandboxStore, profile: dict[str, Any]) -> dict[str, Any]:
    """The `subscriptions` additional field: consent per channel, suppressions on email marketing."""
    rows = {
        (row["channel"], row["purpose"]): row
        for row in store.db.query("select * from subscriptions where profile_id = ?", [profile["id"]])
    }
    suppressions = list(
        store.db.query("select * from suppressions where profile_id = ? order by timestamp", [profile["id"]])
    )
    global_suppression = [
        {"reason": s["reason"], "timestamp": s["timestamp"]} for s in suppressions if not s["list_id"]
    ]
    list_suppressions = [
        {"list_id": s["list_id"], "reason": s["reason"], "timestamp": s["timestamp"]}
        for s in suppressions
        if s["list_id"]
    ]

    def channel(name: str, purpose: str, *, reachable: bool) -> dict[str, Any]:
        row = rows.get((name, purpose))
        consent = row["consent"] if row else "NEVER_SUBSCRIBED"
        if name == "email":
            # Email marketing reaches never-subscribed profiles too, unless they are suppressed.
            can = consent != "UNSUBSCRIBED" and not global_suppression and reachable
        else:
            can = consent == "SUBSCRIBED" and reachable
        entry: dict[str, Any] = {CAN_RECEIVE_KEY.get((name, purpose), "can_receive"): can, "consent": consent}
        entry["consent_timestamp"] = row["consent_timestamp"] if row else None
        if name in ("email", "sms"):
            entry["method"] = row["method"] if row else None
            entry["method_detail"] = row["method_detail"] if row else None
        entry["last_updated"] = row["last_updated"] if row else None
        return entry

    email = channel("email", "marketing", reachable=profile["email"] is not None)
    email.update(
        custom_method_detail=rows[("email", "marketing")]["custom_method_detail"]
        if ("email", "marketing") in rows
        else None,
        double_optin=bool(rows[("email", "marketing")]["double_optin"]) if ("email", "marketing") in rows else None,
        suppression=global_suppression,
        list_suppressions=list_suppressions,
    )
    has_phone = profile["phone_number"] is not None
    return {
        "email": {"marketing": email},
        "sms": {
            "marketing": channel("sms", "marketing", reachable=has_phone),
            "transactional": channel("sms", "transactional", reachable=has_phone),
        },
        "mobile_push": {
            "marketing": {
                key: value
                for key, value in channel("push", "marketing", reachable=True).items()
                if key in ("can_receive_push_marketing", "consent", "consent_timestamp")
            }
        },
    }


def profile_resource(
    store: SandboxStore, base_url: str, profile: dict[str, Any], *, subscriptions: bool = False
) -> dict[str, Any]:
    attributes: dict[str, Any] = {name: profile[name] for name in PROFILE_FIELDS}
    attributes["last_event_date"] = store.last_event_date(profile["id"])
    location = _loads(profile["location"]) or {}
    attributes["location"] = {name: location.get(name) for name in LOCATION_FIELDS}
    attributes["properties"] = _loads(profile["properties"]) or {}
    if subscriptions:
        attributes["subscriptions"] = subscriptions_of(store, profile)
    lists = [
        {"type": "list", "id": row["list_id"]}
        for row in store.db.query("select list_id from list_members where profile_id = ?", [profile["id"]])
    ]
    return {
        "type": "profile",
        "id": profile["id"],
        "attributes": attributes,
        "relationships": {
            "lists": relationship(base_url, "profile", profile["id"], "lists", lists),
            "segments": relationship(base_url, "profile", profile["id"], "segments", []),
        },
        "links": {"self": f"{base_url}/api/profiles/{profile['id']}/"},
    }


def metric_resource(base_url: str, metric: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "metric",
        "id": metric["id"],
        "attributes": {
            "name": metric["name"],
            "created": metric["created"],
            "updated": metric["updated"],
            "integration": {"object": "integration", "id": "0rG4eQ", "name": "API", "category": "API"},
        },
        "links": {"self": f"{base_url}/api/metrics/{metric['id']}/"},
    }


def event_properties(event: dict[str, Any]) -> dict[str, Any]:
    """As read back from Klaviyo: the sent properties plus `$event_id` (unique_id) and `$value`."""
    properties = _loads(event["properties"]) or {}
    if event["unique_id"] is not None:
        properties["$event_id"] = event["unique_id"]
    if event["value"] is not None:
        properties["$value"] = event["value"]
    return properties


def event_resource(base_url: str, event: dict[str, Any]) -> dict[str, Any]:
    event_id = event_api_id(event["id"])
    return {
        "type": "event",
        "id": event_id,
        "attributes": {
            "timestamp": event["timestamp"],
            "event_properties": event_properties(event),
            "datetime": event["time"],
            "uuid": str(uuid.uuid5(EVENT_UUIDS, event_id)),
        },
        "relationships": {
            "profile": relationship(
                base_url, "event", event_id, "profile", {"type": "profile", "id": event["profile_id"]}
            ),
            "metric": relationship(base_url, "event", event_id, "metric", {"type": "metric", "id": event["metric_id"]}),
        },
        "links": {"self": f"{base_url}/api/events/{event_id}/"},
    }


def _catalog_resource(
    base_url: str, kind: str, row: dict[str, Any], name: str, linkage: dict[str, Any] | None
) -> dict[str, Any]:
    attributes = json.loads(row["attributes"])
    attributes.update(created=row["created"], updated=row["updated"])
    return {
        "type": kind,
        "id": row["id"],
        "attributes": attributes,
        "relationships": {name: relationship(base_url, kind, row["id"], name, linkage)},
        "links": {"self": f"{base_url}/api/{kind}s/{row['id']}/"},
    }


def catalog_item_resource(base_url: str, item: dict[str, Any]) -> dict[str, Any]:
    return _catalog_resource(base_url, "catalog-item", item, "variants", None)


def catalog_variant_resource(base_url: str, variant: dict[str, Any]) -> dict[str, Any]:
    linkage = {"type": "catalog-item", "id": variant["item_id"]}
    return _catalog_resource(base_url, "catalog-variant", variant, "item", linkage)
