"""How a source system's payloads become normalised events: the normaliser registry and its context.

Writing a normaliser (e.g. `cogent_cli/normalise/clarus.py`)
-------------------------------------------------------------
Every module in this package is imported by `load_normalisers()`, so a new module only has to exist.
Register one function per (system, kind); `kind` is the name the inbox stores for a payload
(`despatch_summary`, `swap_return`, `marketplacer_webhook`, ...)::

    from cogent_cli.normalise.base import NormaliseContext, NormaliseError, Record, register
    from cogent_cli.normalise.fields import Row

    @register("clarus", "clarus_webhook", matches=lambda r: "goods_out_type" in r)
    def clarus_webhook(record: Record, ctx: NormaliseContext) -> Iterator[NormalisedEvent]:
        shipped_at = Row(record).datetime("actual_date_of_dispatch")
        ...
        yield ctx.event("shipment.despatched", dedupe_key=..., occurred_at=shipped_at, data={...},
                        order_ref=ctx.order_ref(record, default_field="external_system_reference1"))

* `record` is the raw payload, parsed from the inbox body: a JSON object (webhook body, one JSON Lines
  record, one CSV row as {column: value}), or, for `body="form"` kinds, a query string as {name: value}.
* Return or yield zero or more events, built with `ctx.event(...)` (a wrapper of
  `cogent_cli.events.make_event` that fills in the source, tenant, transport and received time).
  Returning no event is fine (e.g. a status that is not a despatch): the record is marked normalised.
* Raise `NormaliseError(field, value, rule)` for anything invalid: the record is quarantined with that
  reason and the records beside it carry on. The `fields` helpers raise it for you (required fields,
  integers, dates, money, booleans). A pydantic error from the event model becomes a NormaliseError too.
  Any other exception is a bug in the normaliser; the record is quarantined with the exception named.
* State the rules need lives behind the context, inside the same transaction as the events:
  - `ctx.status(native)`: native status -> normalised (`config.mapping.status[system]`, then the
    normaliser's defaults); an unknown status raises NormaliseError, so a mapping fix + retry heals it.
  - `ctx.ledger.record_order(order_number, {sku: qty})` stores ordered quantities;
    `ctx.shipments.despatch(...)` (see `cogent_cli.normalise.ledger`) turns one shipment into a
    `shipment.despatched` event with `is_partial`/`is_final` from the order ledger, and upgrades rather
    than duplicates a shipment seen before.
  - `ctx.stock.snapshot(...)` (see `cogent_cli.normalise.stock`) diffs a stock snapshot against the last
    known level per SKU and site and returns a `stock.level_changed` event only when something changed.
  - `ctx.ship_method(...)` records a raw ship method and whether `config.mapping.ship_methods` knows it.
* `ctx.order_ref(record, default_field=...)` reads the storefront order number from the field named by
  `[sources.<system>] order_number_field` (dotted paths reach into nested JSON), so orders join across systems.

Records that only make sense together (Peoplevox's Despatch summary has one row per despatch x item) use
`register_grouped(system, kind, group_key=, parse_row=, build_group=)`: each row is validated alone by
`parse_row(record, ctx)` (a bad row is quarantined alone), then the parsed rows that share
`group_key(record, config)` within one normalisation run go to `build_group(parsed_rows, ctx)` together.
Rows of one group that arrive in a later run upgrade the earlier event (see `ledger.Shipments`).

Kind detection for `cogent ingest`: give `columns` (CSV header names that identify the kind) and/or
`matches` (a predicate over a JSON record). `--kind` overrides detection.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property, lru_cache
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from pydantic import BaseModel, ValidationError

from cogent_cli.config import Config, SourceSettings
from cogent_cli.errors import CogentError
from cogent_cli.events import (
    CustomerRef,
    EventType,
    NormalisedEvent,
    OrderRef,
    ShipMethod,
    Source,
    Transport,
    make_event,
)
from cogent_cli.normalise.ledger import OrderLedger, Shipments, ShipmentWrites

if TYPE_CHECKING:
    from sqlite3 import Connection

    from cogent_cli.normalise.stock import StockBook

Record = dict[str, Any]
BodyFormat = Literal["json", "form"]
Route = Literal["pull", "file", "webhook"]
ROUTE_TRANSPORT: dict[str, Transport] = {"pull": "poll", "file": "file", "webhook": "webhook"}
MAX_VALUE_IN_REASON = 80


class NormaliseError(CogentError):
    """A raw record that cannot become an event: which field, what value, which rule it broke."""

    def __init__(self, field: str, value: Any, rule: str) -> None:
        self.field = field
        self.value = value
        self.rule = rule
        super().__init__(self.reason, hint="Fix the mapping or the source data, then `cogent inbox retry`.")

    @property
    def reason(self) -> str:
        shown = repr(self.value)
        if len(shown) > MAX_VALUE_IN_REASON:
            shown = shown[: MAX_VALUE_IN_REASON - 3] + "..."
        return f"{self.field} = {shown}: {self.rule}"

    @classmethod
    def from_validation(cls, exc: ValidationError, prefix: str = "") -> NormaliseError:
        first = exc.errors(include_url=False)[0]
        path = ".".join(str(part) for part in first["loc"] if not str(part).startswith("function-"))
        return cls(f"{prefix}{path}" or "(event)", first.get("input"), first["msg"])


RowNormaliser = Callable[[Record, "NormaliseContext"], Iterable[NormalisedEvent] | None]


@dataclass(frozen=True)
class Normaliser:
    """How one (system, kind) turns raw records into events; see the module docstring."""

    system: str
    kind: str
    normalise: RowNormaliser | None = None
    group_key: Callable[[Record, Config], str] | None = None
    parse_row: Callable[[Record, NormaliseContext], Any] | None = None
    build_group: Callable[[Sequence[Any], NormaliseContext], Iterable[NormalisedEvent] | None] | None = None
    body: BodyFormat = "json"
    # CSV header names that identify the kind; a function of the config when they are configurable.
    columns: frozenset[str] | Callable[[Config], Iterable[str]] = frozenset()
    matches: Callable[[Record], bool] | None = None
    # The source's natural key of a record, when it has one; `cogent ingest` and the pull connectors
    # use it as the inbox idempotency key so one fact arriving by two routes is stored once.
    natural_key: Callable[[Record], str] | None = None
    description: str = ""

    @property
    def grouped(self) -> bool:
        return self.group_key is not None

    def header_columns(self, config: Config) -> frozenset[str]:
        columns = self.columns
        return frozenset(columns(config) if callable(columns) else columns)


_REGISTRY: dict[tuple[str, str], Normaliser] = {}


def add_normaliser(normaliser: Normaliser) -> Normaliser:
    key = (normaliser.system, normaliser.kind)
    if key in _REGISTRY and _REGISTRY[key] != normaliser:
        raise ValueError(f"a normaliser for {key} is already registered")
    if normaliser.grouped != (normaliser.parse_row is not None and normaliser.build_group is not None):
        raise ValueError(f"{key}: a grouped normaliser needs group_key, parse_row and build_group")
    if not normaliser.grouped and normaliser.normalise is None:
        raise ValueError(f"{key}: give a normalise function")
    _REGISTRY[key] = normaliser
    return normaliser


def register(
    system: str,
    kind: str,
    *,
    body: BodyFormat = "json",
    columns: Iterable[str] | Callable[[Config], Iterable[str]] = (),
    matches: Callable[[Record], bool] | None = None,
    natural_key: Callable[[Record], str] | None = None,
    description: str = "",
) -> Callable[[RowNormaliser], RowNormaliser]:
    """Decorator registering `fn(record, ctx) -> events` for (system, kind)."""

    def decorate(fn: RowNormaliser) -> RowNormaliser:
        add_normaliser(
            Normaliser(
                system,
                kind,
                normalise=fn,
                body=body,
                columns=columns if callable(columns) else frozenset(columns),
                matches=matches,
                natural_key=natural_key,
                description=description or _summary(fn),
            )
        )
        return fn

    return decorate


def register_grouped(
    system: str,
    kind: str,
    *,
    group_key: Callable[[Record, Config], str],
    parse_row: Callable[[Record, NormaliseContext], Any],
    build_group: Callable[[Sequence[Any], NormaliseContext], Iterable[NormalisedEvent] | None],
    body: BodyFormat = "json",
    columns: Iterable[str] | Callable[[Config], Iterable[str]] = (),
    matches: Callable[[Record], bool] | None = None,
    natural_key: Callable[[Record], str] | None = None,
    description: str = "",
) -> Normaliser:
    """Register a kind whose rows are validated one by one and turned into events group by group."""
    return add_normaliser(
        Normaliser(
            system,
            kind,
            group_key=group_key,
            parse_row=parse_row,
            build_group=build_group,
            body=body,
            columns=columns if callable(columns) else frozenset(columns),
            matches=matches,
            natural_key=natural_key,
            description=description or _summary(build_group),
        )
    )


def _summary(fn: Callable[..., Any]) -> str:
    doc = (fn.__doc__ or "").strip()
    return doc.splitlines()[0] if doc else ""


def load_normalisers() -> dict[tuple[str, str], Normaliser]:
    """Import every module of this package (each registers its kinds) and return the registry."""
    package = importlib.import_module("cogent_cli.normalise")
    for module in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"cogent_cli.normalise.{module.name}")
    return dict(_REGISTRY)


def get_normaliser(system: str, kind: str) -> Normaliser | None:
    return load_normalisers().get((system, kind))


def kinds_for(system: str) -> list[str]:
    return sorted(kind for (sys_name, kind) in load_normalisers() if sys_name == system)


def source_settings(config: Config, system: str) -> SourceSettings | None:
    return getattr(config.sources, system, None)


S = TypeVar("S", bound=SourceSettings)
_DEFAULT_SETTINGS: dict[type[SourceSettings], SourceSettings] = {}


def settings_for(config: Config, system: str, model: type[S]) -> S:
    """`[sources.<system>]`, or the defaults of `model` when the workspace leaves the section out
    (built once: normalisers ask for them per record)."""
    settings = source_settings(config, system)
    if isinstance(settings, model):
        return settings
    default = _DEFAULT_SETTINGS.get(model)
    if default is None:
        default = _DEFAULT_SETTINGS[model] = model()
    return default  # type: ignore[return-value]


def tenant_for(config: Config, system: str) -> str:
    """The tenant that namespaces event ids: explicit setting, else the system's account id, else the workspace."""
    settings = source_settings(config, system)
    if settings is not None:
        for name in ("tenant", "client_id", "client_code", "subdomain", "store_id"):
            value = getattr(settings, name, None)
            if value:
                return str(value)
    return config.workspace.id


