"""sync-gaps: facts Klaviyo never heard of within their SLA, and Klaviyo events with no fact behind them.

A fact is matched by the `SourceEventId` property cogent puts on every event it sends, or, for
cancellations and refunds that the storefront may send itself, by metric and order number. Only facts
inside the mirrored window are judged, against the time of the last `cogent pull klaviyo`.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta

from pydantic import BaseModel, ConfigDict, Field

from cogent_cli.audits import AuditContext, Issue, audit
from cogent_cli.config import Config

DEFAULT_SLA_HOURS = {
    "shipment.despatched": 4.0,
    "order.cancelled": 4.0,
    "refund.processed": 24.0,
    "return.lodged": 24.0,
    "return.approved": 24.0,
    "return.received": 24.0,
    "return.restocked": 24.0,
}
WHAT = {
    "shipment.despatched": "despatched",
    "order.cancelled": "cancelled",
    "refund.processed": "refunded",
    "return.lodged": "return lodged",
    "return.approved": "return approved",
    "return.received": "returned",
    "return.restocked": "return restocked",
}


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Hours Klaviyo may take to hear of each type of fact before it is a gap.
    sla_hours: dict[str, float] = Field(default_factory=dict)
    # Report Klaviyo events that carry a SourceEventId no fact in the state file has.
    orphans: bool = True


def expected_metrics(config: Config, event_type: str) -> tuple[str, ...]:
    m = config.metrics
    return {
        "shipment.despatched": (m.shipment, m.order_fulfilled),
        "order.cancelled": (m.order_cancelled, "Cancelled Order", "Canceled Order"),
        "refund.processed": (m.refund, "Refunded Order"),
        "return.lodged": (m.return_lodged,),
        "return.approved": (m.return_approved,),
        "return.received": (m.return_received,),
        "return.restocked": (m.return_restocked,),
    }[event_type]


# Native integrations send these per order, so an order-level match counts for them.
ORDER_LEVEL = ("order.cancelled", "refund.processed")


def _outbox_state(ctx: AuditContext, event_id: str) -> dict[str, str] | None:
    if not ctx.has_table("outbox"):
        return None
    rows = list(
        ctx.rows("select status, last_error, updated_at from outbox where event_id = ? order by id", [event_id])
    )
    return (
        {"status": ",".join(sorted({r["status"] for r in rows})), "last_error": rows[-1]["last_error"]}
        if rows
        else None
    )


@audit(
    name="sync-gaps",
    description="Facts in the sources that Klaviyo never heard of within the SLA, and Klaviyo events with no fact.",
    owner="ecommerce",
    warning_from=1,
    error_from=None,
    params=Params,
    fix="Run `cogent sync`; if the fact is in `cogent exceptions list`, fix the cause and `cogent replay` it.",
)
def sync_gaps(ctx: AuditContext) -> Iterator[Issue]:
    window = ctx.mirror_window()
    params: Params = ctx.params  # type: ignore[assignment]
    sla = {**DEFAULT_SLA_HOURS, **params.sla_hours}
    pulled_at = datetime.fromisoformat(window.end.replace("Z", "+00:00"))
    by_source = {
        row["source_event_id"]: row
        for row in ctx.rows(
            "select source_event_id, metric_name, id from klaviyo_events where source_event_id is not null"
        )
    }
    by_order: set[tuple[str, str]] = {
        (row["metric_name"], row["order_number"])
        for row in ctx.rows(
            "select distinct metric_name, order_number from klaviyo_events where order_number is not null"
        )
    }
    for row, event in ctx.events(*DEFAULT_SLA_HOURS):
        occurred = event.occurred_at
        if row["occurred_at"] < window.start or occurred + timedelta(hours=sla[event.event_type]) > pulled_at:
            continue
        metrics = expected_metrics(ctx.config, event.event_type)
        if row["event_id"] in by_source:
            continue
        order = row["order_number"]
        if event.event_type in ORDER_LEVEL and order and any((m, order) in by_order for m in metrics):
            continue
        overdue = pulled_at - occurred
        evidence = {
            "event_id": row["event_id"],
            "event_type": event.event_type,
            "system": row["system"],
            "occurred_at": row["occurred_at"],
            "expected_metric": metrics[0],
            "sla_hours": sla[event.event_type],
            "hours_since": round(overdue.total_seconds() / 3600, 1),
            "klaviyo_mirrored_until": window.end,
        }
        outbox = _outbox_state(ctx, row["event_id"])
        evidence["outbox"] = outbox or "never queued"
        yield Issue(
            key=f"gap:{row['event_id']}",
            title=f"Order {order or '(none)'} {WHAT[event.event_type]} at {row['occurred_at']} "
            f"but Klaviyo has no {metrics[0]!r} event after {evidence['hours_since']} h",
            order_number=order,
            email=row["email"],
            evidence=evidence,
        )
    if not params.orphans:
        return
    known = {r["event_id"] for r in ctx.rows("select event_id from events")} if ctx.has_table("events") else set()
    for source_event_id, kevent in sorted(by_source.items()):
        if source_event_id in known:
            continue
        detail = next(ctx.rows("select * from klaviyo_events where id = ?", [kevent["id"]]))
        yield Issue(
            key=f"orphan:{kevent['id']}",
            title=f"Klaviyo {detail['metric_name']!r} event for order {detail['order_number'] or '(none)'} "
            "has no fact behind it in the state file",
            order_number=detail["order_number"],
            profile_id=detail["profile_id"],
            severity="info",
            evidence={
                "klaviyo_event_id": detail["id"],
                "source_event_id": source_event_id,
                "metric": detail["metric_name"],
                "datetime": detail["datetime"],
            },
            fix="Check whether another workspace or a test run sent it; delete the test profile's events if so.",
        )
