"""Duplicate Klaviyo profiles: exact identifier matches and fuzzy name matches within a postcode.

One pass over the mirror streams the identifier columns in chunks and groups the normalised keys in
dictionaries, so a million profiles cost one table scan and no per-profile objects; rapidfuzz then
scores only the name pairs that share a postcode block.

Emails become the mailbox key that identity resolution matches on (`normalise_email`). Phone numbers
become E.164 with the country code and trunk prefix of the workspace's default region taken from
`phonenumbers`' metadata. Calling `phonenumbers.parse` per profile would be exact for more exotic
formats but costs a millisecond each, which a million profiles cannot afford; the rules below give
the same result for the formats shops collect (+CC..., 00CC..., national with trunk prefix, "(0)").
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import cached_property, partial
from itertools import combinations
from typing import Any

import phonenumbers
from rapidfuzz import process
from rapidfuzz.distance import JaroWinkler
from sqlite_utils import Database

from cogent_cli.config import IdentitySettings
from cogent_cli.sync.identity import normalise_email

# How sure an edge of each kind makes us that two profiles are one person.
CONFIDENCE = {"external_id": 1.0, "email": 0.99, "phone": 0.95, "phone_only": 0.6}
FUZZY_FLOOR, FUZZY_CEILING = 0.7, 0.9
PROFILE_COLUMNS = (
    "id",
    "email",
    "phone_number",
    "external_id",
    "first_name",
    "last_name",
    "zip",
    "address1",
    "created",
    "updated",
    "last_event_date",
)
# Rows fetched per round trip while scanning the mirror.
SCAN_CHUNK = 20_000
# A name block larger than this is compared in rapidfuzz's C loop instead of pair by pair in Python.
LARGE_BLOCK = 48
_PHONE_PUNCTUATION = str.maketrans("", "", " -()./\t")


@dataclass(frozen=True)
class DedupeRules:
    strip_plus_address: bool = False
    dotless_domains: tuple[str, ...] = ("gmail.com", "googlemail.com")
    default_region: str = "GB"
    fuzzy: bool = True
    # Jaro-Winkler similarity each name must reach, and their mean, for a fuzzy candidate.
    first_name_similarity: float = 0.85
    last_name_similarity: float = 0.85
    name_similarity: float = 0.92

    @cached_property
    def identity(self) -> IdentitySettings:
        return IdentitySettings(
            strip_plus_address=self.strip_plus_address,
            dotless_domains=[d.lower() for d in self.dotless_domains],
            default_region=self.default_region,
        )


def mailbox(raw: str | None, rules: DedupeRules) -> str | None:
    """The mailbox an address reaches: trimmed, lower-cased, plus and dot rules applied."""
    found = normalise_email(raw, rules.identity)
    return found[1] if found else None


def email_key_sql(db: Database, column: str, rules: DedupeRules) -> str:
    """An SQL expression (a function registered on `db`) for the `mailbox` of an address column."""
    digest = hashlib.sha1(repr((rules.strip_plus_address, rules.dotless_domains)).encode()).hexdigest()[:12]
    name = f"cogent_mailbox_{digest}"
    db.conn.create_function(name, 1, lambda raw: mailbox(raw, rules), deterministic=True)
    return f"{name}({column})"


def phone_key(rules: DedupeRules) -> Callable[[str | None], str | None]:
    """A function giving a phone number in E.164 for the rules' default region, or None when it cannot be one."""
    country = f"+{phonenumbers.country_code_for_region(rules.default_region)}"
    metadata = phonenumbers.PhoneMetadata.metadata_for_region(rules.default_region)
    trunk = (metadata.national_prefix if metadata else None) or ""
    exit_code = metadata.international_prefix if metadata and (metadata.international_prefix or "").isdigit() else "00"

    def key(raw: str | None) -> str | None:
        if not raw:
            return None
        digits = raw.replace("(0)", "").translate(_PHONE_PUNCTUATION)
        if digits.startswith("+"):
            e164 = digits
        elif digits.startswith(exit_code):
            e164 = "+" + digits[len(exit_code) :]
        elif trunk and digits.startswith(trunk):
            e164 = country + digits[len(trunk) :]
        else:
            e164 = country + digits
        number = e164[1:]
        if 8 <= len(number) <= 15 and number[0] != "0" and number.isascii() and number.isdigit():
            return e164
        return None

    return key


@dataclass
class Cluster:
    members: list[dict[str, Any]]
    reasons: list[str]
    confidence: float
    survivor: str
    key: str = ""

    def as_evidence(self) -> dict[str, Any]:
        return {
            "profiles": self.members,
            "reasons": self.reasons,
            "confidence": round(self.confidence, 3),
            "survivor": self.survivor,
        }


