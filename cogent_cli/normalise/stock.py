"""Stock snapshots diffed against the last known level per (system, SKU, site).

A snapshot becomes a `stock.level_changed` event only when some bucket changed; an older snapshot
than the one already known is stale and ignored. Stock at a site or location that
`[stock] non_sellable_locations` names (goods-in, quarantine, damaged, on hold) is never sellable, and
neither is stock at a site outside `[stock] sellable_sites` when that list is set: such stock moves to
the matching non-sellable bucket. `back_in_stock` is set when sellable availability goes from 0 (or
below) to above 0; the first level ever seen for a SKU and site is a baseline, not a return to stock.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from cogent_cli.config import Config
from cogent_cli.events import NormalisedEvent

if TYPE_CHECKING:
    from cogent_cli.normalise.base import NormaliseContext

SELLABLE = ("on_hand", "allocated", "available")
NON_SELLABLE = ("quarantine", "damaged", "on_hold", "returns_pending_qc", "goods_in")
INBOUND = ("on_order", "received_not_putaway")
# Words in a configured non-sellable location name that say which bucket its stock belongs to.
_BUCKET_WORDS = (
    ("quarantin", "quarantine"),
    ("damage", "damaged"),
    ("goods", "goods_in"),
    ("inbound", "goods_in"),
    ("return", "returns_pending_qc"),
    ("hold", "on_hold"),
)


def _canon(name: str) -> str:
    return "".join(ch for ch in name.lower() if ch.isalnum())


def non_sellable_bucket(config: Config, *names: str | None) -> str | None:
    """The non-sellable bucket stock at these locations/statuses falls in, or None when sellable."""
    configured = {_canon(loc): loc for loc in config.stock.non_sellable_locations}
    for name in names:
        if name and _canon(name) in configured:
            label = _canon(configured[_canon(name)])
            return next((bucket for word, bucket in _BUCKET_WORDS if word in label), "on_hold")
    return None


def site_sellable(config: Config, site: str) -> bool:
    sites = config.stock.sellable_sites
    return not sites or _canon(site) in {_canon(s) for s in sites}


@dataclass
class StockLevels:
    """Quantities per bucket; None means the source does not report that bucket."""

    sellable: dict[str, int | None] = field(default_factory=dict)
    non_sellable: dict[str, int | None] = field(default_factory=dict)
    inbound: dict[str, int | None] = field(default_factory=dict)

    def as_dict(self) -> dict[str, dict[str, int]]:
        return {
            group: {k: v for k, v in values.items() if v is not None}
            for group, values in (
                ("sellable", self.sellable),
                ("non_sellable", self.non_sellable),
                ("inbound", self.inbound),
            )
            if any(v is not None for v in values.values())
        }

    @property
    def available(self) -> int | None:
        return self.sellable.get("available")

    def held_back(self, bucket: str) -> StockLevels:
        """All of this stock counted in one non-sellable bucket (a non-sellable site or location)."""
        quantity = self.sellable.get("on_hand")
        if quantity is None:
            quantity = (self.sellable.get("available") or 0) + (self.sellable.get("allocated") or 0)
        non_sellable = dict(self.non_sellable)
        non_sellable[bucket] = (non_sellable.get(bucket) or 0) + quantity
        return StockLevels(
            sellable={"on_hand": 0, "allocated": 0, "available": 0}, non_sellable=non_sellable, inbound=self.inbound
        )


class StockBook:
    def __init__(self, ctx: NormaliseContext) -> None:
        self.ctx = ctx

    def last(self, sku: str, site: str) -> tuple[str, dict[str, Any]] | None:
        row = self.ctx.conn.execute(
            "SELECT as_of, body FROM stock_levels WHERE system = ? AND sku = ? AND site = ?",
            (self.ctx.system, sku, site),
        ).fetchone()
        return (row[0], json.loads(row[1])) if row else None

    def snapshot(
        self,
        *,
        sku: str,
        site: str,
        as_of: datetime,
        levels: StockLevels,
        location: str | None = None,
        status: str | None = None,
        barcode: str | None = None,
        stock_owner: str | None = None,
        native_event: str | None = None,
        native_ids: Mapping[str, Any] | None = None,
        confidence: str | None = None,
        infinite: bool | None = None,
        sequence: int | None = None,
    ) -> NormalisedEvent | None:
        """The change event for this snapshot, or None when nothing changed or it is stale."""
        ctx = self.ctx
        bucket = non_sellable_bucket(ctx.config, site, location, status)
        if bucket is None and not site_sellable(ctx.config, site):
            bucket = "on_hold"
        if bucket is not None:
            levels = levels.held_back(bucket)
        state = levels.as_dict()
        if infinite:
            # Marketplacer's infiniteQuantity: never out of stock, whatever the count says.
            state["infinite"] = True
        stamp = as_of.isoformat()
        previous = self.last(sku, site)
        if previous is not None:
            previous_at, previous_state = previous
            if previous_at > stamp or previous_state == state:
                return None
        before = (previous[1].get("sellable", {}).get("available") if previous else None) or 0
        after = levels.available or 0
        digest = hashlib.sha256(json.dumps(state, sort_keys=True).encode()).hexdigest()[:12]
        data: dict[str, Any] = {
            "sku": sku,
            "barcode": barcode or None,
            "location": {k: v for k, v in (("site", site), ("bin", location), ("stock_owner", stock_owner)) if v},
            "as_of": as_of,
            "mode": "snapshot",
            **state,
            "back_in_stock": previous is not None and before <= 0 < after,
        }
        event = ctx.event(
            "stock.level_changed",
            dedupe_key=f"{sku}|{site}|{stamp}|{digest}",
            occurred_at=as_of,
            data={k: v for k, v in data.items() if v is not None},
            native_event=native_event,
            native_ids=native_ids,
            confidence=confidence,  # type: ignore[arg-type]
            sequence=sequence,
        )
        ctx.conn.execute(
            "INSERT INTO stock_levels (system, sku, site, as_of, available, body) VALUES (?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (system, sku, site) DO UPDATE SET as_of = excluded.as_of,"
            " available = excluded.available, body = excluded.body",
            (ctx.system, sku, site, stamp, levels.available, json.dumps(state, sort_keys=True)),
        )
        return event
