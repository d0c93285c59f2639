"""The sandbox's state and Klaviyo's rules over it: profile identity, event deduplication, metrics.

Everything a request changes happens inside one transaction (see `SandboxStore.transaction`), so a
rejected request leaves no trace, as with Klaviyo's all-or-nothing validation.
"""

from __future__ import annotations

import json
import os
import random
import re
import sqlite3
import string
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from itertools import chain
from pathlib import Path
from typing import Any, NamedTuple

import phonenumbers
from sqlite_utils import Database

from cogent_cli.errors import StateError
from cogent_cli.normalise import json_text
from cogent_cli.sandbox.jsonapi import ApiError, error_entry, invalid, iso, now, parse_datetime
from cogent_cli.sandbox.schema import migrations
from cogent_cli.state.store import Checkpointer, connect_wal, write_transaction

DB_FILE = "klaviyo.db"
IDENTIFIERS = ("email", "phone_number", "external_id")
PLAIN_FIELDS = ("anonymous_id", "first_name", "last_name", "organization", "locale", "title", "image")
PROFILE_COLUMNS = ("id", *IDENTIFIERS, *PLAIN_FIELDS, "location", "properties", "created", "updated")
_BLANK_PROFILE: dict[str, Any] = dict.fromkeys(PROFILE_COLUMNS)
MAX_UNIQUE_ID = 255
MAX_EVENT_PROPERTIES = 400
CACHE_KIB = 128 * 1024
INSERT_CHUNK = 500
_EVENT_COLUMNS = (
    "id, metric_id, metric_name, profile_id, unique_id, dedupe_key, time, timestamp, value, value_currency,"
    " properties, backfill, received_at"
)
_EVENT_PLACEHOLDERS = "(" + ", ".join("?" * (_EVENT_COLUMNS.count(",") + 1)) + ")"
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s.]+$")
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_ALNUM = string.ascii_letters + string.digits
_ALNUM_BYTES = bytes(ord(_ALNUM[byte % len(_ALNUM)]) for byte in range(256))
_EARLIEST_EVENT = datetime(1990, 1, 1, tzinfo=UTC).timestamp()
_STORED_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\+00:00")


# Ids need to be unique, not secret; a seeded-from-urandom generator keeps bulk requests fast.
_ids = random.Random(os.urandom(16))


# Two Crockford digits per 10 bits: a ULID is written in 13 lookups.
_CROCKFORD_PAIRS = [high + low for high in _CROCKFORD for low in _CROCKFORD]


def new_profile_id() -> str:
    """A ULID, the shape of Klaviyo's profile ids (01H...)."""
    value = (int(time.time() * 1000) << 80) | _ids.getrandbits(80)
    return "".join([_CROCKFORD_PAIRS[(value >> shift) & 1023] for shift in range(120, -1, -10)])


def new_short_id(length: int = 6) -> str:
    """Letters and digits (random bytes mapped onto them in one call: bulk requests make thousands)."""
    return _ids.randbytes(length).translate(_ALNUM_BYTES).decode()


def duplicate_profile(existing_id: str, pointer: str = "/data/attributes") -> ApiError:
    """Klaviyo's 409 when an identifier already belongs to another profile (not in the spec; live shape)."""
    return ApiError(
        409,
        [
            error_entry(
                409,
                "A profile already exists with one of these identifiers.",
                code="duplicate_profile",
                title="Conflict.",
                pointer=pointer,
                meta={"duplicate_profile_id": existing_id},
            )
        ],
    )


def normalise_identifier(name: str, value: Any, pointer: str) -> str | None:
    """Emails are matched case-insensitively; phone numbers must be E.164."""
    if value is None:
        return None
    text = str(value).strip()
    normalised = _normalised(name, text)
    if normalised is not None:
        return normalised
    if name == "email":
        raise invalid(f"Invalid email address: '{text}'.", pointer=f"{pointer}/email")
    if name == "phone_number":
        raise invalid(
            f"Invalid phone number format (Example of a valid format: +12345678901): '{text}'.",
            pointer=f"{pointer}/phone_number",
        )
    raise invalid(f"'{name}' must not be empty.", pointer=f"{pointer}/{name}")


