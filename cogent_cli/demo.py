"""`cogent demo`: the whole job end to end on this machine, against a sandbox it starts itself.

A fresh workspace, a synthetic retailer seeded into the source stand-ins (orders on Marketplacer,
despatches in Peoplevox, Clarus and Scend, returns in Swap, stock per site, planted messiness), a
pull and normalisation of every source, a sync into the sandbox's Klaviyo, a mirror of that Klaviyo
account and every built-in audit over it, and the HTML health report. The summary says what Klaviyo
received, which exceptions were raised and why, and what the audits found of the planted messiness.
"""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cogent_cli.audits import AuditResult, AuditRunner, load_registry
from cogent_cli.health import Health, collect_health
from cogent_cli.klaviyo.client import KlaviyoClient
from cogent_cli.klaviyo.errors import DuplicateProfileError
from cogent_cli.klaviyo.models import CatalogItemIn, CatalogVariantIn, ProfileIn
from cogent_cli.mirror import pull_klaviyo
from cogent_cli.pull import PULL_SYSTEMS
from cogent_cli.pull import pull as pull_source
from cogent_cli.report import render_report
from cogent_cli.sandbox.seed import seed_sources
from cogent_cli.sandbox.server import run_sandbox
from cogent_cli.sandbox.sources import SANDBOX_CREDENTIALS, SourceStandIns, sources_config
from cogent_cli.sync.engine import ProgressCallback, RunSummary, SyncOptions, run_sync
from cogent_cli.sync.exceptions import list_exceptions
from cogent_cli.workspace import Workspace, init_workspace

DEMO_KEY = "pk_demo_sandbox"
RATE_SCALE = 20.0
# Stock levels of these many seeded SKUs are left out of the demo catalog, to show unknown_sku.
MISSING_FROM_CATALOG = 2


@dataclass
class DemoReport:
    workspace: Path
    sandbox_url: str
    pulled: dict[str, int] = field(default_factory=dict)
    events: int = 0
    sync: RunSummary | None = None
    received: dict[str, int] = field(default_factory=dict)
    profiles: int = 0
    subscriptions: int = 0
    catalog_variants_updated: int = 0
    exceptions: dict[str, list[str]] = field(default_factory=dict)
    mirrored: dict[str, int] = field(default_factory=dict)
    audits: list[AuditResult] = field(default_factory=list)
    planted: dict[str, int] = field(default_factory=dict)
    report_path: Path | None = None
    health: Health | None = None


def _configure(workspace: Workspace, base_url: str, drop_dir: Path, ship_methods: dict[str, str]) -> None:
    text = workspace.config_path.read_text(encoding="utf-8")
    text = text.replace('base_url = "https://a.klaviyo.com"', f'base_url = "{base_url}"\nrate_scale = {RATE_SCALE}', 1)
    mapping = "".join(f'"{raw}" = "{canonical}"\n' for raw, canonical in ship_methods.items())
    text = text.replace("[mapping.ship_methods]\n", f"[mapping.ship_methods]\n{mapping}", 1)
    text += "\n" + sources_config(base_url, drop_dir)
    # The seeded shoppers check out with plus addresses; the audit counts those as one mailbox.
    text += "\n[audits.klaviyo-profiles.params]\nstrip_plus_address = true\n"
    workspace.config_path.write_text(text, encoding="utf-8")


async def create_catalog(
    base_url: str, skus: list[str], *, api_key: str = DEMO_KEY, rate_scale: float = RATE_SCALE
) -> None:
    """One catalog item and variant per SKU, out of stock, in the sandbox's Klaviyo."""
    async with KlaviyoClient(api_key, base_url=base_url, rate_scale=rate_scale) as client:

        async def one(sku: str) -> None:
            url = f"https://demo.shop.test/p/{sku.lower()}"
            await client.create_catalog_item(CatalogItemIn(external_id=sku, title=sku, description=sku, url=url))
            await client.create_catalog_variant(
                CatalogVariantIn(
                    item_id=sku,
                    external_id=sku,
                    title=sku,
                    description=sku,
                    sku=sku,
                    inventory_quantity=0,
                    price=10,
                    url=url,
                )
            )

        await asyncio.gather(*(one(sku) for sku in skus))


async def create_storefront_profiles(base_url: str, manifest: dict[str, Any]) -> int:
    """Profiles a storefront's own Klaviyo integration makes from what shoppers typed at checkout: the
    planted duplicate customers' plus addresses, which Klaviyo keeps apart from their usual mailbox."""
    emails = {
        variant.strip()
        for plant in manifest["planted"]
        if plant["type"] == "duplicate_customer"
        for variant in plant["refs"]["email_variants"]
        if "+" in variant
    }
    created = 0
    async with KlaviyoClient(DEMO_KEY, base_url=base_url, rate_scale=RATE_SCALE) as client:
        for email in sorted(emails):
            try:
                await client.create_profile(ProfileIn(email=email))
                created += 1
            except DuplicateProfileError:
                pass  # the sync already delivered this shopper's plus address
    return created


@contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    """The sandbox's credentials for the length of the demo only."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def run_demo(
    directory: Path,
    *,
    orders: int = 40,
    seed: int = 1,
    step: Callable[[str], None] = lambda _message: None,
    progress: ProgressCallback | None = None,
) -> DemoReport:
    step(f"Creating a workspace in {directory}")
    workspace = init_workspace(directory, name="Demo retailer")
    data_dir = workspace.root / ".cogent" / "sandbox"
    step(f"Seeding a synthetic retailer ({orders} orders, seed {seed})")
    seeded = seed_sources(data_dir, orders=orders, seed=seed)
    with (
        _environment({**SANDBOX_CREDENTIALS.environment(), "COGENT_KLAVIYO_API_KEY": DEMO_KEY}),
        run_sandbox(data_dir, rate_scale=RATE_SCALE, extra_routes=SourceStandIns(data_dir).routes()) as sandbox,
    ):
        step(f"Sandbox listening on {sandbox.base_url}")
        _configure(workspace, sandbox.base_url, seeded.drop_dir, seeded.manifest["ship_methods"]["mapping"])
        workspace = Workspace(workspace.root)
        report = DemoReport(workspace.root, sandbox.base_url)
        for system in PULL_SYSTEMS:
            step(f"Pulling {system}")
            result = pull_source(workspace, system)
            report.pulled[system] = result.stored
        with workspace.store() as store:
            report.events = store.db["events"].count
            skus = sorted(
                r["sku"]
                for r in store.db.query(
                    "select distinct json_extract(body, '$.data.sku') as sku from events where event_type = 'stock.level_changed'"
                )
            )
        step(f"Creating {max(len(skus) - MISSING_FROM_CATALOG, 0)} catalog variants in the sandbox's Klaviyo")
        asyncio.run(create_catalog(sandbox.base_url, skus[MISSING_FROM_CATALOG:]))
        step("Syncing to Klaviyo")
        report.sync = run_sync(workspace, SyncOptions(command="demo"), progress=progress)
        db = sandbox.db
        report.received = {
            r["metric_name"]: r["n"]
            for r in db.query("select metric_name, count(*) as n from events group by metric_name order by n desc")
        }
        report.profiles = db["profiles"].count
        report.subscriptions = db["subscriptions"].count
        report.catalog_variants_updated = next(
            db.query("select count(*) as n from catalog_variants where inventory_quantity > 0")
        )["n"]
        step("Adding the storefront's own profiles (plus addresses typed at checkout)")
        asyncio.run(create_storefront_profiles(sandbox.base_url, seeded.manifest))
        step("Mirroring the sandbox's Klaviyo for the audits")
        report.mirrored = pull_klaviyo(workspace).counts
    report.planted = seeded.manifest["planted_counts"]
    with workspace.store() as store:
        step("Auditing (cogent audit all)")
        runner = AuditRunner(store, workspace.config, load_registry(workspace.root))
        report.audits = runner.run(runner.enabled())
        grouped: dict[str, list[str]] = {}
        for record in list_exceptions(store):
            grouped.setdefault(f"{record.exception_class} (owner: {record.owner})", []).append(
                (record.last_error or "").splitlines()[0] if record.last_error else ""
            )
        report.exceptions = grouped
        report.health = collect_health(store, workspace.config)
        report.report_path = workspace.root / "report.html"
        step(f"Writing the health report to {report.report_path}")
        report.report_path.write_text(render_report(store, workspace.config), encoding="utf-8")
    return report


def exception_summary(report: DemoReport, examples: int = 2) -> list[tuple[str, int, list[str]]]:
    return [(name, len(errors), list(Counter(errors))[:examples]) for name, errors in sorted(report.exceptions.items())]


def audit_summary(report: DemoReport, examples: int = 2) -> list[dict[str, Any]]:
    """Per audit: findings by severity and the most severe few, or why it could not run."""
    return [
        {
            "audit": result.audit.name,
            "error": result.error,
            "counts": {severity: result.counts()[severity] for severity in ("error", "warning", "info")},
            "examples": [
                {"severity": f.severity, "owner": f.owner, "title": f.title} for f in result.findings[:examples]
            ],
        }
        for result in report.audits
    ]


def report_json(report: DemoReport) -> dict[str, Any]:
    return {
        "workspace": str(report.workspace),
        "sandbox_url": report.sandbox_url,
        "pulled": report.pulled,
        "events": report.events,
        "sync": report.sync.to_json() if report.sync else None,
        "klaviyo_received": report.received,
        "profiles": report.profiles,
        "subscriptions": report.subscriptions,
        "catalog_variants_in_stock": report.catalog_variants_updated,
        "exceptions": {name: {"count": n, "examples": ex} for name, n, ex in exception_summary(report)},
        "klaviyo_mirrored": report.mirrored,
        "planted": report.planted,
        "audits": audit_summary(report),
        "status": report.health.to_json() if report.health else None,
        "report": str(report.report_path) if report.report_path else None,
    }
