"""ship-methods: ship methods in orders and despatches that [mapping.ship_methods] does not know.

A silent failure: the warehouse does not recognise the method, the parcel leaves anyway, and the
fulfilment update never reaches the customer. One finding per unknown method, graded on the
number of orders it affects.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from cogent_cli.audits import AuditContext, Issue, audit
from cogent_cli.events import ShipMethod
from cogent_cli.normalise.base import ship_method_keys, ship_method_known

SAMPLE = 20


def _methods(event: Any) -> list[ShipMethod]:
    data = event.data
    if event.event_type == "shipment.despatched":
        return [parcel.ship_method for parcel in data.parcels if parcel.ship_method]
    return [data.ship_method] if data.ship_method else []


@audit(
    name="ship-methods",
    description="Ship methods seen in orders and despatches that the mapping does not know.",
    owner_class="unmapped_ship_method",
    warning_from=1,
    error_from=50,
    fix="Add the method to [mapping.ship_methods] in cogent.toml, then `cogent replay --class unmapped_ship_method`.",
)
def ship_methods(ctx: AuditContext) -> Iterator[Issue]:
    if not ctx.config.mapping.ship_methods:
        # Without a mapping table the sync passes service names through as they are: nothing is unmapped.
        return
    unknown: dict[str, dict[str, Any]] = {}
    for row, event in ctx.events("order.placed", "order.edited", "shipment.despatched"):
        for method in _methods(event):
            if ship_method_known(ctx.config, method):
                continue
            keys = ship_method_keys(method)
            label = keys[0] if keys else "(no ship method)"
            seen = unknown.setdefault(
                label, {"orders": set(), "events": 0, "systems": set(), "last_seen": "", "keys": keys}
            )
            seen["events"] += 1
            seen["systems"].add(row["system"])
            seen["last_seen"] = max(seen["last_seen"], row["occurred_at"])
            if row["order_number"]:
                seen["orders"].add(row["order_number"])
    for label, seen in sorted(unknown.items()):
        orders = sorted(seen["orders"])
        yield Issue(
            key=f"ship-method:{label}",
            title=f"Ship method {label!r} is not mapped ({len(orders)} order(s), last seen {seen['last_seen']})",
            count=max(len(orders), 1),
            order_number=orders[0] if orders else None,
            evidence={
                "ship_method": label,
                "mapping_keys_tried": seen["keys"],
                "orders_affected": len(orders),
                "events": seen["events"],
                "systems": sorted(seen["systems"]),
                "last_seen": seen["last_seen"],
                "orders": orders[:SAMPLE],
            },
            fix=f'Add "{label}" = "<canonical method>" under [mapping.ship_methods] in cogent.toml, '
            "then `cogent replay --class unmapped_ship_method`.",
        )