@lru_cache(maxsize=65_536)
def _normalised(name: str, text: str) -> str | None:
    """The identifier as stored, or None when it is not valid (cached: the same people recur)."""
    if name == "email":
        return text.lower() if _EMAIL.match(text) and len(text) < 100 else None
    if name == "phone_number":
        try:
            parsed = phonenumbers.parse(text, None)
        except phonenumbers.NumberParseException:
            return None
        if not text.startswith("+") or not phonenumbers.is_possible_number(parsed):
            return None
        return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    return text or None


def _loads(text: str | None, default: Any) -> Any:
    return json.loads(text) if text else default


class SandboxStore:
    def __init__(self, path: Path, db: Database) -> None:
        self.path = path
        self.db = db
        self._checkpointer = Checkpointer(path)  # the WAL is copied into the file off the request path
        # Past every id already stored (the file outlives the process) and, for a fresh file, shaped
        # by the clock so that ids look like any others.
        (last,) = db.conn.execute("select max(id) from events").fetchone()
        self._next_event = max(time.time_ns() // 1000, (last or 0) + 1)

    @classmethod
    def open(cls, data_dir: Path) -> SandboxStore:
        """Open (creating, mode 0600, WAL) `klaviyo.db` in `data_dir` and bring its schema up to date."""
        path = data_dir / DB_FILE
        try:
            # Benchmarks write hundreds of thousands of events: keep the indexes in memory.
            conn = connect_wal(path, cache_kib=CACHE_KIB, check_same_thread=False)
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute(f"PRAGMA mmap_size={CACHE_KIB * 1024}")
            db = Database(conn)
            migrations.apply(db)
        except sqlite3.DatabaseError as exc:
            raise StateError(
                f"{path} is not a usable sandbox data file ({exc})",
                hint="Point --data at another folder, or move the file aside to start with an empty sandbox.",
            ) from None
        return cls(path, db)

    def close(self) -> None:
        self._checkpointer.close()
        self.db.close()

    def transaction(self) -> AbstractContextManager[Database]:
        return write_transaction(self.db)

    def one(self, sql: str, params: Any = ()) -> dict[str, Any] | None:
        cursor = self.db.conn.execute(sql, params)
        row = cursor.fetchone()
        return dict(zip([column[0] for column in cursor.description], row, strict=True)) if row else None

    def write(self, table: str, row: Mapping[str, Any]) -> None:
        self.write_rows(table, [row])

    def write_rows(self, table: str, rows: Sequence[Mapping[str, Any]]) -> None:
        """Insert rows that have the same columns, a chunk of them per statement (plain SQL: bulk
        requests create up to a thousand profiles)."""
        if not rows:
            return
        columns = list(rows[0])
        placeholders = "(" + ", ".join("?" * len(columns)) + ")"
        for start in range(0, len(rows), INSERT_CHUNK):
            chunk = rows[start : start + INSERT_CHUNK]
            self.db.conn.execute(
                f"insert into {table} ({', '.join(columns)}) values {', '.join([placeholders] * len(chunk))}",
                [row[column] for row in chunk for column in columns],
            )

    def change(self, table: str, key: str, changes: Mapping[str, Any]) -> None:
        assignments = ", ".join(f"{column} = ?" for column in changes)
        self.db.conn.execute(f"update {table} set {assignments} where id = ?", [*changes.values(), key])

    # Profiles

    def profile(self, profile_id: str) -> dict[str, Any] | None:
        return self.one("select * from profiles where id = ?", [profile_id])

    def holders(self, identifiers: Mapping[str, str | None]) -> dict[str, str]:
        """Identifier name -> id of the profile holding that value, for the values given."""
        index = self.identity_index([identifiers])
        return {
            name: index[(name, value)]
            for name in IDENTIFIERS
            if (value := identifiers.get(name)) is not None and (name, value) in index
        }

    def identity_index(self, identifier_sets: Iterable[Mapping[str, str | None]]) -> dict[tuple[str, str], str]:
        """(identifier name, value) -> id of the profile holding it, for every value in the sets.

        One query per identifier kind (and per 500 values) rather than one per profile: bulk requests
        name up to a thousand profiles.
        """
        wanted: dict[str, set[str]] = {name: set() for name in IDENTIFIERS}
        for identifiers in identifier_sets:
            for name, value in identifiers.items():
                if value is not None:
                    wanted[name].add(value)
        index: dict[tuple[str, str], str] = {}
        for name, values in wanted.items():
            if values:
                # The values travel as one JSON array: binding a thousand parameters costs more.
                rows = self.db.conn.execute(
                    f"select profiles.{name}, profiles.id from json_each(?) join profiles on profiles.{name} = json_each.value",
                    [json_text.dumps(list(values))],
                )
                index.update(((name, value), profile_id) for value, profile_id in rows)
        return index

    def identifiers_of(self, attributes: Mapping[str, Any], pointer: str) -> dict[str, str | None]:
        return {
            name: normalise_identifier(name, attributes[name], pointer) for name in IDENTIFIERS if name in attributes
        }

    def create_profile(
        self,
        attributes: Mapping[str, Any],
        pointer: str,
        meta: Mapping[str, Any] | None = None,
        *,
        identifiers: dict[str, str | None] | None = None,
        holders: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        identifiers = self.identifiers_of(attributes, pointer) if identifiers is None else identifiers
        if not any(identifiers.values()) and not attributes.get("anonymous_id"):
            raise invalid(
                "At least one profile identifier (email, phone_number or external_id) is required.", pointer=pointer
            )
        holders = self.holders(identifiers) if holders is None else holders
        if holders:
            raise duplicate_profile(next(iter(holders.values())), pointer)
        row = self._new_profile(attributes, meta, identifiers, iso(now()))
        self.write("profiles", row)
        return row

    def _new_profile(
        self,
        attributes: Mapping[str, Any],
        meta: Mapping[str, Any] | None,
        identifiers: Mapping[str, str | None],
        stamp: str,
    ) -> dict[str, Any]:
        """The row of a new profile, not yet written, created at `stamp`."""
        row = {**_BLANK_PROFILE, "id": new_profile_id(), "created": stamp, "updated": stamp}
        row.update(self._profile_changes(row, attributes, meta, identifiers))
        return row

    def update_profile(
        self,
        profile_id: str,
        attributes: Mapping[str, Any],
        pointer: str,
        meta: Mapping[str, Any] | None = None,
        *,
        conflicts: str = "error",
        identifiers: dict[str, str | None] | None = None,
        holders: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """Apply attributes (null clears, absent keeps) and `meta.patch_properties`.

        An identifier held by another profile raises 409 duplicate_profile, or with `conflicts="skip"`
        is left off (how event and subscription writes behave: they never move an identifier).
        """
        current = self.profile(profile_id)
        if current is None:
            raise ApiError.one(404, f"A profile with id '{profile_id}' does not exist.", pointer=pointer)
        identifiers = dict(self.identifiers_of(attributes, pointer) if identifiers is None else identifiers)
        for name, holder in (self.holders(identifiers) if holders is None else holders).items():
            if holder != profile_id:
                if conflicts == "error":
                    raise duplicate_profile(holder, pointer)
                identifiers.pop(name)
        changes = self._profile_changes(current, attributes, meta, identifiers)
        if not changes:
            return current
        changes["updated"] = iso(now())
        self.change("profiles", profile_id, changes)
        return {**current, **changes}

    @staticmethod
    def _profile_changes(
        current: Mapping[str, Any],
        attributes: Mapping[str, Any],
        meta: Mapping[str, Any] | None,
        identifiers: Mapping[str, str | None],
    ) -> dict[str, Any]:
        """Column values that differ from `current` once the attributes and property patches apply."""
        changes: dict[str, Any] = dict(identifiers)
        for name in PLAIN_FIELDS:
            if name in attributes:
                changes[name] = attributes[name]
        if "location" in attributes:
            location = _loads(current["location"], {})
            location.update(attributes["location"] or {})
            changes["location"] = json.dumps({k: v for k, v in location.items() if v is not None}) if location else None
        properties = _loads(current["properties"], {})
        if "properties" in attributes:
            for key, value in (attributes["properties"] or {}).items():
                if value is None:
                    properties.pop(key, None)
                else:
                    properties[key] = value
        patch = (meta or {}).get("patch_properties") or {}
        for key, value in (patch.get("append") or {}).items():
            existing = properties.get(key)
            items = existing if isinstance(existing, list) else ([] if existing is None else [existing])
            properties[key] = [*items, *(value if isinstance(value, list) else [value])]
        for key, value in (patch.get("unappend") or {}).items():
            if isinstance(properties.get(key), list):
                drop = value if isinstance(value, list) else [value]
                properties[key] = [item for item in properties[key] if item not in drop]
        unset = patch.get("unset")
        for key in [unset] if isinstance(unset, str) else unset or []:
            properties.pop(key, None)
        if "properties" in attributes or patch:
            changes["properties"] = json.dumps(properties) if properties else None
        return {column: value for column, value in changes.items() if current[column] != value}

    def resolve_profile(
        self, data: Mapping[str, Any], pointer: str, *, meta: Mapping[str, Any] | None = None
    ) -> tuple[dict[str, Any], bool]:
        """Find or create the profile an event/subscription names; apply its attributes. -> (profile, created)

        An explicit id wins; otherwise the first identifier that matches (email, phone_number, external_id).
        """
        attributes = data.get("attributes") or {}
        attr_pointer = f"{pointer}/attributes"
        if data.get("id"):
            if self.profile(data["id"]) is None:
                raise invalid(f"A profile with id '{data['id']}' does not exist.", pointer=f"{pointer}/id")
            return self.update_profile(data["id"], attributes, attr_pointer, meta, conflicts="skip"), False
        identifiers = self.identifiers_of(attributes, attr_pointer)
        holders = self.holders(identifiers)
        if holders:
            chosen = next(iter(holders.values()))
            return self.update_profile(
                chosen, attributes, attr_pointer, meta, conflicts="skip", identifiers=identifiers, holders=holders
            ), False
        return self.create_profile(attributes, attr_pointer, meta, identifiers=identifiers, holders=holders), True

    def resolve_event_profiles(
        self,
        references: Sequence[Mapping[str, Any]],
        pointer_of: Callable[[int], str],
        identities: Sequence[Mapping[str, str]],
        index: dict[tuple[str, str], str],
    ) -> list[str]:
        """The profile id of each profile reference of a bulk request, in order: what `resolve_profile`
        on each in turn would give.

        `identities` are the references' `scope_identifiers` and `index` their `identity_index`, taken
        in this transaction before anything was written. They answer references that only carry
        identifiers (an invalid identifier matches no stored one, so it always reaches the checks
        below), and the index learns the profiles created for them. The first reference that would
        change a profile goes through `resolve_profile`; the index may be stale from there on, so the
        rest do too. `pointer_of(i)` gives reference i's JSON pointer, made only where it may be needed.
        """
        found: list[str] = []
        created: list[dict[str, Any]] = []  # written together, before anything reads profiles back
        stamp = iso(now())
        trusted = True
        for position, (data, identity) in enumerate(zip(references, identities, strict=True)):
            if trusted and _identifiers_only(data, identity):
                owners = set(map(index.get, identity.items()))
                if len(owners) == 1 and None not in owners:
                    # Every identifier already belongs to this profile: nothing to change.
                    found.append(owners.pop())
                    continue
                if owners == {None}:
                    pointer = pointer_of(position)
                    identifiers = self.identifiers_of(data["attributes"], f"{pointer}/attributes")
                    # Valid identifiers (they were normalised) that no profile holds (the index says).
                    profile = self._new_profile(data["attributes"], None, identifiers, stamp)
                    created.append(profile)
                    index.update(((name, value), profile["id"]) for name, value in identifiers.items() if value)
                    found.append(profile["id"])
                    continue
            trusted = False
            self.write_rows("profiles", created)
            created = []
            profile, _ = self.resolve_profile(data, pointer_of(position), meta=data.get("meta"))
            found.append(profile["id"])
        self.write_rows("profiles", created)
        return found

    def upsert_profile(self, data: Mapping[str, Any], pointer: str = "/data") -> tuple[dict[str, Any], bool]:
        """profile-import: create, or update the one profile the identifiers name. -> (profile, created)"""
        attributes = data.get("attributes") or {}
        meta = data.get("meta")
        attr_pointer = f"{pointer}/attributes"
        if data.get("id"):
            if self.profile(data["id"]) is None:
                raise ApiError.one(404, f"A profile with id '{data['id']}' does not exist.", pointer=f"{pointer}/id")
            return self.update_profile(data["id"], attributes, attr_pointer, meta), False
        holders = self.holders(self.identifiers_of(attributes, attr_pointer))
        owners = list(dict.fromkeys(holders.values()))
        if len(owners) > 1:
            raise duplicate_profile(owners[1], attr_pointer)
        if owners:
            return self.update_profile(owners[0], attributes, attr_pointer, meta), False
        return self.create_profile(attributes, attr_pointer, meta), True

    def merge_profiles(self, destination_id: str, source_id: str) -> dict[str, Any]:
        """Fold the source into the destination (destination's values win) and delete the source."""
        destination, source = self.profile(destination_id), self.profile(source_id)
        if destination is None:
            raise ApiError.one(404, f"A profile with id '{destination_id}' does not exist.", pointer="/data/id")
        if source is None:
            raise ApiError.one(
                404,
                f"A profile with id '{source_id}' does not exist.",
                pointer="/data/relationships/profiles/data/0/id",
            )
        if source_id == destination_id:
            raise invalid("A profile cannot be merged into itself.", pointer="/data/relationships/profiles/data/0/id")
        taken = {
            name: source[name]
            for name in (*IDENTIFIERS, *PLAIN_FIELDS)
            if destination[name] is None and source[name] is not None
        }
        properties = {**_loads(source["properties"], {}), **_loads(destination["properties"], {})}
        location = {**_loads(source["location"], {}), **_loads(destination["location"], {})}
        params = [destination_id, source_id]
        # Events the destination already has (same metric and unique_id) stay deduplicated.
        self.db.execute("update or ignore events set profile_id = ? where profile_id = ?", params)
        self.db.execute("delete from events where profile_id = ?", [source_id])
        for table in ("subscriptions", "suppressions", "list_members", "back_in_stock_subscriptions"):
            self.db.execute(f"update or ignore {table} set profile_id = ? where profile_id = ?", params)
            self.db.execute(f"delete from {table} where profile_id = ?", [source_id])
        self.db["profiles"].delete(source_id)
        self.db["profiles"].update(
            destination_id,
            {
                **taken,
                "properties": json.dumps(properties) if properties else None,
                "location": json.dumps(location) if location else None,
                "updated": iso(now()),
            },
        )
        return self.profile(destination_id) or destination

    # Metrics and events

    def metric_for(self, name: str) -> dict[str, Any]:
        """The metric of that name, created on first use as Klaviyo does."""
        row = self.one("select * from metrics where name = ?", [name])
        if row:
            return row
        stamp = iso(now())
        row = {"id": new_short_id(), "name": name, "created": stamp, "updated": stamp}
        self.write("metrics", row)
        return row

    def record_events(self, events: Sequence[tuple[str, CheckedEvent]]) -> int:
        """Store (profile id, checked event) pairs, each unless (profile, metric, unique_id) is already
        there. -> how many were stored (the rest were duplicates, dropped silently)."""
        metrics: dict[str, str] = {}
        received = iso(now())
        # Numbered in order, so that the table grows at its end (bulk requests write a thousand at a time).
        first_id = self._next_event
        self._next_event += len(events)
        rows: list[tuple[Any, ...]] = []
        append = rows.append
        for index, (profile_id, event) in enumerate(events):
            name, unique_id, stamp, timestamp, value, currency, properties, backfill = event
            metric_id = metrics.get(name) or metrics.setdefault(name, self.metric_for(name)["id"])
            append(
                (
                    first_id + index,
                    metric_id,
                    name,
                    profile_id,
                    unique_id,
                    # Without a unique_id Klaviyo deduplicates on the time to the second.
                    unique_id if unique_id is not None else f"time:{stamp}",
                    stamp,
                    timestamp,
                    value,
                    currency,
                    properties,
                    backfill,
                    received,
                )
            )
        stored = 0
        # One multi-row statement per chunk; its change count leaves out the duplicates it ignored.
        for start in range(0, len(rows), INSERT_CHUNK):
            chunk = rows[start : start + INSERT_CHUNK]
            values = ", ".join([_EVENT_PLACEHOLDERS] * len(chunk))
            stored += self.db.conn.execute(
                f"insert or ignore into events ({_EVENT_COLUMNS}) values {values}", list(chain.from_iterable(chunk))
            ).rowcount
        return stored

    def last_event_date(self, profile_id: str) -> str | None:
        """The time of the profile's latest event (Klaviyo's `last_event_date`)."""
        (latest,) = self.db.conn.execute("select max(time) from events where profile_id = ?", [profile_id]).fetchone()
        return latest

    @staticmethod
    def dedupe_scope(
        profile_data: Mapping[str, Any], identifiers: Mapping[str, str], index: Mapping[tuple[str, str], str]
    ) -> str:
        """Which profile a not-yet-written event belongs to, for spotting repeats inside one bulk request;
        `identifiers` are the reference's `scope_identifiers`, `index` their `identity_index`."""
        if profile_data.get("id"):
            return f"id:{profile_data['id']}"
        for name, value in identifiers.items():
            holder = index.get((name, value))
            if holder is not None:
                return f"id:{holder}"
        return "new:" + json.dumps(identifiers, sort_keys=True)


class CheckedEvent(NamedTuple):
    """An event's attributes as stored, once `EventChecks` has passed them."""

    metric: str
    unique_id: str | None
    time: str  # ISO 8601 in UTC, to the second
    timestamp: int
    value: Any
    value_currency: str | None
    properties: str  # JSON
    backfill: int


class EventChecks:
    """Klaviyo's limits on an event beyond the schema, for the events of one request (arriving at `current`)."""

    def __init__(self, current: datetime) -> None:
        self.current = current
        self.latest = (current + timedelta(days=365)).timestamp()

    def check(self, attributes: Mapping[str, Any]) -> CheckedEvent:
        """-> the event as stored; `ApiError` (400) for the first limit broken, its pointer relative to the
        event's attributes (see `ApiError.under`)."""
        name = attributes["metric"]["data"]["attributes"]["name"]
        if not name or len(name) >= 128:
            raise invalid("Metric name must be 1 to 127 characters.", pointer="/metric/data/attributes/name")
        unique_id = attributes.get("unique_id")
        if unique_id is not None and not 1 <= len(unique_id) <= MAX_UNIQUE_ID:
            raise invalid(f"unique_id must be 1 to {MAX_UNIQUE_ID} characters.", pointer="/unique_id")
        properties = attributes.get("properties")
        if properties and len(properties) > MAX_EVENT_PROPERTIES:
            raise invalid(f"An event may have at most {MAX_EVENT_PROPERTIES} properties.", pointer="/properties")
        stamp = attributes.get("time")
        # Clients mostly send the stored form already: parsing and formatting it again would cost more
        # than all the checks above.
        if stamp is not None and _STORED_TIME.fullmatch(stamp):
            timestamp = datetime.fromisoformat(stamp).timestamp()
        else:
            moment = self.current if stamp is None else parse_datetime(stamp)
            moment = moment.astimezone(UTC).replace(microsecond=0)
            stamp, timestamp = moment.isoformat(), moment.timestamp()
        if not _EARLIEST_EVENT <= timestamp <= self.latest:
            raise invalid(
                "The time must be after the year 1990 and can only be up to 1 year in the future.",
                pointer="/time",
            )
        return CheckedEvent._make(
            (
                name,
                unique_id,
                stamp,
                int(timestamp),
                attributes.get("value"),
                attributes.get("value_currency"),
                json_text.dumps(properties) if properties else "{}",
                1 if attributes.get("backfill") else 0,
            )
        )


def scope_identifiers(profile_data: Mapping[str, Any]) -> dict[str, str]:
    """The identifiers a profile reference gives, normalised where valid (invalid ones fail later, with
    their pointer, when the profile is resolved)."""
    attributes = profile_data.get("attributes") or {}
    identifiers = {}
    for name in IDENTIFIERS:
        value = attributes.get(name)
        if value is not None:
            text = str(value)
            identifiers[name] = _normalised(name, text.strip()) or text
    return identifiers


def _identifiers_only(profile_data: Mapping[str, Any], identity: Mapping[str, str]) -> bool:
    """Whether a profile reference names a profile by identifiers alone (no id, meta or other
    attributes); `identity` is its `scope_identifiers`, which hold every identifier that is not null."""
    return (
        bool(identity)
        and len(identity) == len(profile_data["attributes"])
        and not profile_data.get("id")
        and not profile_data.get("meta")
    )
