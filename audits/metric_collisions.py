"""metric-collisions: the same order counted twice because both the storefront's native integration
and a custom sync send `Placed Order` or `Fulfilled Order` (two metrics of one name, or one metric
with two unique_ids for one order), which doubles revenue and fires flows twice.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from typing import Any

from cogent_cli.audits import AuditContext, Issue, audit

SAMPLE = 20


@audit(
    name="metric-collisions",
    description="Orders counted twice because the native integration and a custom sync both send the order metric.",
    owner="ecommerce",
    warning_from=1,
    error_from=50,
    fix="Turn off one sender: set the source's order events off in cogent.toml, or stop the other integration's metric.",
)
def metric_collisions(ctx: AuditContext) -> Iterator[Issue]:
    ctx.mirror_window()
    m = ctx.config.metrics
    names = sorted({m.order_placed, m.order_fulfilled, "Placed Order", "Fulfilled Order"})
    orders: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for event in ctx.klaviyo_events(*names):
        if event["order_number"]:
            orders[(event["metric_name"], event["order_number"])].append(event)
    collisions: dict[tuple[str, str], list[tuple[str, list[dict[str, Any]]]]] = defaultdict(list)
    for (metric, order), events in orders.items():
        senders = {e["integration_name"] or e["metric_id"] for e in events}
        unique_ids = {e["unique_id"] or e["id"] for e in events}
        if len(events) > 1 and (len(senders) > 1 or len(unique_ids) > 1):
            collisions[(metric, " + ".join(sorted(str(s) for s in senders)))].append((order, events))
    for (metric, senders), affected in sorted(collisions.items()):
        affected.sort()
        doubled = sum(
            sum(e["value"] or 0 for e in events) - max(e["value"] or 0 for e in events) for _, events in affected
        )
        yield Issue(
            key=f"collision:{metric}:{senders}",
            title=f"{len(affected)} order(s) have {metric!r} more than once (senders: {senders}); "
            f"revenue over-counted by {doubled:g}",
            count=len(affected),
            order_number=affected[0][0],
            evidence={
                "metric": metric,
                "senders": senders,
                "orders_affected": len(affected),
                "value_over_counted": doubled,
                "orders": [
                    {
                        "order": order,
                        "events": [
                            {"id": e["id"], "unique_id": e["unique_id"], "metric_id": e["metric_id"]} for e in events
                        ],
                    }
                    for order, events in affected[:SAMPLE]
                ],
            },
        )
