"""refunds: partial refunds missing from Klaviyo, refunds and cancellations that do not net off the
Placed Order (so customer lifetime value is inflated), and refunds worth more than the order.

Klaviyo nets a Refunded/Cancelled Order off lifetime value only when its `unique_id` equals the
Placed Order's; and because it deduplicates on (profile, metric, unique_id), a second partial refund
reusing the order's id is dropped silently.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

from cogent_cli.audits import AuditContext, Issue, audit


@audit(
    name="refunds",
    description="Partial refunds missing from Klaviyo, refund/cancel events not netted off the Placed Order, "
    "refunds above the order value.",
    owner="ecommerce",
    warning_from=1,
    error_from=None,
    fix="Re-send the refund with `cogent replay`; check [metrics] placed_order_unique_id matches the storefront.",
)
def refunds(ctx: AuditContext) -> Iterator[Issue]:
    window = ctx.mirror_window()
    m = ctx.config.metrics
    placed_names = {m.order_placed, "Placed Order"}
    netting_names = {m.refund, m.order_cancelled, "Refunded Order", "Cancelled Order", "Canceled Order"}
    klaviyo: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for event in ctx.klaviyo_events(*placed_names, *netting_names):
        if event["order_number"]:
            klaviyo[event["order_number"]].append(event)
    refund_facts: dict[str, list[tuple[dict[str, Any], Any]]] = defaultdict(list)
    for row, event in ctx.events("refund.processed"):
        if row["order_number"]:
            refund_facts[row["order_number"]].append((row, event))
    order_totals: dict[str, Decimal] = {}
    for row, event in ctx.events("order.placed", "order.edited"):
        totals = event.data.totals
        if row["order_number"] and totals and totals.total:
            order_totals[row["order_number"]] = totals.total.amount

    sent = {e["source_event_id"] for events in klaviyo.values() for e in events if e["source_event_id"]}
    for order, facts in sorted(refund_facts.items()):
        order_total = order_totals.get(order)
        placed_values = [e["value"] for e in klaviyo.get(order, []) if e["metric_name"] in placed_names and e["value"]]
        if order_total is None and placed_values:
            order_total = Decimal(str(max(placed_values)))
        refunded = sum((event.data.total.amount for _, event in facts), Decimal(0))
        partial = len(facts) > 1 or (order_total is not None and refunded < order_total)
        for row, event in facts:
            if (
                not partial
                or row["event_id"] in sent
                or row["occurred_at"] < window.start
                or row["occurred_at"] > window.end
            ):
                continue
            yield Issue(
                key=f"partial-missing:{row['event_id']}",
                title=f"Partial refund {event.data.refund_id} of order {order} "
                f"({event.data.total.amount} {event.data.total.currency}) is missing from Klaviyo",
                order_number=order,
                email=row["email"],
                evidence={
                    "refund_id": event.data.refund_id,
                    "refund_total": str(event.data.total.amount),
                    "refunds_for_order": len(facts),
                    "order_total": str(order_total) if order_total is not None else None,
                    "event_id": row["event_id"],
                },
                fix="Partial refunds must not reuse one unique_id (Klaviyo drops the repeat): `cogent replay` "
                "the refund so it goes out under its own id.",
            )
        if order_total is not None and refunded > order_total:
            yield Issue(
                key=f"over-refund:{order}",
                title=f"Order {order} refunded {refunded} but the order was worth {order_total}",
                order_number=order,
                severity="error",
                count=len(facts),
                evidence={
                    "refunded": str(refunded),
                    "order_total": str(order_total),
                    "refunds": [{"refund_id": e.data.refund_id, "total": str(e.data.total.amount)} for _, e in facts],
                },
                fix="Check the refunds in the source (a duplicated refund or a wrong currency) with the finance team.",
                owner_class="source_payload_invalid",
            )

    for order, events in sorted(klaviyo.items()):
        placed_ids = {e["unique_id"] for e in events if e["metric_name"] in placed_names and e["unique_id"]}
        if not placed_ids:
            continue
        by_metric: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for e in events:
            if e["metric_name"] in netting_names:
                by_metric[e["metric_name"]].append(e)
        for metric, netting in sorted(by_metric.items()):
            if any(e["unique_id"] in placed_ids for e in netting):
                continue
            value = sum(e["value"] or 0 for e in netting)
            yield Issue(
                key=f"not-netted:{metric}:{order}",
                title=f"{metric} of order {order} does not share the Placed Order's unique_id: "
                f"lifetime value stays inflated by {value:g}",
                order_number=order,
                profile_id=netting[0]["profile_id"],
                count=len(netting),
                evidence={
                    "placed_order_unique_ids": sorted(placed_ids),
                    f"{metric} unique_ids": sorted(str(e["unique_id"]) for e in netting),
                    "value": value,
                },
                fix="Set [metrics] placed_order_unique_id to the storefront's Placed Order id pattern "
                '(e.g. "{order_number}") and replay the event.',
            )
