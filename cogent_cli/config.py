"""The workspace configuration (`cogent.toml`): model, loading, and error reporting.

Every section forbids unknown keys, so a typo is an error rather than a silently ignored setting.
Loading collects every problem at once, each with its key path and a fix.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_core import PydanticCustomError

from cogent_cli.errors import ConfigError

KLAVIYO_REVISION = "2026-07-15"
SOURCE_SYSTEMS = ("peoplevox", "clarus", "scend", "swap", "marketplacer")
# Secret names per system; the first is the one `cogent auth set SYSTEM` stores by default.
SECRETS: dict[str, tuple[str, ...]] = {
    "klaviyo": ("api_key",),
    "peoplevox": ("password", "callback_token"),
    "clarus": ("client_secret", "webhook_token"),
    "scend": ("webhook_token",),
    "swap": ("api_key", "webhook_secret"),
    "marketplacer": ("api_key", "webhook_secret"),
}
SECRET_FIELDS = frozenset(name for names in SECRETS.values() for name in names)


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class EnvRef(Section):
    """A secret read from an environment variable: `api_key = {env = "ACME_KLAVIYO_KEY"}`."""

    env: Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]


SecretRef = EnvRef | None


def _no_literal_secret(value: Any) -> Any:
    # Anything but a table is a value typed into the file; it is refused without being echoed.
    if value is not None and not isinstance(value, dict | EnvRef):
        raise PydanticCustomError("literal_secret", "secrets are never written in cogent.toml (value not shown)")
    return value


class KlaviyoSettings(Section):
    base_url: str = "https://a.klaviyo.com"
    revision: str = KLAVIYO_REVISION
    api_key: SecretRef = None
    max_in_flight: Annotated[int, Field(ge=1, le=256)] = 32
    timeout_seconds: Annotated[float, Field(gt=0)] = 30.0
    # Multiplies the spec's rate limits the client paces itself by; only for a sandbox started
    # with the same --rate-scale. Against Klaviyo leave it at 1.
    rate_scale: Annotated[float, Field(gt=0, le=1000)] = 1.0

    _literal = field_validator("api_key", mode="before")(_no_literal_secret)


NonSellableBucket = Literal["quarantine", "damaged", "on_hold", "returns_pending_qc", "goods_in"]
RefundMethod = Literal["original_payment", "store_credit", "gift_card", "exchange", "mixed", "unknown"]


def _known_zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{value!r} is not an IANA time zone such as Europe/London or UTC") from None
    return value


Disposition = Literal["restock", "quarantine", "write_off", "return_to_vendor", "recycle", "pending"]
ScendWebhookKind = Literal["despatch", "return", "stock_snapshot", "stock_adjustment", "order_status"]
# [ASSUMPTION] the fields of Scend's exports (proposed shapes; nothing is published), per kind.
SCEND_FIELDS: dict[str, tuple[str, ...]] = {
    "despatches": (
        "client_code", "order_number", "channel_order_ref", "despatch_id", "parcel_id", "despatched_at",
        "carrier_code", "carrier_name", "service_code", "service_name", "tracking_number", "tracking_url",
        "sku", "barcode", "qty_despatched", "qty_ordered", "is_final_despatch", "site_code", "customer_email",
    ),
    "returns": (
        "client_code", "return_id", "rma_number", "order_number", "received_at", "sku", "barcode",
        "qty_received", "return_reason_code", "return_reason_text", "condition", "disposition",
        "qty_restocked", "qty_quarantined", "notes", "site_code",
    ),
    "stock": (
        "client_code", "snapshot_at", "site_code", "sku", "barcode", "on_hand", "allocated", "available",
        "quarantine", "damaged", "on_hold", "inbound_expected", "inbound_received_not_putaway",
    ),
    "order_status": ("client_code", "order_number", "status", "status_at", "reason"),
}  # fmt: skip


class SourceSettings(Section):
    enabled: bool = True
    tenant: str | None = None
    # Which field of the source carries the storefront order number (so events join up).
    order_number_field: str | None = None
    # Send order.placed / order.edited to Klaviyo only where the storefront's own integration does not.
    send_order_placed: bool = False
    send_order_edited: bool = False


class PeoplevoxSettings(SourceSettings):
    base_url: str = "https://wms.peoplevox.net"
    client_id: str = ""
    username: str = ""
    password: SecretRef = None
    callback_token: SecretRef = None
    items_per_page: Annotated[int, Field(ge=1, le=1000)] = 1000
    page_delay_seconds: Annotated[float, Field(ge=0)] = 1.0
    despatch_report: str = "Despatch summary"
    return_report: str = "Return summary"
    inventory_report: str = "Item inventory summary all sites"
    # [ASSUMPTION] report times carry no zone: they are the warehouse's local time.
    timezone: str = "Europe/London"
    # Reports carry prices without a currency.
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")] = "GBP"

    _literal = field_validator("password", "callback_token", mode="before")(_no_literal_secret)
    _zone = field_validator("timezone")(_known_zone)


class ClarusSettings(SourceSettings):
    base_url: str = "https://clarus-api.com"
    subdomain: str = ""
    client_id: str = ""
    client_secret: SecretRef = None
    webhook_token: SecretRef = None
    page_size: Annotated[int, Field(ge=1, le=500)] = 100
    # Shipment statuses that mean the parcel left the building (never picked or packed).
    dispatched_statuses: list[str] = Field(default_factory=lambda: ["dispatched"])
    # [ASSUMPTION] stock record statuses other than these are holds (awaiting QC, quarantined...).
    sellable_statuses: list[str] = Field(default_factory=lambda: ["available"])
    # Hold status -> non-sellable bucket; a hold status not listed counts as on_hold.
    hold_status_buckets: dict[str, NonSellableBucket] = Field(
        default_factory=lambda: {"quarantined": "quarantine", "awaiting_qc": "returns_pending_qc", "damaged": "damaged"}
    )
    # Site used when a stock payload names no warehouse.
    default_site: str = "default"
    # [ASSUMPTION] a dispatched goods out whose webhook lists no shipments becomes one shipment keyed
    # by its reference (off: such payloads are quarantined, so a later shipments pull is not doubled).
    goods_out_shipment_fallback: bool = False

    _literal = field_validator("client_secret", "webhook_token", mode="before")(_no_literal_secret)


class ScendSettings(SourceSettings):
    drop_dir: Path | None = None
    client_code: str | None = None
    webhook_token: SecretRef = None
    # [ASSUMPTION] file name prefixes of the export kinds; Scend publishes none.
    file_prefixes: dict[str, str] = Field(
        default_factory=lambda: {
            "despatches": "despatches_",
            "returns": "returns_",
            "stock": "stock_",
            "order_status": "order_status_",
        }
    )
    # [ASSUMPTION] zone of timestamps written without an offset.
    timezone: str = "UTC"
    # [ASSUMPTION] export column names that differ from the proposed ones: {kind: {field: column}},
    # e.g. columns.despatches.tracking_number = "Tracking No". Fields per kind: SCEND_FIELDS.
    columns: dict[str, dict[str, str]] = Field(default_factory=dict)
    # [ASSUMPTION] webhook `event` name -> what its body carries.
    webhook_events: dict[str, ScendWebhookKind] = Field(
        default_factory=lambda: {
            "despatch.confirmed": "despatch",
            "return.received": "return",
            "stock.snapshot": "stock_snapshot",
            "stock.adjusted": "stock_adjustment",
            "order.status_changed": "order_status",
        }
    )
    # [ASSUMPTION] Scend return condition / disposition codes -> normalised values.
    conditions: dict[str, str] = Field(
        default_factory=lambda: {"SELLABLE": "sellable", "DAMAGED": "damaged", "WRONG_ITEM": "wrong_item"}
    )
    dispositions: dict[str, Disposition] = Field(
        default_factory=lambda: {
            "RESTOCK": "restock",
            "QUARANTINE": "quarantine",
            "WRITE_OFF": "write_off",
            "RETURN_TO_VENDOR": "return_to_vendor",
            "RECYCLE": "recycle",
            "PENDING": "pending",
        }
    )

    _literal = field_validator("webhook_token", mode="before")(_no_literal_secret)
    _zone = field_validator("timezone")(_known_zone)

    @field_validator("columns")
    @classmethod
    def _known_columns(cls, columns: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
        for kind, fields in columns.items():
            if kind not in SCEND_FIELDS:
                raise ValueError(f"unknown Scend export kind {kind!r}; kinds: {', '.join(SCEND_FIELDS)}")
            unknown = sorted(set(fields) - set(SCEND_FIELDS[kind]))
            if unknown:
                raise ValueError(f"unknown {kind} field {', '.join(unknown)}; fields: {', '.join(SCEND_FIELDS[kind])}")
        return columns


class SwapSettings(SourceSettings):
    base_url: str = "https://api-gateway.swap-os.com"
    store_id: str = ""
    api_key: SecretRef = None
    webhook_secret: SecretRef = None
    items_per_page: Annotated[int, Field(ge=1, le=50)] = 50
    # [ASSUMPTION] header of the V2 HMAC signature (name unpublished; the Shipping API uses
    # "x-swap-signature-sha256"). When set, webhooks must carry it in addition to the JWT.
    signature_header: str | None = None
    # Swap return status -> normalised return status.
    return_statuses: dict[str, str] = Field(
        default_factory=lambda: {
            "Open": "lodged",
            "Needs Review": "on_hold",
            "On Hold": "on_hold",
            "Closed": "closed",
            "Expired": "expired",
            "Cancelled": "cancelled",
        }
    )
    # QC conditions the store maps to Approved, and those that put the item back on sale.
    approved_conditions: list[str] = Field(default_factory=lambda: ["Sellable"])
    restock_conditions: list[str] = Field(default_factory=lambda: ["Sellable"])
    # Return type -> refund method.
    refund_methods: dict[str, RefundMethod] = Field(
        default_factory=lambda: {
            "Refund": "original_payment",
            "Shop Now Credit": "exchange",
            "Exchange": "exchange",
            "Additional Payment": "exchange",
            "Shop Later Credit": "store_credit",
        }
    )
    # [ASSUMPTION] whether a product's `cost` is per unit or for the whole row (`item_count` units).
    product_cost_per: Literal["unit", "row"] = "unit"

    _literal = field_validator("api_key", "webhook_secret", mode="before")(_no_literal_secret)


class MarketplacerSettings(SourceSettings):
    base_url: str = ""
    api_key: SecretRef = None
    webhook_secret: SecretRef = None
    page_size: Annotated[int, Field(ge=1, le=500)] = 100
    # Published limit: 750 requests per 10 s per key.
    requests_per_10s: Annotated[int, Field(ge=1, le=750)] = 600
    # Amounts arrive as strings such as "$25.00"; this is their ISO currency unless the payload says.
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")] | None = None
    # Key of the order's externalIds that holds the storefront order number (first one when unset).
    order_external_id_key: str | None = None
    # [ASSUMPTION] marketplace opt-in fields (none are documented) -> consent channel. Only an explicit
    # true/false becomes consent.changed; an order email alone never does.
    consent_fields: dict[str, Literal["email", "sms"]] = Field(
        default_factory=lambda: {
            "buyerMarketingOptIn": "email",
            "marketingOptIn": "email",
            "newsletterOptIn": "email",
            "buyerSmsOptIn": "sms",
            "smsOptIn": "sms",
        }
    )
    # Site that Variant.countOnHand is reported under.
    stock_site: str = "marketplace"

    _literal = field_validator("api_key", "webhook_secret", mode="before")(_no_literal_secret)


class Sources(Section):
    peoplevox: PeoplevoxSettings | None = None
    clarus: ClarusSettings | None = None
    scend: ScendSettings | None = None
    swap: SwapSettings | None = None
    marketplacer: MarketplacerSettings | None = None

    def enabled(self) -> dict[str, SourceSettings]:
        return {
            name: settings
            for name in SOURCE_SYSTEMS
            if (settings := getattr(self, name)) is not None and settings.enabled
        }


NormalisedStatus = Literal[
    "received",
    "allocated",
    "picking",
    "packed",
    "partially_despatched",
    "despatched",
    "cancelled",
    "on_hold",
    "ignore",
]


class MappingSettings(Section):
    # Per source: native status -> normalised status. Only `despatched` produces a shipment event.
    status: dict[str, dict[str, NormalisedStatus]] = Field(default_factory=dict)
    # Raw ship method (service code, service name, or "carrier/service") -> canonical method.
    ship_methods: dict[str, str] = Field(default_factory=dict)


class StockSettings(Section):
    # Sites whose stock may count as sellable; empty means every site.
    sellable_sites: list[str] = Field(default_factory=list)
    # Location codes, location types and stock statuses that are never sellable.
    non_sellable_locations: list[str] = Field(
        default_factory=lambda: ["goods-in", "quarantine", "damaged", "on-hold", "hold"]
    )


class MetricSettings(Section):
    shipment: str = "Fulfilled Shipment"
    order_fulfilled: str = "Fulfilled Order"
    emit_fulfilled_order: bool = False
    order_placed: str = "Placed Order"
    order_edited: str = "Edited Order"
    order_cancelled: str = "Cancelled Order"
    refund: str = "Refunded Order"
    return_lodged: str = "Return Lodged"
    return_approved: str = "Return Approved"
    return_received: str = "Return Received"
    return_restocked: str = "Return Restocked"
    # The unique_id the storefront gives its Placed Order; Cancelled/Refunded/Fulfilled Order reuse it
    # so Klaviyo nets them off customer lifetime value. Placeholders: {order_number}, {source_order_id}.
    placed_order_unique_id: str = "{order_number}"


class IdentitySettings(Section):
    # Which key of a customer's external_ids becomes Klaviyo's external_id.
    external_id_key: str | None = None
    strip_plus_address: bool = False
    # Ignore dots in the local part for these domains (Gmail treats them as one mailbox).
    dotless_domains: list[str] = Field(default_factory=lambda: ["gmail.com", "googlemail.com"])
    default_region: Annotated[str, Field(pattern=r"^[A-Z]{2}$")] = "GB"


class AuditSettings(Section):
    """`[audits.NAME]`: how one audit grades and routes its findings."""

    enabled: bool = True
    # The team that owns this audit's findings (default: the audit's own owner).
    owner: str | None = None
    # One severity for every finding, instead of the thresholds below.
    severity: Literal["info", "warning", "error"] | None = None
    # A finding affecting at least this many things (orders, profiles, units) is a warning / an error.
    warning_from: Annotated[int, Field(ge=1)] | None = None
    error_from: Annotated[int, Field(ge=1)] | None = None
    # The audit's own settings (docs/audits.md lists them), e.g. sla_hours for sync-gaps.
    params: dict[str, Any] = Field(default_factory=dict)


class SyncSettings(Section):
    # How long a later event of an order waits for an earlier one that is not delivered yet.
    hold_minutes: Annotated[float, Field(ge=0)] = 30.0
    # Facts older than this when first synced carry Klaviyo's backfill flag, so no live flow fires.
    backfill_after_hours: Annotated[float, Field(gt=0)] = 72.0
    # Outbox rows delivered per wave; each endpoint's own batch limit still applies.
    wave_size: Annotated[int, Field(ge=1, le=50_000)] = 5000
    # Runs that may fail to deliver a row (throttled, unavailable) before it becomes an exception.
    max_attempts: Annotated[int, Field(ge=1, le=100)] = 5
    # One Klaviyo event per shipment (parcels nested) or per parcel.
    shipment_events: Literal["shipment", "parcel"] = "shipment"
    catalog_variant_id: str = "$custom:::$default:::{sku}"
    # List that consent changes apply to; without one, subscriptions follow the account default.
    consent_list_id: str | None = None
    consent_custom_source: str | None = None


class StatusSettings(Section):
    """`[status]`: thresholds that make `cogent status` exit 5 and raise alerts."""

    # Now minus the newest business time received from a source.
    max_lag_minutes: Annotated[float, Field(gt=0)] = 240.0
    # Per-source overrides of max_lag_minutes, e.g. {peoplevox = 60}.
    lag_minutes: dict[str, Annotated[float, Field(gt=0)]] = Field(default_factory=dict)
    # Age of the oldest undelivered outbox item.
    max_queue_age_minutes: Annotated[float, Field(gt=0)] = 60.0
    # Open exceptions allowed per owning team before it is a breach; teams not listed: no limit.
    max_open_exceptions: dict[str, Annotated[int, Field(ge=0)]] = Field(
        default_factory=lambda: {"ops": 0, "ecommerce": 25, "cx": 25}
    )
    # Inbox payloads waiting in quarantine.
    max_quarantined: Annotated[int, Field(ge=0)] = 0


class AlertTarget(Section):
    # Slack-compatible incoming webhook (JSON {"text": ...}); an {env = "NAME"} reference keeps it out of the file.
    webhook_url: EnvRef | str | None = None
    # A shell command that receives the alert text on standard input, e.g. "mail -s 'cogent alert' ops@acme.example".
    email_command: str | None = None


class WorkspaceSettings(Section):
    name: Annotated[str, Field(min_length=1)]
    id: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]{2,63}$")]
    timezone: str = "UTC"


EXCEPTION_CLASSES = (
    "validation_error",
    "identity_conflict",
    "unknown_sku",
    "unmapped_ship_method",
    "rate_budget_exhausted",
    "auth_scope",
    "source_payload_invalid",
)


class Config(Section):
    workspace: WorkspaceSettings
    klaviyo: KlaviyoSettings = Field(default_factory=KlaviyoSettings)
    sources: Sources = Field(default_factory=Sources)
    mapping: MappingSettings = Field(default_factory=MappingSettings)
    stock: StockSettings = Field(default_factory=StockSettings)
    metrics: MetricSettings = Field(default_factory=MetricSettings)
    identity: IdentitySettings = Field(default_factory=IdentitySettings)
    sync: SyncSettings = Field(default_factory=SyncSettings)
    status: StatusSettings = Field(default_factory=StatusSettings)
    alerts: dict[str, AlertTarget] = Field(default_factory=dict)
    audits: dict[str, AuditSettings] = Field(default_factory=dict)
    # Exception class -> owning team.
    owners: dict[str, str] = Field(
        default_factory=lambda: {
            "validation_error": "ecommerce",
            "identity_conflict": "ecommerce",
            "unknown_sku": "ecommerce",
            "unmapped_ship_method": "ops",
            "rate_budget_exhausted": "ecommerce",
            "auth_scope": "ecommerce",
            "source_payload_invalid": "ops",
        }
    )

    @field_validator("owners")
    @classmethod
    def _known_classes(cls, owners: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(owners) - set(EXCEPTION_CLASSES))
        if unknown:
            raise ValueError(
                f"unknown exception class {', '.join(unknown)}; known classes: {', '.join(EXCEPTION_CLASSES)}"
            )
        return owners

    def owner_of(self, exception_class: str) -> str:
        return self.owners.get(exception_class, "ecommerce")


def _key_path(loc: tuple[Any, ...]) -> str:
    return ".".join(str(part) for part in loc if part not in ("function-before",)) or "(top level)"


def _fix_hint(error: dict[str, Any]) -> str:
    kind = error["type"]
    loc = error["loc"]
    if kind == "literal_secret":
        system = str(loc[-2])
        flag = "" if SECRETS.get(system, (loc[-1],))[0] == loc[-1] else f" --name {loc[-1]}"
        return (
            f'run `cogent auth set {system}{flag}`, or reference an environment variable: {loc[-1]} = {{env = "NAME"}}'
        )
    if kind == "missing" and len(loc) == 1 and loc[0] in Config.model_fields:
        return f"add a [{loc[0]}] section (see the commented template from `cogent init`)"
    if kind == "missing":
        section = ".".join(str(p) for p in loc[:-1])
        where = f" under [{section}]" if section else ""
        return f"add `{loc[-1]} = ...`{where}"
    if kind == "extra_forbidden":
        return "remove it or check its spelling (see the commented template from `cogent init`)"
    if kind == "literal_error":
        return f"use one of: {error.get('ctx', {}).get('expected', '')}"
    if kind == "string_pattern_mismatch":
        return f"it must match {error.get('ctx', {}).get('pattern', '')}"
    if kind.startswith(("greater_than", "less_than")):
        return "use a value inside that range"
    if kind == "value_error":
        return ""  # a validator's own message already says what to write instead
    return "change the value"


def format_validation_errors(exc: ValidationError) -> list[str]:
    problems = []
    for error in exc.errors(include_url=False):
        loc = tuple(error["loc"])
        message = error["msg"].removeprefix("Value error, ")
        value = error.get("input")
        # A misspelt key may still hold a secret, so unknown keys never show their value either.
        hidden = (
            error["type"] in ("missing", "extra_forbidden")
            or isinstance(value, dict)
            or SECRET_FIELDS & set(map(str, loc))
        )
        shown = "" if hidden else f" (got {value!r})"
        fix = _fix_hint(error)
        problems.append(f"{_key_path(loc)}: {message}{shown}" + (f": {fix}" if fix else ""))
    return problems


def parse_config(text: str, source: Path) -> Config:
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(
            f"{source} is not valid TOML: {exc}",
            hint="Fix the syntax at that line; `cogent config check` re-validates without running anything.",
        ) from None
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        problems = format_validation_errors(exc)
        raise ConfigError(
            f"{source} has {len(problems)} problem{'s' if len(problems) != 1 else ''}:",
            problems=problems,
            hint="Fix them and run `cogent config check`.",
        ) from None


def load_config(path: Path) -> Config:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"No cogent.toml at {path}", hint="Run `cogent init` to create a workspace here.") from None
    return parse_config(text, path)


def _mask_url(value: Any) -> Any:
    """Webhook URLs carry their token in the path: show only where they point."""
    if not isinstance(value, str):
        return value if not isinstance(value, dict) else f"<from environment variable {value['env']}>"
    scheme, _, rest = value.partition("://")
    return f"{scheme}://{rest.split('/', 1)[0]}/<hidden>"


def effective_config(config: Config) -> dict[str, Any]:
    """The configuration with defaults filled in, secrets shown only as their reference."""
    data = config.model_dump(mode="json")

    def mask(node: Any) -> Any:
        if isinstance(node, dict):
            if set(node) == {"env"}:
                return f"<from environment variable {node['env']}>"
            return {key: _mask_url(value) if key == "webhook_url" else mask(value) for key, value in node.items()}
        if isinstance(node, list):
            return [mask(item) for item in node]
        return node

    return mask(data)
