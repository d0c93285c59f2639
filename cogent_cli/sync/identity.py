"""Which Klaviyo profile an event belongs to.

The waterfall is: the configured external customer id, then the normalised email, then the phone
number in E.164. Every key that Klaviyo resolves is cached in the state file, so a known customer
costs no lookup. When nothing matches, the event carries the identifiers and Klaviyo creates the one
profile; when keys point at different profiles, the first key of the waterfall wins and the conflict
is reported, never papered over with a second profile.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import phonenumbers

from cogent_cli.config import IdentitySettings
from cogent_cli.events import CustomerRef
from cogent_cli.state import Store

# Klaviyo accepts at most 100 values in one `any(...)` filter page.
LOOKUP_CHUNK = 100
IDENTIFIER_FIELDS = ("external_id", "email", "phone_number")


def normalise_email(raw: str | None, settings: IdentitySettings) -> tuple[str, str] | None:
    """(address to send, canonical matching key): trimmed and lower-cased; plus and dot rules only
    shape the matching key, because the address the customer typed is the one Klaviyo must email."""
    if not raw:
        return None
    email = raw.strip().lower()
    local, at, domain = email.rpartition("@")
    if not at or not local or "." not in domain:
        return None
    key_local = local
    if settings.strip_plus_address:
        key_local = key_local.split("+", 1)[0] or key_local
    if domain in settings.dotless_domains:
        key_local = key_local.replace(".", "")
    return email, f"{key_local}@{domain}"


def normalise_phone(raw: str | None, default_region: str) -> str | None:
    """E.164, or None when the number cannot be a real one (Klaviyo rejects invalid numbers)."""
    if not raw or not raw.strip():
        return None
    try:
        parsed = phonenumbers.parse(raw, default_region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(parsed):
        return None
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


@dataclass(frozen=True)
class Identity:
    """The identifiers of one customer, normalised, in waterfall order."""

    external_id: str | None = None
    email: str | None = None
    email_key: str | None = None
    phone_number: str | None = None

    def lookup_keys(self) -> list[tuple[str, str, str]]:
        """(cache key, Klaviyo field, value to look up) in waterfall order."""
        found = []
        if self.external_id:
            found.append((f"external_id:{self.external_id}", "external_id", self.external_id))
        if self.email and self.email_key:
            found.append((f"email:{self.email_key}", "email", self.email))
        if self.phone_number:
            found.append((f"phone:{self.phone_number}", "phone_number", self.phone_number))
        return found

    def attributes(self) -> dict[str, str]:
        return {name: value for name in IDENTIFIER_FIELDS if (value := getattr(self, name))}

    def to_json(self) -> dict[str, str]:
        data = self.attributes()
        if self.email_key and self.email_key != self.email:
            data["email_key"] = self.email_key
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Identity:
        email = data.get("email")
        return cls(
            external_id=data.get("external_id"),
            email=email,
            email_key=data.get("email_key") or email,
            phone_number=data.get("phone_number"),
        )

    def __bool__(self) -> bool:
        return bool(self.external_id or self.email or self.phone_number)


def identity_from(customer: CustomerRef | None, settings: IdentitySettings) -> Identity:
    if customer is None:
        return Identity()
    email = normalise_email(customer.email, settings)
    external = customer.external_ids.get(settings.external_id_key) if settings.external_id_key else None
    return Identity(
        external_id=external.strip() if external and external.strip() else None,
        email=email[0] if email else None,
        email_key=email[1] if email else None,
        phone_number=normalise_phone(customer.phone, settings.default_region),
    )


@dataclass(frozen=True)
class Resolution:
    """Where an event goes: an existing profile, or (profile_id None) a profile Klaviyo creates from
    the identifiers. `conflict` lists every profile id the identifiers pointed at when they disagreed."""

    profile_id: str | None
    attributes: dict[str, str]
    conflict: dict[str, str] = field(default_factory=dict)


class ProfileLookup(Protocol):
    """The part of the Klaviyo client identity resolution needs."""

    def get_profiles(self, filter: Any = ..., **kwargs: Any) -> Any: ...


def _any_filter(field_name: str, values: list[str]) -> str:
    from cogent_cli.klaviyo.filters import literal

    return f"any({field_name},[{','.join(literal(v) for v in values)}])"


class IdentityResolver:
    def __init__(self, store: Store, settings: IdentitySettings) -> None:
        self.store = store
        self.settings = settings
        # Keys already read from (or written to) the state file in this run: no SELECT per wave.
        self._known: dict[str, str] = {}
        # Keys Klaviyo did not know earlier in this run: their events went with the identifiers, so
        # Klaviyo matches the profile those created; asking again would only spend lookups.
        self._absent: set[str] = set()
        # Waves overlap: one resolves at a time, so a key is never looked up twice at once.
        self._resolving = asyncio.Lock()
        # One Identity per customer for the run: a wave repeats customers, and equal identities that
        # are the same object cost no field-by-field comparison in the resolution's dicts.
        self._identities: dict[tuple[tuple[str, str], ...], Identity] = {}

    def identity(self, profile: dict[str, str]) -> Identity:
        """The Identity of an operation's stored `profile` (as `Identity.to_json` wrote it)."""
        key = tuple(profile.items())
        found = self._identities.get(key)
        if found is None:
            found = self._identities[key] = Identity.from_json(profile)
        return found

    def cached(self, keys: Iterable[str]) -> dict[str, str]:
        found: dict[str, str] = {}
        unread = []
        for key in dict.fromkeys(keys):
            if key in self._known:
                found[key] = self._known[key]
            else:
                unread.append(key)
        for start in range(0, len(unread), 500):
            chunk = unread[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for key, profile_id in self.store.db.conn.execute(
                f"select key, profile_id from identity_cache where key in ({marks})", chunk
            ):
                found[key] = profile_id
        self._known.update(found)
        return found

    def remember(self, found: dict[str, str]) -> None:
        if not found:
            return
        now = datetime.now(UTC).isoformat()
        self._known.update(found)
        with self.store.transaction() as db:
            db["identity_cache"].upsert_all(
                [{"key": k, "profile_id": v, "updated_at": now} for k, v in found.items()], pk="key"
            )

    async def _lookup(self, client: Any, missing: list[tuple[str, str, str]]) -> dict[str, str]:
        """Ask Klaviyo for every uncached key, 100 values per request, and learn every identifier
        of each profile found (so an email lookup also caches that profile's phone)."""
        # Each field's distinct values in first-seen order (dict keys: a wave can hold tens of thousands).
        unique: dict[str, dict[str, None]] = {}
        for _key, field_name, value in missing:
            unique.setdefault(field_name, {})[value] = None
        by_field = {field_name: list(values) for field_name, values in unique.items()}

        async def page(field_name: str, values: list[str]) -> list[Any]:
            return [
                profile
                async for profile in client.get_profiles(
                    filter=_any_filter(field_name, values), additional_fields=(), page_size=LOOKUP_CHUNK
                )
            ]

        tasks = [
            page(field_name, values[start : start + LOOKUP_CHUNK])
            for field_name, values in by_field.items()
            for start in range(0, len(values), LOOKUP_CHUNK)
        ]
        learned: dict[str, str] = {}
        for profiles in await asyncio.gather(*tasks):
            for profile in profiles:
                ident = Identity(
                    external_id=getattr(profile, "external_id", None),
                    phone_number=getattr(profile, "phone_number", None),
                    **_email_fields(getattr(profile, "email", None), self.settings),
                )
                for key, _f, _v in ident.lookup_keys():
                    # An identifier held by two profiles keeps the first seen; the conflict check
                    # below compares keys, so it still notices the disagreement.
                    learned.setdefault(key, profile.id)
        return learned

    async def resolve(self, client: Any, identities: Iterable[Identity]) -> dict[Identity, Resolution]:
        unique = [i for i in dict.fromkeys(identities) if i]
        all_keys = [k for ident in unique for k in ident.lookup_keys()]
        async with self._resolving:
            known = self.cached(k for k, _f, _v in all_keys)
            missing = [k for k in dict.fromkeys(all_keys) if k[0] not in known and k[0] not in self._absent]
            if missing:
                learned = await self._lookup(client, missing)
                self.remember(learned)
                known.update(learned)
                self._absent.update(key for key, _f, _v in missing if key not in learned)
        return {ident: self._decide(ident, known) for ident in unique}

    def _decide(self, ident: Identity, known: dict[str, str]) -> Resolution:
        matches = [(key, field_name, known[key]) for key, field_name, _v in ident.lookup_keys() if key in known]
        if not matches:
            return Resolution(None, ident.attributes())
        best = matches[0][2]
        attributes = ident.attributes()
        conflict: dict[str, str] = {}
        for _key, field_name, profile_id in matches:
            if profile_id != best:
                conflict[field_name] = profile_id
                # Never send an identifier that belongs to another profile: Klaviyo would move it.
                attributes.pop(field_name, None)
        if conflict:
            conflict = {matches[0][1]: best, **conflict}
        return Resolution(best, attributes, conflict)

    def forget(self, profile_id: str) -> None:
        self._known = {k: v for k, v in self._known.items() if v != profile_id}
        with self.store.transaction() as db:
            db.execute("delete from identity_cache where profile_id = ?", [profile_id])


def _email_fields(raw: str | None, settings: IdentitySettings) -> dict[str, str | None]:
    email = normalise_email(raw, settings)
    return {"email": email[0], "email_key": email[1]} if email else {}
