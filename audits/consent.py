"""consent: marketing consent in the sources (e.g. a marketplace opt-in) that disagrees with Klaviyo's
subscription status, with which side changed last. Consent is never inferred from an order email:
only `consent.changed` facts count.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from cogent_cli.audits import AuditContext, Issue, audit

KLAVIYO_STATUS = {"subscribed": "SUBSCRIBED", "unsubscribed": "UNSUBSCRIBED", "never_subscribed": "NEVER_SUBSCRIBED"}


@audit(
    name="consent",
    description="Marketing consent in the sources that disagrees with Klaviyo's subscription status.",
    owner="ecommerce",
    warning_from=1,
    error_from=None,
    fix="If the source is newer, run `cogent sync`; if Klaviyo is newer, fix the consent at the source.",
)
def consent(ctx: AuditContext) -> Iterator[Issue]:
    ctx.mirror_window()
    latest: dict[tuple[str, str], tuple[dict[str, Any], Any]] = {}
    for row, event in ctx.events("consent.changed"):
        email = row["email"] or (event.customer.email if event.customer else None)
        if not email:
            continue
        key = (email, event.data.channel)
        when = (event.data.captured_at or event.occurred_at).isoformat()
        if key not in latest or when >= latest[key][1]:
            latest[key] = ({**row, "email": email, "changed_at": when}, event)
    keys = ctx.email_keys(sorted({email for email, _ in latest}))
    profiles = ctx.profiles_by_email()
    for (email, channel), (row, event) in sorted(latest.items()):
        wanted = KLAVIYO_STATUS[event.data.status]
        for profile in profiles.get(keys.get(email) or "", []):
            actual = profile[f"{channel}_consent"] or "NEVER_SUBSCRIBED"
            if actual == wanted or (wanted == "NEVER_SUBSCRIBED" and actual != "SUBSCRIBED"):
                continue
            klaviyo_at = profile[f"{channel}_consent_at"]
            newer = "klaviyo" if klaviyo_at and klaviyo_at > row["changed_at"] else "source"
            # Marketing to someone the source says opted out is the costly direction.
            severity = "error" if wanted == "UNSUBSCRIBED" and actual == "SUBSCRIBED" and newer == "source" else None
            yield Issue(
                key=f"consent:{channel}:{profile['id']}",
                title=f"{channel} consent of {email}: source says {event.data.status} ({row['changed_at']}), "
                f"Klaviyo says {actual} ({klaviyo_at or 'no timestamp'}); {newer} changed last",
                profile_id=profile["id"],
                email=email,
                severity=severity,
                evidence={
                    "channel": channel,
                    "source_status": event.data.status,
                    "source_changed_at": row["changed_at"],
                    "source_system": row["system"],
                    "source_method": event.data.method,
                    "klaviyo_status": actual,
                    "klaviyo_changed_at": klaviyo_at,
                    "changed_last": newer,
                },
                fix="Source changed last: run `cogent sync` to send it. Klaviyo changed last: the customer changed "
                "it there; update the source (or accept Klaviyo as the record for this channel).",
            )