@dataclass
class _Edges:
    parent: dict[int, int] = field(default_factory=dict)
    reasons: dict[int, list[tuple[str, float, str]]] = field(default_factory=dict)

    def find(self, x: int) -> int:
        parent = self.parent
        root = x
        while parent.get(root, root) != root:
            root = parent[root]
        while parent.get(x, x) != root:
            parent[x], x = root, parent[x]
        return root

    def link(self, members: list[int], kind: str, confidence: float, detail: str) -> None:
        first = members[0]
        for other in members[1:]:
            a, b = self.find(first), self.find(other)
            if a != b:
                self.parent[b] = a
        self.reasons.setdefault(first, []).append((kind, confidence, detail))

    def clusters(self) -> list[list[int]]:
        groups: dict[int, list[int]] = {}
        for node in set(self.parent) | set(self.parent.values()):
            groups.setdefault(self.find(node), []).append(node)
        return [sorted(members) for members in groups.values()]


class _KeyGroups:
    """Rows sharing a key, built without a list for the keys only one row has."""

    def __init__(self) -> None:
        self.first: dict[str, int] = {}
        self.shared: dict[str, list[int]] = {}

    def add(self, rids: Iterable[int], keys: Iterable[str | None]) -> None:
        first, shared = self.first, self.shared
        for rid, key in zip(rids, keys, strict=True):
            if key is not None and (seen := first.setdefault(key, rid)) != rid:
                if key in shared:
                    shared[key].append(rid)
                else:
                    shared[key] = [seen, rid]


@dataclass
class ProfileScan:
    """What one pass over the mirror learns: identifier groups, name blocks and every mailbox held."""

    emails: _KeyGroups = field(default_factory=_KeyGroups)
    phones: _KeyGroups = field(default_factory=_KeyGroups)
    externals: _KeyGroups = field(default_factory=_KeyGroups)
    # Normalised postcode -> (rowid, first name, last name) of the profiles with both names.
    blocks: dict[str, list[tuple[int, str, str]]] = field(default_factory=dict)

    @property
    def mailboxes(self) -> dict[str, int]:
        return self.emails.first


def _strip(value: str | None) -> str | None:
    return (value.strip() or None) if value else None


def scan_profiles(db: Database, rules: DedupeRules, table: str = "klaviyo_profiles") -> ProfileScan:
    scan = ProfileScan()
    email = partial(normalise_email, settings=rules.identity)
    phone = phone_key(rules)
    # Raw spelling -> normalised form, so each distinct name or postcode is worked out (and held) once.
    names: dict[str, str] = {}
    postcodes: dict[str, str] = {}
    cursor = db.execute(
        f"select rowid, email, phone_number, external_id, zip, first_name, last_name from [{table}] order by rowid"
    )
    blocks = scan.blocks
    while chunk := cursor.fetchmany(SCAN_CHUNK):
        rids, emails, phones, externals, zips, firsts, lasts = zip(*chunk, strict=True)
        scan.emails.add(rids, [found[1] if found else None for found in map(email, emails)])
        scan.phones.add(rids, map(phone, phones))
        scan.externals.add(rids, map(_strip, externals))
        if not rules.fuzzy:
            continue
        for rid, zip_code, first, last in zip(rids, zips, firsts, lasts, strict=True):
            if not (zip_code and first and last):
                continue
            block = postcodes.get(zip_code)
            if block is None:
                block = postcodes[zip_code] = zip_code.replace(" ", "").replace("-", "").upper()
            first = names.get(first) or names.setdefault(first, first.strip().lower())
            last = names.get(last) or names.setdefault(last, last.strip().lower())
            if block and first and last:
                if block in blocks:
                    blocks[block].append((rid, first, last))
                else:
                    blocks[block] = [(rid, first, last)]
    return scan


def _fuzzy_pairs(blocks: dict[str, list[tuple[int, str, str]]], rules: DedupeRules) -> Iterator[tuple[int, int, float]]:
    """Pairs whose names are alike within a postcode, where they also share the start of a first or
    last name (two blocking keys, so a typo at the start of one name still meets its twin)."""
    similarity = JaroWinkler.normalized_similarity
    first_min, last_min, mean_min = rules.first_name_similarity, rules.last_name_similarity, rules.name_similarity
    for block in blocks.values():
        if len(block) < 2:
            continue
        if len(block) > LARGE_BLOCK:
            yield from _large_block_pairs(block, rules)
            continue
        for (a, fa, la), (b, fb, lb) in combinations(block, 2):
            if fa[:2] != fb[:2] and la[:2] != lb[:2]:
                continue
            last = similarity(la, lb, score_cutoff=last_min)
            if not last:
                continue
            first = similarity(fa, fb, score_cutoff=first_min)
            if first and first + last >= 2 * mean_min:
                yield a, b, (first + last) / 2


