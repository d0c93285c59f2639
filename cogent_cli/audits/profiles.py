"""Duplicate Klaviyo profiles: exact identifier matches and fuzzy name matches within a postcode.

The heavy lifting runs inside SQLite (normalising, grouping, blocking), so a million profiles take
seconds and little memory; Python only scores the few candidate pairs that blocking leaves.

Phone numbers become E.164 with the country code and trunk prefix of the workspace's default region
taken from `phonenumbers`' metadata. Calling `phonenumbers.parse` per profile would be exact for more
exotic formats but costs milliseconds each, which a million profiles cannot afford; the rules below give
the same result for the formats shops collect (+CC..., 00CC..., national with trunk prefix, "(0)").
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import phonenumbers
from rapidfuzz.distance import JaroWinkler
from sqlite_utils import Database

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


def _sql_text(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def email_key_sql(column: str, rules: DedupeRules) -> str:
    """An SQL expression for the mailbox an address reaches: trimmed, lower-cased, plus and dot rules applied."""
    e = f"lower(trim({column}, ' ' || char(9, 10, 13)))"
    at = f"instr({e}, '@')"
    local = f"substr({e}, 1, {at} - 1)"
    domain = f"substr({e}, {at} + 1)"
    if rules.strip_plus_address:
        local = f"(case when instr({local}, '+') > 1 then substr({local}, 1, instr({local}, '+') - 1) else {local} end)"
    if rules.dotless_domains:
        domains = ", ".join(_sql_text(d.lower()) for d in rules.dotless_domains)
        local = f"(case when {domain} in ({domains}) then replace({local}, '.', '') else {local} end)"
    return f"(case when {at} > 1 and {at} < length({e}) then {local} || '@' || {domain} end)"


def phone_key_sql(column: str, rules: DedupeRules) -> str:
    """An SQL expression for a phone number in E.164, or NULL when it cannot be one."""
    country = phonenumbers.country_code_for_region(rules.default_region)
    metadata = phonenumbers.PhoneMetadata.metadata_for_region(rules.default_region)
    trunk = (metadata.national_prefix if metadata else None) or ""
    exit_code = metadata.international_prefix if metadata and (metadata.international_prefix or "").isdigit() else "00"
    digits = f"replace({column}, '(0)', '')"
    for char in (" ", "-", "(", ")", ".", "/"):
        digits = f"replace({digits}, '{char}', '')"
    digits = f"replace({digits}, char(9), '')"
    national = f"'+{country}' || substr(d, {len(trunk) + 1})" if trunk else f"'+{country}' || d"
    e164 = (
        "(case when d like '+%' then d "
        f"when d like '{exit_code}%' then '+' || substr(d, {len(exit_code) + 1}) "
        f"when {_sql_text(trunk)} != '' and d like '{trunk}%' then {national} "
        f"else '+{country}' || d end)"
    )
    valid = "(k glob '+[1-9]*' and length(k) between 9 and 16 and substr(k, 2) not glob '*[^0-9]*')"
    return f"(select case when {valid} then k end from (select {e164} as k from (select {digits} as d)))"


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


def _build_keys(db: Database, rules: DedupeRules, table: str) -> None:
    db.execute("drop table if exists temp.dedupe_keys")
    db.execute(
        f"""
        create temp table dedupe_keys as
        select rowid as rid,
               {email_key_sql("email", rules)} as email_key,
               {phone_key_sql("phone_number", rules)} as phone_key,
               nullif(trim(external_id), '') as external_key,
               nullif(upper(replace(replace(zip, ' ', ''), '-', '')), '') as zip_key,
               lower(trim(first_name)) as first_key,
               lower(trim(last_name)) as last_key
        from {table}
        """
    )


def _groups(db: Database, column: str) -> Iterator[tuple[str, list[int]]]:
    sql = (
        f"select {column} as k, group_concat(rid) as rids from temp.dedupe_keys "
        f"where {column} is not null group by {column} having count(*) > 1"
    )
    for row in db.execute(sql):
        yield row[0], [int(r) for r in row[1].split(",")]


def _fuzzy_pairs(db: Database, rules: DedupeRules) -> Iterator[tuple[int, int, float]]:
    db.execute("drop table if exists temp.dedupe_names")
    db.execute(
        """
        create temp table dedupe_names as
        select rid, zip_key, first_key, last_key, substr(first_key, 1, 2) as f2, substr(last_key, 1, 2) as l2
        from temp.dedupe_keys
        where zip_key is not null and first_key != '' and last_key != ''
        """
    )
    db.execute("create index temp.dedupe_names_zl on dedupe_names(zip_key, l2)")
    db.execute("create index temp.dedupe_names_zf on dedupe_names(zip_key, f2)")
    # Two blocking passes (postcode + start of last name, postcode + start of first name) so a typo
    # at the start of one name still meets its twin through the other.
    sql = """
        select a.rid, b.rid, a.first_key, b.first_key, a.last_key, b.last_key
        from dedupe_names a join dedupe_names b on a.zip_key = b.zip_key and a.l2 = b.l2 and a.rid < b.rid
        union
        select a.rid, b.rid, a.first_key, b.first_key, a.last_key, b.last_key
        from dedupe_names a join dedupe_names b on a.zip_key = b.zip_key and a.f2 = b.f2 and a.rid < b.rid
    """
    similarity = JaroWinkler.normalized_similarity
    first_min, last_min, mean_min = rules.first_name_similarity, rules.last_name_similarity, rules.name_similarity
    for a, b, fa, fb, la, lb in db.execute(sql):
        last = similarity(la, lb)
        if last < last_min:
            continue
        first = similarity(fa, fb)
        if first >= first_min and (first + last) / 2 >= mean_min:
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


def find_duplicates(db: Database, rules: DedupeRules, table: str = "klaviyo_profiles") -> list[Cluster]:
    """Clusters of profiles that are one person, each with its evidence, confidence and survivor."""
    _build_keys(db, rules, table)
    edges = _Edges()
    for column, kind in (("external_key", "external_id"), ("email_key", "email"), ("phone_key", "phone")):
        for key, rids in _groups(db, column):
            edges.link(rids, kind, CONFIDENCE[kind], key)
    if rules.fuzzy:
        for a, b, score in _fuzzy_pairs(db, rules):
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
    db.execute("drop table if exists temp.dedupe_keys")
    db.execute("drop table if exists temp.dedupe_names")
    clusters.sort(key=lambda c: (-c.confidence, c.key))
    return clusters


def _rows(db: Database, table: str, rids: list[int]) -> dict[int, dict[str, Any]]:
    found: dict[int, dict[str, Any]] = {}
    columns = ", ".join(PROFILE_COLUMNS)
    for start in range(0, len(rids), 500):
        chunk = rids[start : start + 500]
        marks = ", ".join("?" for _ in chunk)
        for row in db.query(f"select rowid as _rid, {columns} from {table} where rowid in ({marks})", chunk):
            found[row.pop("_rid")] = row
    return found


def normalised_emails(db: Database, rules: DedupeRules, emails: list[str]) -> dict[str, str | None]:
    """The mailbox key of each address, computed by the same SQL as the duplicate search."""
    result: dict[str, str | None] = {}
    for start in range(0, len(emails), 500):
        chunk = emails[start : start + 500]
        values = " union all ".join("select ? as e" for _ in chunk)
        for raw, key in db.execute(f"select e, {email_key_sql('e', rules)} from ({values})", chunk):
            result[raw] = key
    return result
