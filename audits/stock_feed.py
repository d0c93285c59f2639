"""stock-feed: the catalog's inventory against sellable stock in the warehouses.

Compares each catalog variant's `inventory_quantity` with the sellable stock of the latest snapshot
per SKU and site (sellable sites only, never goods-in, quarantine, damaged or on-hold locations), and
reports non-sellable stock leaking into the feed, back-in-stock signals raised for stock that is not
sellable, and SKUs with stock but no catalog variant.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from cogent_cli.audits import AuditContext, Issue, audit
from cogent_cli.config import Config
from cogent_cli.events import StockData

SELLABLE_DELTA_BUCKETS = (None, "available", "sellable", "on_hand")


@dataclass
class SiteStock:
    site: str
    as_of: str
    sellable: int
    non_sellable: int
    counts_as_sellable: bool


@dataclass
class SkuStock:
    sites: dict[str, SiteStock] = field(default_factory=dict)

    @property
    def sellable(self) -> int:
        return sum(s.sellable for s in self.sites.values() if s.counts_as_sellable)

    @property
    def non_sellable(self) -> int:
        return sum(s.non_sellable + (0 if s.counts_as_sellable else s.sellable) for s in self.sites.values())


def sellable_location(config: Config, data: StockData) -> bool:
    blocked = {name.lower() for name in config.stock.non_sellable_locations}
    if config.stock.sellable_sites and data.location.site not in config.stock.sellable_sites:
        return False
    names = {data.location.site.lower(), (data.location.bin or "").lower(), (data.location.stock_owner or "").lower()}
    return not (names & blocked)


def _available(data: StockData) -> int:
    sellable = data.sellable
    if sellable is None:
        return 0
    if sellable.available is not None:
        return sellable.available
    return max((sellable.on_hand or 0) - (sellable.allocated or 0), 0)


def _non_sellable(data: StockData) -> int:
    buckets = data.non_sellable
    if buckets is None:
        return 0
    return sum(
        v or 0
        for v in (buckets.quarantine, buckets.damaged, buckets.on_hold, buckets.returns_pending_qc, buckets.goods_in)
    )


@audit(
    name="stock-feed",
    description="Catalog inventory that disagrees with sellable stock, non-sellable stock leaking into the feed, "
    "back-in-stock raised for unsellable stock, and SKUs without a catalog variant.",
    owner="ecommerce",
    warning_from=1,
    error_from=None,
    fix="Check [stock] sellable_sites and non_sellable_locations in cogent.toml, then re-sync stock with `cogent sync`.",
)
def stock_feed(ctx: AuditContext) -> Iterator[Issue]:
    ctx.mirror_window()
    stock: dict[str, SkuStock] = {}
    false_signals: list[Issue] = []
    for row, event in ctx.events("stock.level_changed"):
        data: StockData = event.data  # type: ignore[assignment]
        sku = stock.setdefault(data.sku, SkuStock())
        counts = sellable_location(ctx.config, data)
        as_of = data.as_of.isoformat()
        previous = sku.sites.get(data.location.site)
        if data.mode == "snapshot" or previous is None:
            level = SiteStock(data.location.site, as_of, _available(data), _non_sellable(data), counts)
        else:
            delta = data.delta
            change = delta.quantity if delta and delta.bucket in SELLABLE_DELTA_BUCKETS else 0
            level = SiteStock(data.location.site, as_of, previous.sellable + change, previous.non_sellable, counts)
        if previous is None or as_of >= previous.as_of:
            sku.sites[data.location.site] = level
        if data.back_in_stock and (not counts or _available(data) <= 0):
            false_signals.append(
                Issue(
                    key=f"back-in-stock:{data.sku}:{row['event_id']}",
                    title=f"Back-in-stock raised for {data.sku} at {data.location.site} but the stock is not sellable",
                    sku=data.sku,
                    severity="error",
                    evidence={
                        "site": data.location.site,
                        "bin": data.location.bin,
                        "sellable_available": _available(data),
                        "location_counts_as_sellable": counts,
                        "as_of": as_of,
                        "event_id": row["event_id"],
                    },
                    fix="Stop the back-in-stock flow for this SKU and add the location to [stock] non_sellable_locations.",
                )
            )
    yield from false_signals
    variants = {row["sku"]: row for row in ctx.rows("select * from klaviyo_variants where sku is not null")}
    for sku_code, sku in sorted(stock.items()):
        sites = {
            s.site: {
                "sellable": s.sellable,
                "non_sellable": s.non_sellable,
                "counts": s.counts_as_sellable,
                "as_of": s.as_of,
            }
            for s in sku.sites.values()
        }
        variant = variants.get(sku_code)
        if variant is None:
            yield Issue(
                key=f"no-variant:{sku_code}",
                title=f"SKU {sku_code} has stock ({sku.sellable} sellable) but no catalog variant in Klaviyo",
                sku=sku_code,
                count=1,
                owner_class="unknown_sku",
                evidence={"sellable": sku.sellable, "sites": sites},
                fix="Create the catalog item and variant in Klaviyo (or the catalog feed), then re-sync stock.",
            )
            continue
        quantity = variant["inventory_quantity"]
        if quantity is None or quantity == sku.sellable:
            continue
        leaking = sku.non_sellable > 0 and quantity == sku.sellable + sku.non_sellable
        evidence = {
            "klaviyo_inventory_quantity": quantity,
            "sellable": sku.sellable,
            "non_sellable": sku.non_sellable,
            "difference": quantity - sku.sellable,
            "variant_id": variant["id"],
            "sites": sites,
        }
        if leaking:
            yield Issue(
                key=f"leak:{sku_code}",
                title=f"{sku_code}: Klaviyo shows {quantity}, which includes {sku.non_sellable} non-sellable unit(s)",
                sku=sku_code,
                count=abs(quantity - sku.sellable),
                severity="error",
                evidence=evidence,
                fix="Non-sellable locations are reaching the feed: list them under [stock] non_sellable_locations "
                "and re-sync stock.",
            )
        else:
            yield Issue(
                key=f"mismatch:{sku_code}",
                title=f"{sku_code}: Klaviyo shows {quantity} in stock, the warehouses hold {sku.sellable} sellable",
                sku=sku_code,
                count=abs(quantity - sku.sellable),
                evidence=evidence,
            )