def _large_block_pairs(block: list[tuple[int, str, str]], rules: DedupeRules) -> Iterator[tuple[int, int, float]]:
    """The same pairs as the small-block loop, scoring each member against the rest in one rapidfuzz call."""
    by_prefix: dict[tuple[str, str], list[tuple[int, str, str]]] = {}
    for member in block:
        by_prefix.setdefault(("l", member[2][:2]), []).append(member)
        by_prefix.setdefault(("f", member[1][:2]), []).append(member)
    similarity = JaroWinkler.normalized_similarity
    found: set[tuple[int, int]] = set()
    for group in by_prefix.values():
        lasts = [m[2] for m in group]
        for i, (a, fa, la) in enumerate(group[:-1]):
            for _name, last, j in process.extract(
                la, lasts[i + 1 :], scorer=similarity, score_cutoff=rules.last_name_similarity, limit=None
            ):
                b, fb, _lb = group[i + 1 + j]
                first = similarity(fa, fb, score_cutoff=rules.first_name_similarity)
                if first and first + last >= 2 * rules.name_similarity and (a, b) not in found:
                    found.add((a, b))
                    yield a, b, (first + last) / 2


def _names_agree(a: dict[str, Any], b: dict[str, Any]) -> bool:
    def name(p: dict[str, Any]) -> str:
        return f"{(p.get('first_name') or '').strip().lower()} {(p.get('last_name') or '').strip().lower()}".strip()

    na, nb = name(a), name(b)
    return not na or not nb or JaroWinkler.normalized_similarity(na, nb) >= 0.85


def survivor_of(members: list[dict[str, Any]]) -> str:
    """The profile to keep: one with an external id, then the most recently active, then the oldest."""
    ordered = sorted(members, key=lambda p: (p.get("created") or "9999", p["id"]))
    ordered.sort(key=lambda p: p.get("last_event_date") or "", reverse=True)
    ordered.sort(key=lambda p: 0 if p.get("external_id") else 1)
    return ordered[0]["id"]


def find_duplicates(
    db: Database, rules: DedupeRules, table: str = "klaviyo_profiles", scan: ProfileScan | None = None
) -> list[Cluster]:
    """Clusters of profiles that are one person, each with its evidence, confidence and survivor."""
    scan = scan or scan_profiles(db, rules, table)
    edges = _Edges()
    for groups, kind in ((scan.externals, "external_id"), (scan.emails, "email"), (scan.phones, "phone")):
        for key, rids in groups.shared.items():
            edges.link(rids, kind, CONFIDENCE[kind], key)
    if rules.fuzzy:
        for a, b, score in _fuzzy_pairs(scan.blocks, rules):
            confidence = FUZZY_FLOOR + (FUZZY_CEILING - FUZZY_FLOOR) * score
            edges.link([a, b], "name+postcode", confidence, f"name similarity {score:.2f}")
    groups = edges.clusters()
    rows = _rows(db, table, [rid for members in groups for rid in members])
    clusters = []
    for members in groups:
        profiles = [rows[rid] for rid in members]
        found = [r for rid in members for r in edges.reasons.get(rid, [])]
        confidence = max(c for _, c, _ in found)
        if all(kind == "phone" for kind, _, _ in found) and not all(_names_agree(profiles[0], p) for p in profiles):
            # A shared phone with different names is often a household, not one person.
            confidence = CONFIDENCE["phone_only"]
        reasons = sorted(
            {f"same {kind}: {detail}" if kind != "name+postcode" else f"{kind}: {detail}" for kind, _, detail in found}
        )
        ids = sorted(p["id"] for p in profiles)
        clusters.append(
            Cluster(
                members=profiles,
                reasons=reasons,
                confidence=confidence,
                survivor=survivor_of(profiles),
                key="profiles:" + "+".join(ids),
            )
        )
    clusters.sort(key=lambda c: (-c.confidence, c.key))
    return clusters


def _rows(db: Database, table: str, rids: list[int]) -> dict[int, dict[str, Any]]:
    found: dict[int, dict[str, Any]] = {}
    columns = ", ".join(PROFILE_COLUMNS)
    for start in range(0, len(rids), 500):
        chunk = rids[start : start + 500]
        marks = ", ".join("?" for _ in chunk)
        for row in db.query(f"select rowid as _rid, {columns} from [{table}] where rowid in ({marks})", chunk):
            found[row.pop("_rid")] = row
    return found
