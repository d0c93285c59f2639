"""Profiles: read with filters, create (409 on a taken identifier), update, profile-import upsert, merge,
bulk import jobs with per-row import errors."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from starlette.responses import Response

from cogent_cli.sandbox.calls import Call, handles, paginate, require_same_id
from cogent_cli.sandbox.filters import COMPARATORS, sql_value
from cogent_cli.sandbox.jobs import job_created, record_job, stored_job
from cogent_cli.sandbox.jsonapi import ApiError, invalid, iso, json_response, not_found, now
from cogent_cli.sandbox.resources import profile_resource
from cogent_cli.sandbox.store import IDENTIFIERS, new_short_id, normalise_identifier

MAX_BULK_IMPORT = 10_000
SUPPRESSION_FIELDS = {
    "subscriptions.email.marketing.suppression.reason": ("reason", "list_id = ''"),
    "subscriptions.email.marketing.suppression.timestamp": ("timestamp", "list_id = ''"),
    "subscriptions.email.marketing.list_suppressions.reason": ("reason", "list_id != ''"),
    "subscriptions.email.marketing.list_suppressions.timestamp": ("timestamp", "list_id != ''"),
    "subscriptions.email.marketing.list_suppressions.list_id": ("list_id", "list_id != ''"),
}


def _identifier_value(field: str, value: Any) -> Any:
    if field in IDENTIFIERS and isinstance(value, str):
        try:
            return normalise_identifier(field, value, "")
        except ApiError:
            return value
    return value


def _profile_conditions(call: Call) -> tuple[list[str], list[Any]]:
    where: list[str] = []
    params: list[Any] = []
    for condition in call.filters():
        field, value = condition.field, condition.value
        if field in SUPPRESSION_FIELDS:
            column, scope = SUPPRESSION_FIELDS[field]
            where.append(
                f"id in (select profile_id from suppressions where {scope} and {column} {COMPARATORS[condition.operator]} ?)"
            )
            params.append(sql_value(value))
        elif field == "_kx":
            where.append("0")
        elif condition.operator == "any":
            values = [_identifier_value(field, item) for item in value]
            where.append(f"{field} in ({', '.join('?' * len(values))})" if values else "0")
            params += values
        else:
            where.append(f"{field} {COMPARATORS[condition.operator]} ?")
            params.append(sql_value(_identifier_value(field, value)))
    return where, params


def _profile_body(call: Call, profile: dict[str, Any]) -> dict[str, Any]:
    subscriptions = "subscriptions" in call.additional_fields("profile")
    return {
        "data": profile_resource(call.store, call.base_url, profile, subscriptions=subscriptions),
        "links": {"self": str(call.url)},
    }


@handles("get_profiles")
def get_profiles(call: Call) -> Response:
    where, params = _profile_conditions(call)
    rows, links = paginate(call, "profiles", where, params, default_sort="id", size=call.query["page[size]"])
    subscriptions = "subscriptions" in call.additional_fields("profile")
    data = [profile_resource(call.store, call.base_url, row, subscriptions=subscriptions) for row in rows]
    return json_response({"data": data, "links": links})


def _existing(call: Call, profile_id: str) -> dict[str, Any]:
    profile = call.store.profile(profile_id)
    if profile is None:
        raise not_found(f"A profile with id '{profile_id}' does not exist.")
    return profile


@handles("get_profile")
def get_profile(call: Call) -> Response:
    return json_response(_profile_body(call, _existing(call, call.path_params["id"])))


@handles("create_profile")
def create_profile(call: Call) -> Response:
    data = call.data()
    profile = call.store.create_profile(data["attributes"], "/data/attributes", data.get("meta"))
    return json_response(_profile_body(call, profile), 201)


@handles("update_profile")
def update_profile(call: Call) -> Response:
    require_same_id(call)
    data = call.data()
    _existing(call, call.path_params["id"])
    profile = call.store.update_profile(
        call.path_params["id"], data.get("attributes") or {}, "/data/attributes", data.get("meta")
    )
    return json_response(_profile_body(call, profile))


@handles("create_or_update_profile")
def create_or_update_profile(call: Call) -> Response:
    profile, created = call.store.upsert_profile(call.data())
    return json_response(_profile_body(call, profile), 201 if created else 200)


@handles("merge_profiles")
def merge_profiles(call: Call) -> Response:
    data = call.data()
    sources = data["relationships"]["profiles"].get("data") or []
    if len(sources) != 1:
        raise invalid("Exactly one source profile is required.", pointer="/data/relationships/profiles/data")
    destination = call.store.merge_profiles(data["id"], sources[0]["id"])
    body = {
        "data": {
            "type": "profile",
            "id": destination["id"],
            "links": {"self": f"{call.base_url}/api/profiles/{destination['id']}/"},
        }
    }
    return json_response(body, 201)


@handles("bulk_import_profiles")
def bulk_import_profiles(call: Call) -> Response:
    data = call.data()
    entries = data["attributes"]["profiles"]["data"]
    base = "/data/attributes/profiles/data"
    if len(entries) > MAX_BULK_IMPORT:
        raise invalid(f"A bulk import may hold at most {MAX_BULK_IMPORT} profiles, not {len(entries)}.", pointer=base)
    # Malformed identifiers fail the whole request up front, as Klaviyo's synchronous validation does.
    for i, entry in enumerate(entries):
        call.store.identifiers_of(entry.get("attributes") or {}, f"{base}/{i}/attributes")
    list_ids = [item["id"] for item in ((data.get("relationships") or {}).get("lists") or {}).get("data") or []]
    job_id_errors: list[dict[str, Any]] = []
    imported: list[str] = []
    for i, entry in enumerate(entries):
        savepoint = f"row{i}"
        call.store.db.execute(f"savepoint {savepoint}")
        try:
            profile, _ = call.store.upsert_profile(entry, f"{base}/{i}")
        except ApiError as exc:
            call.store.db.execute(f"rollback to {savepoint}")
            error = exc.errors[0]
            job_id_errors.append({**error, "original_payload": entry.get("attributes") or {}})
        else:
            imported.append(profile["id"])
        call.store.db.execute(f"release {savepoint}")
    stamp = now()
    for list_id in list_ids:
        for profile_id in imported:
            call.store.db["list_members"].insert(
                {"list_id": list_id, "profile_id": profile_id, "added_at": iso(stamp)}, ignore=True
            )
    job = record_job(
        call,
        "profile-bulk-import-job",
        {
            "total_count": len(entries),
            "completed_count": len(imported),
            "failed_count": len(job_id_errors),
            "started_at": iso(stamp),
            "expires_at": iso(stamp + timedelta(days=7)),
        },
        {"lists": {"data": [{"type": "list", "id": list_id} for list_id in list_ids]}},
    )
    for error in job_id_errors:
        call.store.db["import_errors"].insert(
            {
                "id": new_short_id(16),
                "job_id": job["id"],
                "code": error["code"],
                "title": error["title"],
                "detail": error["detail"],
                "pointer": error["source"].get("pointer"),
                "original_payload": json.dumps(error["original_payload"]),
            }
        )
    return job_created(call, job)


@handles("get_errors_for_bulk_import_profiles_job")
def get_errors_for_bulk_import_profiles_job(call: Call) -> Response:
    job = stored_job(call, "profile-bulk-import-job", call.path_params["id"])
    rows, links = paginate(
        call, "import_errors", ["job_id = ?"], [job["id"]], default_sort="rowid", size=call.query["page[size]"]
    )
    data = [
        {
            "type": "import-error",
            "id": row["id"],
            "attributes": {
                "code": row["code"],
                "title": row["title"],
                "detail": row["detail"],
                "source": {"pointer": row["pointer"]},
                "original_payload": json.loads(row["original_payload"]),
            },
            "links": {"self": f"{call.base_url}/api/import-errors/{row['id']}/"},
        }
        for row in rows
    ]
    return json_response({"data": data, "links": links})