def _canon(name: str) -> str:
    return "".join(ch for ch in name.lower() if ch.isalnum())


def lookup(record: Mapping[str, Any], path: str) -> Any:
    """A field by name, by dotted path into nested objects (lists take their first element), or by a
    name that differs only in case, spaces or punctuation ("Salesorder number" finds "Salesorder_number")."""
    if path in record:
        return record[path]
    node: Any = record
    for part in path.split("."):
        if isinstance(node, list):
            node = node[0] if node else None
        if not isinstance(node, Mapping) or part not in node:
            node = None
            break
        node = node[part]
    if node is not None:
        return node
    wanted = _canon(path)
    return next((value for key, value in record.items() if isinstance(key, str) and _canon(key) == wanted), None)


@dataclass
class NormaliseContext:
    """What a normaliser may use besides the record: settings, identity, and the rules' state."""

    config: Config
    conn: Connection
    system: str
    kind: str
    route: str
    inbox_id: int
    received_at: datetime
    tenant: str = ""
    # Delivery headers stored with the raw body (webhooks: Marketplacer-Sequence, X-ClarusWMS-...).
    headers: Mapping[str, str] = field(default_factory=dict)
    # Shared by the contexts of one run and written when the run's batch commits.
    ship_methods: ShipMethodsSeen = field(default_factory=lambda: ShipMethodsSeen())
    shipment_writes: ShipmentWrites = field(default_factory=ShipmentWrites)

    def header(self, name: str) -> str | None:
        """A delivery header, matched without regard to case."""
        wanted = name.lower()
        return next((value for key, value in self.headers.items() if key.lower() == wanted), None)

    def __post_init__(self) -> None:
        from cogent_cli.normalise.stock import StockBook

        self.tenant = self.tenant or tenant_for(self.config, self.system)
        self.ledger: OrderLedger = OrderLedger(self.conn, self.shipment_writes)
        self.shipments: Shipments = Shipments(self)
        self.stock: StockBook = StockBook(self)

    @cached_property
    def received_iso(self) -> str:
        """`received_at` as text, worked out once per context rather than once per ship method seen."""
        return self.received_at.isoformat()

    @property
    def settings(self) -> SourceSettings | None:
        return source_settings(self.config, self.system)

    @property
    def transport(self) -> Transport:
        return ROUTE_TRANSPORT.get(self.route, "file")

    def event(
        self,
        event_type: EventType,
        *,
        dedupe_key: str,
        occurred_at: datetime,
        data: Mapping[str, Any] | BaseModel,
        native_event: str | None = None,
        native_ids: Mapping[str, Any] | None = None,
        customer: CustomerRef | Mapping[str, Any] | None = None,
        order_ref: OrderRef | Mapping[str, Any] | None = None,
        confidence: Literal["documented", "inferred", "assumed"] | None = None,
        sequence: int | None = None,
    ) -> NormalisedEvent:
        """A normalised event from this context's source; model violations become NormaliseError."""
        try:
            source = Source(
                system=self.system,  # type: ignore[arg-type]
                tenant=self.tenant,
                transport=self.transport,
                native_event=native_event,
                native_ids={k: str(v) for k, v in (native_ids or {}).items() if v not in (None, "")},
                dedupe_key=dedupe_key,
                sequence=sequence,
                raw_ref=f"inbox:{self.inbox_id}",
            )
            envelope: dict[str, Any] = {}
            if customer is not None:
                envelope["customer"] = customer
            if order_ref is not None:
                envelope["order_ref"] = order_ref
            if confidence is not None:
                envelope["confidence"] = confidence
            return make_event(
                event_type,
                source=source,
                occurred_at=occurred_at,
                data=data if isinstance(data, BaseModel) else dict(data),
                received_at=self.received_at,
                **envelope,
            )
        except ValidationError as exc:
            raise NormaliseError.from_validation(exc) from None

    def order_number(self, record: Mapping[str, Any], default_field: str) -> str | None:
        """The storefront order number, from `[sources.<system>] order_number_field` or the default field."""
        settings = self.settings
        name = (settings.order_number_field if settings else None) or default_field
        value = lookup(record, name)
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
        return str(value).strip()

    def order_ref(
        self, record: Mapping[str, Any], default_field: str, source_order_id: str | None = None, **extra: Any
    ) -> OrderRef | None:
        number = self.order_number(record, default_field)
        source_id = source_order_id if source_order_id is not None else lookup(record, default_field)
        if number is None and source_id in (None, ""):
            return None
        return OrderRef(
            order_number=number,
            source_order_id=str(source_id).strip() if source_id not in (None, "") else None,
            **{k: v for k, v in extra.items() if v not in (None, "")},
        )

    def status(self, native: str, defaults: Mapping[str, str] | None = None, field_name: str = "status") -> str:
        """Normalised status of a native one; `[mapping.status.<system>]` wins over the normaliser's defaults."""
        configured = self.config.mapping.status.get(self.system, {})
        defaults = defaults or {}
        for table in (configured, defaults):
            for key in (native, native.strip(), native.strip().lower(), native.strip().upper()):
                if key in table:
                    return table[key]
        known = sorted({*configured, *defaults})
        raise NormaliseError(
            field_name,
            native,
            f"unknown {self.system} status; map it under [mapping.status.{self.system}] "
            f"(known: {', '.join(known) or 'none'})",
        )

    def ship_method(self, method: ShipMethod, event_id: str) -> bool:
        """Record a raw ship method as seen; returns whether `mapping.ship_methods` knows it."""
        key = (
            self.system,
            method.carrier_code or "",
            method.carrier_name or "",
            method.service_code or "",
            method.service_name or "",
        )
        known = self.ship_methods.known.get(key)
        if known is None:
            known = self.ship_methods.known[key] = ship_method_known(self.config, method)
        self.ship_methods.see(key, known, self.received_iso, event_id)
        return known


