"""returns-suppression: customers with an open return whose Klaviyo profile lacks the property that
segments use to hold back marketing (by default `open_return`, which `cogent sync` sets and clears).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pydantic import BaseModel, ConfigDict

from cogent_cli.audits import AuditContext, Issue, audit
from cogent_cli.sync.mapping import CLOSED_RETURN_STATUSES

RETURN_TYPES = ("return.lodged", "return.approved", "return.received", "return.restocked")


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # The profile property a suppression segment relies on.
    property: str = "open_return"


def open_returns(ctx: AuditContext) -> dict[str, dict[str, Any]]:
    """Returns still open, by return id, with their latest state, customer and order."""
    returns: dict[str, dict[str, Any]] = {}
    for row, event in ctx.events(*RETURN_TYPES, "refund.processed"):
        if event.event_type == "refund.processed":
            if event.data.return_id and event.data.return_id in returns:
                returns[event.data.return_id]["open"] = False
            continue
        data = event.data
        state = returns.setdefault(data.return_id, {"lodged_at": row["occurred_at"], "email": None})
        closed = event.event_type == "return.restocked" or data.status.lower() in CLOSED_RETURN_STATUSES
        state.update(
            open=not closed,
            status=data.status,
            last_event=event.event_type,
            updated_at=row["occurred_at"],
            order_number=row["order_number"],
            email=row["email"] or state["email"],
            skus=[line.sku for line in data.lines],
        )
    return {rid: r for rid, r in returns.items() if r["open"]}


@audit(
    name="returns-suppression",
    description="Customers with an open return whose profile lacks the suppression property segments rely on.",
    owner="cx",
    warning_from=1,
    error_from=None,
    params=Params,
    fix="Run `cogent sync` (it sets the property on open returns); check exceptions for the return's events.",
)
def returns_suppression(ctx: AuditContext) -> Iterator[Issue]:
    ctx.mirror_window()
    prop: str = ctx.params.property  # type: ignore[attr-defined]
    returns = open_returns(ctx)
    keys = ctx.email_keys(sorted({r["email"] for r in returns.values() if r["email"]}))
    profiles = ctx.profiles_by_email()
    for return_id, state in sorted(returns.items()):
        email = state["email"]
        matches = profiles.get(keys.get(email) or "", []) if email else []
        for profile in matches:
            if profile["properties"].get(prop):
                continue
            yield Issue(
                key=f"unsuppressed:{return_id}:{profile['id']}",
                title=f"Return {return_id} (order {state['order_number']}) is open but profile {profile['id']} "
                f"has no {prop!r}: marketing still reaches this customer",
                order_number=state["order_number"],
                profile_id=profile["id"],
                email=email,
                evidence={
                    "return_id": return_id,
                    "status": state["status"],
                    "last_event": state["last_event"],
                    "open_since": state["lodged_at"],
                    "skus": state["skus"],
                    "profile_properties": {k: v for k, v in profile["properties"].items() if "return" in k.lower()},
                },
            )
