"""Marketing consent: subscribe / unsubscribe jobs (klaviyo.md section 8) and email suppressions."""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from cogent_cli.sandbox.calls import Call, handles
from cogent_cli.sandbox.jobs import job_created, record_job
from cogent_cli.sandbox.jsonapi import invalid, iso, now, parse_datetime

MAX_SUBSCRIBE = 1000
MAX_UNSUBSCRIBE = 100
MAX_SUPPRESS = 100
# A new subscription lifts these suppressions; HARD_BOUNCE and INVALID_EMAIL stay.
LIFTED_BY_SUBSCRIBE = ("UNSUBSCRIBE", "SPAM_COMPLAINT", "USER_SUPPRESSED")
PHONE_CHANNELS = ("sms", "whatsapp")


def _consents(subscriptions: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """(channel, purpose, consent object) for each channel purpose named; push tokens are not consent."""
    return [
        (channel, purpose, value)
        for channel, purposes in subscriptions.items()
        for purpose, value in (purposes or {}).items()
        if isinstance(value, dict) and "consent" in value
    ]


def _check_subscribe_entry(entry: dict[str, Any], pointer: str, historical: bool) -> None:
    attributes = entry["attributes"]
    for channel, purpose, consent in _consents(attributes["subscriptions"]):
        here = f"{pointer}/attributes/subscriptions/{channel}/{purpose}/consented_at"
        consented_at = consent.get("consented_at")
        # Open tracking is the one channel purpose without a consented_at field.
        if historical and consented_at is None and (channel, purpose) != ("email", "open_tracking"):
            raise invalid("consented_at is required when historical_import is true.", pointer=here)
        if not historical and consented_at is not None:
            raise invalid("consented_at can only be given when historical_import is true.", pointer=here)
        if consented_at is not None and parse_datetime(consented_at) > now():
            raise invalid("consented_at must be in the past.", pointer=here)
        if channel in PHONE_CHANNELS and not attributes.get("phone_number"):
            raise invalid(
                f"A phone_number is required to subscribe to {channel} {purpose}.",
                pointer=f"{pointer}/attributes/phone_number",
            )
        if channel == "email" and not attributes.get("email") and not entry.get("id"):
            raise invalid(
                f"An email is required to subscribe to email {purpose}.", pointer=f"{pointer}/attributes/email"
            )


def _list_id(call: Call) -> str | None:
    related = ((call.data().get("relationships") or {}).get("list") or {}).get("data")
    return related["id"] if related else None


def _set_consent(call: Call, profile_id: str, channel: str, purpose: str, fields: dict[str, Any]) -> None:
    call.store.db["subscriptions"].upsert(
        {"profile_id": profile_id, "channel": channel, "purpose": purpose, "last_updated": iso(now()), **fields},
        pk=("profile_id", "channel", "purpose"),
    )


@handles("bulk_subscribe_profiles")
def bulk_subscribe_profiles(call: Call) -> Response:
    attributes = call.data()["attributes"]
    entries = attributes["profiles"]["data"]
    base = "/data/attributes/profiles/data"
    if len(entries) > MAX_SUBSCRIBE:
        raise invalid(
            f"At most {MAX_SUBSCRIBE} profiles can be subscribed per request, not {len(entries)}.", pointer=base
        )
    historical = bool(attributes.get("historical_import"))
    for i, entry in enumerate(entries):
        _check_subscribe_entry(entry, f"{base}/{i}", historical)
    list_id = _list_id(call)
    stamp = iso(now())
    for i, entry in enumerate(entries):
        profile_data = {
            "id": entry.get("id"),
            "attributes": {
                key: entry["attributes"][key] for key in ("email", "phone_number") if key in entry["attributes"]
            },
        }
        profile, _ = call.store.resolve_profile(profile_data, f"{base}/{i}")
        for channel, purpose, consent in _consents(entry["attributes"]["subscriptions"]):
            _set_consent(
                call,
                profile["id"],
                channel,
                purpose,
                {
                    "consent": "SUBSCRIBED",
                    "consent_timestamp": iso(parse_datetime(consent["consented_at"]))
                    if consent.get("consented_at")
                    else stamp,
                    "method": "API",
                    "method_detail": None,
                    "custom_method_detail": attributes.get("custom_source"),
                    "double_optin": 0,
                    "historical_import": int(historical),
                },
            )
            if (channel, purpose) == ("email", "marketing"):
                marks = ", ".join("?" * len(LIFTED_BY_SUBSCRIBE))
                call.store.db.execute(
                    f"delete from suppressions where profile_id = ? and list_id in ('', ?) and reason in ({marks})",
                    [profile["id"], list_id or "", *LIFTED_BY_SUBSCRIBE],
                )
        if list_id:
            call.store.db["list_members"].insert(
                {"list_id": list_id, "profile_id": profile["id"], "added_at": stamp}, ignore=True
            )
    return Response(status_code=202)


@handles("bulk_unsubscribe_profiles")
def bulk_unsubscribe_profiles(call: Call) -> Response:
    entries = call.data()["attributes"]["profiles"]["data"]
    base = "/data/attributes/profiles/data"
    if len(entries) > MAX_UNSUBSCRIBE:
        raise invalid(
            f"At most {MAX_UNSUBSCRIBE} profiles can be unsubscribed per request, not {len(entries)}.", pointer=base
        )
    list_id = _list_id(call)
    stamp = iso(now())
    for i, entry in enumerate(entries):
        attributes = entry["attributes"]
        profile_data = {"attributes": {key: attributes[key] for key in ("email", "phone_number") if key in attributes}}
        profile, _ = call.store.resolve_profile(profile_data, f"{base}/{i}")
        member = list_id is not None and call.store.one(
            "select 1 from list_members where list_id = ? and profile_id = ?", [list_id, profile["id"]]
        )
        for channel, purpose, _consent in _consents(attributes["subscriptions"]):
            if (channel, purpose) == ("email", "marketing") and member:
                # A member of the named list is unsubscribed from that list only.
                call.store.db.execute(
                    "delete from list_members where list_id = ? and profile_id = ?", [list_id, profile["id"]]
                )
                call.store.db["suppressions"].insert(
                    {"profile_id": profile["id"], "reason": "UNSUBSCRIBE", "list_id": list_id, "timestamp": stamp},
                    replace=True,
                )
                continue
            # Profiles not in the list are unsubscribed globally (spec warning on this endpoint).
            _set_consent(
                call,
                profile["id"],
                channel,
                purpose,
                {"consent": "UNSUBSCRIBED", "consent_timestamp": stamp, "method": "API", "method_detail": None},
            )
            if (channel, purpose) == ("email", "marketing"):
                call.store.db["suppressions"].insert(
                    {"profile_id": profile["id"], "reason": "UNSUBSCRIBE", "list_id": "", "timestamp": stamp},
                    replace=True,
                )
    return Response(status_code=202)


def _suppression_targets(call: Call) -> list[tuple[str, str]]:
    """(email, pointer) of each profile named, or of every member of the list given."""
    data = call.data()
    entries = ((data.get("attributes") or {}).get("profiles") or {}).get("data")
    relationships = data.get("relationships") or {}
    if entries is not None:
        base = "/data/attributes/profiles/data"
        if len(entries) > MAX_SUPPRESS:
            raise invalid(f"At most {MAX_SUPPRESS} emails per request, not {len(entries)}.", pointer=base)
        return [(entry["attributes"]["email"], f"{base}/{i}/attributes") for i, entry in enumerate(entries)]
    if relationships.get("list"):
        list_id = relationships["list"]["data"]["id"]
        rows = call.store.db.query(
            "select p.email from list_members m join profiles p on p.id = m.profile_id"
            " where m.list_id = ? and p.email is not null",
            [list_id],
        )
        return [(row["email"], "/data/relationships/list") for row in rows]
    if relationships.get("segment"):
        raise invalid(
            "The sandbox has no segments; name the profiles or a list.", pointer="/data/relationships/segment"
        )
    raise invalid("Give either profiles or a list to suppress.", pointer="/data/attributes/profiles")


def _suppression_job(call: Call, job_type: str, total: int, done: int) -> Response:
    job = record_job(call, job_type, {"total_count": total, "completed_count": done, "skipped_count": total - done})
    return job_created(call, job)


@handles("bulk_suppress_profiles")
def bulk_suppress_profiles(call: Call) -> Response:
    targets = _suppression_targets(call)
    stamp = iso(now())
    done = 0
    for email, pointer in targets:
        profile, _ = call.store.resolve_profile({"attributes": {"email": email}}, pointer.removesuffix("/attributes"))
        cursor = call.store.db.execute(
            "insert or ignore into suppressions (profile_id, reason, list_id, timestamp) values (?, 'USER_SUPPRESSED', '', ?)",
            [profile["id"], stamp],
        )
        done += cursor.rowcount
    return _suppression_job(call, "profile-suppression-bulk-create-job", len(targets), done)


@handles("bulk_unsuppress_profiles")
def bulk_unsuppress_profiles(call: Call) -> Response:
    targets = _suppression_targets(call)
    done = 0
    for email, pointer in targets:
        holder = call.store.holders(call.store.identifiers_of({"email": email}, pointer)).get("email")
        if holder:
            # Only USER_SUPPRESSED is lifted; unsubscribes, bounces and invalid emails remain.
            cursor = call.store.db.execute(
                "delete from suppressions where profile_id = ? and reason = 'USER_SUPPRESSED' and list_id = ''",
                [holder],
            )
            done += cursor.rowcount
    return _suppression_job(call, "profile-suppression-bulk-delete-job", len(targets), done)
