"""klaviyo-profiles: duplicate profiles and guest-checkout ghosts.

Duplicates: the same mailbox (case, whitespace, plus-address and dot rules from [identity]), the same
phone in E.164, the same external id, or a similar name at the same postcode. Each cluster lists its
profiles, the evidence, a confidence and the proposed survivor; `--export-merges FILE` turns the
clusters into merge proposals for `cogent merge apply`.

Ghosts: orders whose customer email has no profile, and profiles holding orders of another identity.
"""

from __future__ import annotations

from collections.abc import Container, Iterator
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from cogent_cli.audits import AuditContext, Issue, audit
from cogent_cli.audits.profiles import DedupeRules, email_key_sql, find_duplicates, mailbox, scan_profiles

ORDER_FACTS = ("order.placed", "order.edited", "shipment.despatched", "refund.processed", "return.lodged")


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Override [identity] for this audit only (None: use [identity]).
    strip_plus_address: bool | None = None
    dotless_domains: list[str] | None = None
    fuzzy: bool = True
    first_name_similarity: float = Field(0.85, ge=0, le=1)
    last_name_similarity: float = Field(0.85, ge=0, le=1)
    name_similarity: float = Field(0.92, ge=0, le=1)
    # Clusters below this confidence are not reported.
    min_confidence: float = Field(0.0, ge=0, le=1)


@audit(
    name="klaviyo-profiles",
    description="Duplicate profiles (email, phone, external id, name + postcode) and guest-checkout ghost profiles.",
    owner_class="identity_conflict",
    warning_from=2,
    error_from=None,
    params=Params,
    fix="Review the cluster, then `cogent audit klaviyo-profiles --export-merges merges.json` and "
    "`cogent merge apply merges.json`.",
)
def klaviyo_profiles(ctx: AuditContext) -> Iterator[Issue]:
    ctx.mirror_window()
    params: Params = ctx.params  # type: ignore[assignment]
    base = ctx.identity_rules()
    rules = DedupeRules(
        strip_plus_address=base.strip_plus_address if params.strip_plus_address is None else params.strip_plus_address,
        dotless_domains=base.dotless_domains if params.dotless_domains is None else tuple(params.dotless_domains),
        default_region=base.default_region,
        fuzzy=params.fuzzy,
        first_name_similarity=params.first_name_similarity,
        last_name_similarity=params.last_name_similarity,
        name_similarity=params.name_similarity,
    )
    scan = scan_profiles(ctx.db, rules)
    for cluster in find_duplicates(ctx.db, rules, scan=scan):
        if cluster.confidence < params.min_confidence:
            continue
        survivor = next(p for p in cluster.members if p["id"] == cluster.survivor)
        yield Issue(
            key=cluster.key,
            title=f"{len(cluster.members)} profiles look like one person ({cluster.reasons[0]}); "
            f"confidence {cluster.confidence:.2f}, keep {cluster.survivor}",
            count=len(cluster.members),
            # Fuzzy-only clusters are candidates for review, not yet problems.
            severity=None if cluster.confidence >= 0.9 else "info",
            profile_id=cluster.survivor,
            email=survivor.get("email"),
            evidence={"cluster": cluster.as_evidence()},
        )
    yield from _ghosts(ctx, rules, scan.mailboxes)


def _ghosts(ctx: AuditContext, rules: DedupeRules, mailboxes: Container[str]) -> Iterator[Issue]:
    if not ctx.has_table("events"):
        return
    types = ", ".join(f"'{t}'" for t in ORDER_FACTS)
    since = "and occurred_at >= :since" if ctx.since else ""
    args = {"since": ctx.since.strftime("%Y-%m-%dT%H:%M:%S") if ctx.since else None}
    missing: dict[str, _Orders] = {}
    for row in ctx.rows(
        f"select email, order_number, occurred_at from events where email is not null and event_type in ({types}) {since}",
        args,
    ):
        key = mailbox(row["email"], rules)
        if key is not None and key not in mailboxes:
            missing.setdefault(key, _Orders()).add(row)
    for key, found in sorted(missing.items()):
        orders = sorted(found.orders)
        yield Issue(
            key=f"no-profile:{key}",
            title=f"{len(orders)} order(s) for {found.email} but no Klaviyo profile has that email",
            count=len(orders),
            email=found.email,
            order_number=orders[0] if orders else None,
            evidence={"orders": orders[:20], "last_order": found.last_order, "mailbox": key},
            fix="A guest checkout whose events went to another identifier (phone or external id), or were never "
            "sent: check `cogent exceptions list --class identity_conflict` and the profile holding the orders.",
        )
    fact_key = email_key_sql(ctx.db, "email", rules)
    profile_key = email_key_sql(ctx.db, "p.email", rules)
    wrong = ctx.rows(
        f"""
        with owners as (
            select order_number, min({fact_key}) as k, min(email) as email from events
            where email is not null and order_number is not null and event_type in ({types})
            group by order_number
        )
        select ke.profile_id, p.email as profile_email, o.email as order_email,
               count(distinct ke.order_number) as orders, group_concat(distinct ke.order_number) as order_numbers
        from klaviyo_events ke
        join klaviyo_profiles p on p.id = ke.profile_id
        join owners o on o.order_number = ke.order_number
        where p.email is not null and o.k is not null and {profile_key} != o.k
        group by ke.profile_id, o.k order by ke.profile_id, o.k
        """
    )
    for row in wrong:
        orders = sorted((row["order_numbers"] or "").split(","))
        yield Issue(
            key=f"other-identity:{row['profile_id']}:{row['order_email']}",
            title=f"Profile {row['profile_id']} ({row['profile_email']}) holds {row['orders']} order(s) "
            f"placed by {row['order_email']}",
            count=row["orders"],
            severity="error",
            profile_id=row["profile_id"],
            email=row["order_email"],
            order_number=orders[0] if orders else None,
            evidence={"profile_email": row["profile_email"], "order_email": row["order_email"], "orders": orders[:20]},
            fix="Events were sent with a profile id or phone that belongs to someone else: fix the identity "
            "mapping, then move the events (re-send to the right profile) before any merge.",
        )


@dataclass
class _Orders:
    """The orders of one mailbox that no profile has."""

    email: str = ""
    orders: set[str] = field(default_factory=set)
    last_order: str = ""

    def add(self, row: dict[str, Any]) -> None:
        self.email = min(self.email, row["email"]) if self.email else row["email"]
        if row["order_number"] is not None:
            self.orders.add(row["order_number"])
        self.last_order = max(self.last_order, row["occurred_at"] or "")