class ShipMethodsSeen:
    """Ship methods seen during a normalisation run, written to `ship_methods_seen` in one go.

    Like `ShipmentWrites`, the methods of the unit being normalised are held apart until `keep_unit`:
    a quarantined record's methods (`drop_unit`) are not counted as seen."""

    def __init__(self) -> None:
        self.pending: dict[tuple[str, ...], list[Any]] = {}
        self.unit: list[tuple[tuple[str, ...], bool, str, str]] = []
        # Whether the mapping knows each method, worked out once per run (the config does not change).
        self.known: dict[tuple[str, ...], bool] = {}

    def see(self, key: tuple[str, ...], known: bool, seen: str, event_id: str) -> None:
        self.unit.append((key, known, seen, event_id))

    def keep_unit(self) -> None:
        for sighting in self.unit:
            self._count(*sighting)
        self.unit.clear()

    def drop_unit(self) -> None:
        self.unit.clear()

    def _count(self, key: tuple[str, ...], known: bool, seen: str, event_id: str) -> None:
        entry = self.pending.get(key)
        if entry is None:
            self.pending[key] = [int(known), 1, seen, seen, event_id]
        else:
            entry[0], entry[1], entry[3], entry[4] = int(known), entry[1] + 1, max(entry[3], seen), event_id

    def flush(self, conn: Connection) -> None:
        self.keep_unit()
        conn.executemany(
            "INSERT INTO ship_methods_seen (system, carrier_code, carrier_name, service_code, service_name,"
            " known, events, first_seen, last_seen, last_event_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (system, carrier_code, carrier_name, service_code, service_name) DO UPDATE SET"
            " known = excluded.known, events = events + excluded.events,"
            " last_seen = max(last_seen, excluded.last_seen), last_event_id = excluded.last_event_id",
            [(*key, *values) for key, values in self.pending.items()],
        )
        self.pending.clear()


@lru_cache(maxsize=4096)
def ship_method_of(
    carrier_code: str | None, carrier_name: str | None, service_code: str | None, service_name: str | None
) -> ShipMethod:
    """One ShipMethod per distinct method, shared by every record naming it (models are never mutated)."""
    return ShipMethod(
        carrier_code=carrier_code, carrier_name=carrier_name, service_code=service_code, service_name=service_name
    )


def ship_method_keys(method: ShipMethod) -> list[str]:
    """The names a ship method may be mapped by, most specific first."""
    keys = []
    for carrier in (method.carrier_code, method.carrier_name):
        for service in (method.service_code, method.service_name):
            if carrier and service:
                keys.append(f"{carrier}/{service}")
    keys.extend(value for value in (method.service_code, method.service_name) if value)
    return keys


def ship_method_known(config: Config, method: ShipMethod) -> bool:
    mapping = config.mapping.ship_methods
    return any(key in mapping for key in ship_method_keys(method))
