"""Stand-ins for the four pull APIs, served under `/sources/<system>/...` by the sandbox.

Each speaks its system's documented shape, paging and auth, from the data set that
`cogent sandbox seed` writes to `<data dir>/sources/<system>.json`:

* Peoplevox: SOAP 1.1 at `/sources/peoplevox/<clientId>/resources/integrationservicev4.asmx`
  (`Authenticate`, `GetReportData` with `PageNo`/`ItemsPerPage`/`TotalCount`, CSV in `Detail`,
  `[Column] >= DateTime(...)` search clauses); sessions can be expired on demand.
* Clarus WMS: `/sources/clarus/oauth/token` (client credentials) and `/sources/clarus/graphql`
  (`<collection> { all(filter:, first:, after:) }` relay connections, `X-Clarus-Subdomain`).
* Swap: `/sources/swap/returns-api` (`x-api-key`, `swap_store_id`, `page`/`items_per_page` <= 50).
* Marketplacer: `/sources/marketplacer/graphql` (`MARKETPLACER-API-KEY`, `first`/`after` <= 500,
  750 requests per 10 s per key).

Tests and demos steer them through `SourceStandIns` (expire sessions, shorten token lifetimes,
inject failures, add records) or over HTTP with `POST /sources/_control`.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import re
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl
from xml.sax.saxutils import escape

from defusedxml import ElementTree
from graphql import DocumentNode, GraphQLError, GraphQLSchema, build_schema, execute_sync, parse, validate
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

PVX = "http://www.peoplevox.net/"
SOAP = "http://schemas.xmlsoap.org/soap/envelope/"
PVX_DATE = "%d/%m/%Y %H:%M"
SYSTEMS = ("peoplevox", "clarus", "swap", "marketplacer")


@dataclass(frozen=True)
class SandboxCredentials:
    """The credentials the stand-ins accept (a sandbox: fixed, documented, never real)."""

    peoplevox_client_id: str = "acme-sandbox"
    peoplevox_username: str = "api.user"
    peoplevox_password: str = "sandbox-peoplevox-password"
    clarus_subdomain: str = "acme"
    clarus_client_id: str = "cogent-sandbox"
    clarus_client_secret: str = "sandbox-clarus-secret"
    swap_store_id: str = "store_sandbox"
    swap_api_key: str = "sandbox-swap-key"
    marketplacer_api_key: str = "sandbox-marketplacer-key"

    def environment(self) -> dict[str, str]:
        """The COGENT_* variables that let a workspace pull from the stand-ins."""
        return {
            "COGENT_PEOPLEVOX_PASSWORD": self.peoplevox_password,
            "COGENT_CLARUS_CLIENT_SECRET": self.clarus_client_secret,
            "COGENT_SWAP_API_KEY": self.swap_api_key,
            "COGENT_MARKETPLACER_API_KEY": self.marketplacer_api_key,
        }


SANDBOX_CREDENTIALS = SandboxCredentials()


def sources_config(base_url: str, drop_dir: Path, credentials: SandboxCredentials = SANDBOX_CREDENTIALS) -> str:
    """The cogent.toml sections that point every pull connector at a running sandbox."""
    root = f"{base_url.rstrip('/')}/sources"
    return (
        f'[sources.peoplevox]\nbase_url = "{root}/peoplevox"\nclient_id = "{credentials.peoplevox_client_id}"\n'
        f'username = "{credentials.peoplevox_username}"\npage_delay_seconds = 0\n\n'
        f'[sources.clarus]\nbase_url = "{root}/clarus"\nsubdomain = "{credentials.clarus_subdomain}"\n'
        f'client_id = "{credentials.clarus_client_id}"\n\n'
        f'[sources.swap]\nbase_url = "{root}/swap"\nstore_id = "{credentials.swap_store_id}"\n\n'
        f'[sources.marketplacer]\nbase_url = "{root}/marketplacer"\n\n'
        f'[sources.scend]\ndrop_dir = "{drop_dir}"\n'
    )


@dataclass
class Fault:
    status: int
    remaining: int
    retry_after: float | None = None


@dataclass
class SourceData:
    """The stand-ins' records, per system; `add` appends one (for incremental-pull tests)."""

    peoplevox: dict[str, Any] = field(default_factory=dict)
    clarus: dict[str, Any] = field(default_factory=dict)
    swap: dict[str, Any] = field(default_factory=dict)
    marketplacer: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, folder: Path) -> SourceData:
        data = cls()
        for system in SYSTEMS:
            path = folder / f"{system}.json"
            if path.is_file():
                setattr(data, system, json.loads(path.read_text(encoding="utf-8")))
        return data

    def collection(self, system: str, name: str) -> list[dict[str, Any]]:
        store: dict[str, Any] = getattr(self, system)
        return store.setdefault(name, [])

    def report(self, template: str) -> tuple[list[str], list[dict[str, str]]] | None:
        report = self.peoplevox.get("reports", {}).get(template)
        if report is None:
            return None
        return report["columns"], report["rows"]


def _parse_time(text: Any) -> datetime | None:
    if not isinstance(text, str) or not text.strip():
        return None
    value = text.strip().strip("'")
    for reader in (
        lambda v: datetime.fromisoformat(v.replace("Z", "+00:00")),
        lambda v: datetime.strptime(v, PVX_DATE),
        lambda v: datetime.strptime(v, PVX_DATE + ":%S"),
    ):
        try:
            moment = reader(value)
        except ValueError:
            continue
        return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return None


def encode_cursor(offset: int) -> str:
    return base64.b64encode(f"cursor:{offset}".encode()).decode()


def decode_cursor(cursor: str | None) -> int:
    if not cursor:
        return 0
    try:
        return int(base64.b64decode(cursor).decode().removeprefix("cursor:"))
    except ValueError:
        raise ValueError(f"invalid cursor {cursor!r}") from None


class SlidingWindow:
    def __init__(self, limit: int, window: float) -> None:
        self.limit = limit
        self.window = window
        self.calls: dict[str, deque[float]] = {}

    def allow(self, key: str) -> float | None:
        """None when the call may go ahead, else the seconds until it may."""
        now = time.monotonic()
        calls = self.calls.setdefault(key, deque())
        while calls and now - calls[0] >= self.window:
            calls.popleft()
        if len(calls) >= self.limit:
            return self.window - (now - calls[0])
        calls.append(now)
        return None


# ---------------------------------------------------------------- GraphQL schemas

SCALAR_FILTERS = """
input StringInputType { eq: String ilike: String like: String in: [String] between: [String] }
input IntegerInputType { eq: Int gt: Int gteq: Int lt: Int lteq: Int between: [Int] }
input DatetimeInputType { eq: String from: String to: String between: [String] }
input IdInputType { eq: ID gt: ID gteq: ID lt: ID lteq: ID in: [ID] filled: Boolean }
type PageInfo { hasNextPage: Boolean! endCursor: String }
type Ref { id: ID code: String name: String }
type Address { name: String email_address: String phone_number: String postcode: String country_code: String }
type GoodsOutRef { id: ID reference: String external_system_reference1: String address: Address }
type PackageRef { id: ID tracking_number: String storage_unit_type: Ref }
type ShipmentRef { id: ID reference: String }
type StorageUnit { id: ID reference: String }
"""

CLARUS_TYPES = {
    "shipments": (
        "Shipment",
        "id: ID! reference: String name: String status: String collection_datetime: String updated_at: String "
        "packages_count: Int delivery_notes: String label_filename: String carrier: Ref carrier_service: Ref "
        "warehouse: Ref goods_out: GoodsOutRef packages: [PackageRef!]!",
        "id: IdInputType reference: StringInputType status: StringInputType updated_at: DatetimeInputType "
        "collection_datetime: DatetimeInputType",
    ),
    "packages": (
        "Package",
        "id: ID! tracking_number: String updated_at: String shipment: ShipmentRef storage_unit_type: Ref",
        "shipment_id: IdInputType shipment_reference: StringInputType tracking_number: StringInputType "
        "updated_at: DatetimeInputType",
    ),
    "goods_out_lines": (
        "GoodsOutLine",
        "id: ID! order_quantity: Int allocated_quantity: Int pick_quantity: Int dispatch_quantity: Int "
        "short_status: String updated_at: String product: Ref goods_out: GoodsOutRef carrier: Ref",
        "id: IdInputType updated_at: DatetimeInputType",
    ),
    "stock_balances": (
        "StockBalance",
        "available: Int allocated: Int ordered: Int received: Int picked: Int product: Ref account: Ref warehouse: Ref",
        "product_id: IdInputType product_code: StringInputType account_id: IdInputType",
    ),
    "stocks": (
        "Stock",
        "id: ID! quantity: Int status: String fifo_date: String product: Ref location: Ref account: Ref "
        "storage_unit: StorageUnit warehouse: Ref",
        "status: StringInputType product_code: StringInputType",
    ),
}

FILTER_TYPE_NAMES = {
    "shipments": "ShipmentFilterType",
    "packages": "PackageFilterType",
    "goods_out_lines": "GoodsOutLineFilterType",
    "stock_balances": "StockBalanceFilterType",
    "stocks": "StockFilterType",
}


def clarus_sdl() -> str:
    parts = [SCALAR_FILTERS]
    query_fields = []
    for collection, (type_name, fields, filters) in CLARUS_TYPES.items():
        filter_type = FILTER_TYPE_NAMES[collection]
        parts.append(
            f"type {type_name} {{ {fields} }}\n"
            f"input {filter_type} {{ {filters} }}\n"
            f"type {type_name}Edge {{ cursor: String! node: {type_name}! }}\n"
            f"type {type_name}Connection {{ edges: [{type_name}Edge!]! pageInfo: PageInfo! totalCount: Int! }}\n"
            f"type {type_name}Collection {{ all(filter: {filter_type}, first: Int, after: String): "
            f"{type_name}Connection! }}"
        )
        query_fields.append(f"{collection}: {type_name}Collection!")
    parts.append(f"type Query {{ {' '.join(query_fields)} }}")
    return "\n".join(parts)


MARKETPLACER_SDL = """
type PageInfo { hasNextPage: Boolean! endCursor: String }
type State { short: String }
type Country { code: String }
type Address { address: String city: String postcode: String state: State country: Country }
type Seller { id: ID! businessName: String }
type ExternalID { key: String value: String }
type Order { id: ID! legacyId: Int externalIds: [ExternalID!]! }
type LineItem { id: ID! legacyId: Int variantId: ID variantSku: String variantBarcode: String variantName: String
  quantity: Int status: String unitPrice: String totalPrice: String }
type LineItemRef { id: ID! variantSku: String }
type ShippedItem { id: ID! quantity: Int lineItem: LineItemRef }
type ShipmentCarrier { id: ID! name: String }
type Shipment { id: ID! trackingNumber: String trackingLink: String carrier: String postageCarrier: ShipmentCarrier
  dispatchedAt: String shippedItems: [ShippedItem!] }
type Invoice { id: ID! legacyId: Int! createdAt: String updatedAt: String statusFlags: [String!]! currency: String
  total: String buyerFirstName: String buyerSurname: String buyerEmailAddress: String buyerPhone: String
  shippingAddress: Address seller: Seller order: Order lineItems: [LineItem!] shipments: [Shipment!] }
type InvoiceRef { id: ID! legacyId: Int }
type RefundLineItem { id: ID! reason: String quantity: Int status: String amount: String lineItem: LineItemRef }
type RefundRequest { id: ID! legacyId: Int status: String createdAt: String updatedAt: String invoice: InvoiceRef
  lineItems: [RefundLineItem!] }
type Advert { id: ID! title: String }
type Variant { id: ID! sku: String barcode: String countOnHand: Int infiniteQuantity: Boolean updatedAt: String
  advert: Advert }
input InvoiceFilters { createdSince: String createdUntil: String updatedSince: String updatedUntil: String
  buyerEmailAddress: String externalId: String legacyId: Int notDispatched: Boolean }
input RefundRequestFilters { updatedSince: String statuses: [String!] }
type InvoiceEdge { cursor: String! node: Invoice! }
type RefundRequestEdge { cursor: String! node: RefundRequest! }
type VariantEdge { cursor: String! node: Variant! }
type InvoiceConnection { totalCount: Int! nodes: [Invoice!]! edges: [InvoiceEdge!]! pageInfo: PageInfo! }
type RefundRequestConnection { totalCount: Int! nodes: [RefundRequest!]! edges: [RefundRequestEdge!]!
  pageInfo: PageInfo! }
type VariantConnection { totalCount: Int! nodes: [Variant!]! edges: [VariantEdge!]! pageInfo: PageInfo! }
type Query {
  invoices(first: Int, after: String, filters: InvoiceFilters): InvoiceConnection!
  refundRequests(first: Int, after: String, filters: RefundRequestFilters): RefundRequestConnection!
  variants(first: Int, after: String): VariantConnection!
}
"""


def _matches(value: Any, condition: Mapping[str, Any]) -> bool:
    """One Clarus field filter (`eq`, `ilike`, `in`, `from`, `to`, `gt`, ...) against a record value."""
    for op, expected in condition.items():
        if expected is None:
            continue
        if op in ("from", "to"):
            moment, bound = _parse_time(value), _parse_time(expected)
            if moment is None or bound is None or (moment < bound if op == "from" else moment > bound):
                return False
        elif op == "eq" and str(value) != str(expected):
            return False
        elif op in ("ilike", "like"):
            pattern = str(expected).replace("%", "")
            text = str(value or "")
            if (pattern.lower() not in text.lower()) if op == "ilike" else (pattern not in text):
                return False
        elif (op == "in" and str(value) not in {str(item) for item in expected}) or (
            op == "filled" and bool(value) != bool(expected)
        ):
            return False
        elif op in ("gt", "gteq", "lt", "lteq"):
            try:
                left, right = float(value), float(expected)
            except (TypeError, ValueError):
                return False
            if not {"gt": left > right, "gteq": left >= right, "lt": left < right, "lteq": left <= right}[op]:
                return False
    return True


def _clarus_value(record: Mapping[str, Any], name: str) -> Any:
    if name in record:
        return record[name]
    head, _, tail = name.partition("_")
    nested = record.get(head)
    return nested.get(tail) if isinstance(nested, Mapping) else None


def relay_page(items: list[dict[str, Any]], first: int | None, after: str | None, limit: int) -> dict[str, Any]:
    size = min(first or 50, limit)
    start = decode_cursor(after)
    chunk = items[start : start + size]
    end = start + len(chunk)
    return {
        "totalCount": len(items),
        "nodes": chunk,
        "edges": [{"cursor": encode_cursor(start + i + 1), "node": node} for i, node in enumerate(chunk)],
        "pageInfo": {"hasNextPage": end < len(items), "endCursor": encode_cursor(end) if chunk else after},
    }


# ---------------------------------------------------------------- the stand-ins


Handler = Callable[[Request], Awaitable[Response]]


class SourceStandIns:
    """The four pull APIs over one data set, with controls for expiry, failures and new records."""

    def __init__(self, data_dir: Path | None = None, credentials: SandboxCredentials = SANDBOX_CREDENTIALS) -> None:
        self.folder = data_dir / "sources" if data_dir else None
        self.credentials = credentials
        self.data = SourceData.load(self.folder) if self.folder else SourceData()
        self._loaded_at = self._mtime()
        self.lock = threading.Lock()
        self.sessions: dict[str, str] = {}
        self.tokens: dict[str, float] = {}
        self.token_ttl = 7200.0
        self.faults: dict[str, Fault] = {}
        self.requests: Counter[str] = Counter()
        self.marketplacer_limit = SlidingWindow(750, 10.0)
        # Parsed and validated queries: a connector sends the same few queries page after page.
        self._documents: dict[tuple[int, str], DocumentNode] = {}
        self.clarus_schema = self._clarus_schema()
        self.marketplacer_schema = self._marketplacer_schema()

    # ----- controls

    def expire_sessions(self) -> None:
        """Forget every Peoplevox session, as Peoplevox does after 30 idle minutes."""
        with self.lock:
            self.sessions.clear()

    def expire_tokens(self) -> None:
        with self.lock:
            self.tokens.clear()

    def fail(self, system: str, status: int, times: int = 1, retry_after: float | None = None) -> None:
        """Answer the next `times` requests to `system` with `status`."""
        with self.lock:
            self.faults[system] = Fault(status, times, retry_after)

    def add(self, system: str, collection: str, record: dict[str, Any]) -> None:
        """Append a record (a Peoplevox report row when `system` is peoplevox and `collection` a template)."""
        with self.lock:
            if system == "peoplevox":
                self.data.peoplevox.setdefault("reports", {})[collection]["rows"].append(record)
            else:
                self.data.collection(system, collection).append(record)

    def _mtime(self) -> float:
        if not self.folder or not self.folder.is_dir():
            return 0.0
        return max((p.stat().st_mtime for p in self.folder.glob("*.json")), default=0.0)

    def _refresh(self) -> None:
        """Pick up a data set that `cogent sandbox seed` rewrote while the sandbox runs."""
        if self.folder and (mtime := self._mtime()) > self._loaded_at:
            self.data = SourceData.load(self.folder)
            self._loaded_at = mtime

    def routes(self) -> list[BaseRoute]:
        return [
            Route(
                "/sources/peoplevox/{client_id}/resources/integrationservicev4.asmx",
                self._guard("peoplevox", self.peoplevox),
                methods=["POST"],
            ),
            Route("/sources/clarus/oauth/token", self._guard("clarus", self.clarus_token), methods=["POST"]),
            Route("/sources/clarus/graphql", self._guard("clarus", self.clarus_graphql), methods=["POST"]),
            Route("/sources/swap/returns-api", self._guard("swap", self.swap_returns), methods=["GET"]),
            Route(
                "/sources/marketplacer/graphql",
                self._guard("marketplacer", self.marketplacer_graphql),
                methods=["POST"],
            ),
            Route("/sources/_control", self.control, methods=["POST"]),
        ]

    def _guard(self, system: str, handler: Handler) -> Handler:
        async def guarded(request: Request) -> Response:
            with self.lock:
                self.requests[system] += 1
                self._refresh()
                fault = self.faults.get(system)
                if fault and fault.remaining > 0:
                    fault.remaining -= 1
                    headers = {"Retry-After": f"{fault.retry_after:g}"} if fault.retry_after is not None else {}
                    return JSONResponse({"message": "injected fault"}, fault.status, headers=headers)
            return await handler(request)

        return guarded

    async def control(self, request: Request) -> Response:
        """`{"expire_sessions": true}`, `{"expire_tokens": true}`, `{"fail": {"system", "status", "times"}}`."""
        payload = await request.json()
        if payload.get("expire_sessions"):
            self.expire_sessions()
        if payload.get("expire_tokens"):
            self.expire_tokens()
        if fault := payload.get("fail"):
            self.fail(fault["system"], int(fault["status"]), int(fault.get("times", 1)), fault.get("retry_after"))
        return JSONResponse({"ok": True, "requests": dict(self.requests)})

    # ----- Peoplevox

    async def peoplevox(self, request: Request) -> Response:
        try:
            root = ElementTree.fromstring(await request.body())
        except ElementTree.ParseError:
            return _soap_fault("Server was unable to read request.")
        body = root.find(f"{{{SOAP}}}Body")
        operation = body[0] if body is not None and len(body) else None
        if operation is None:
            return _soap_fault("No operation in the SOAP body.")
        name = operation.tag.removeprefix(f"{{{PVX}}}")
        if request.path_params["client_id"] != self.credentials.peoplevox_client_id:
            return _soap_result(name, -1, 0, "Client not found")
        if name == "Authenticate":
            return self._pvx_authenticate(operation)
        session = root.findtext(f".//{{{PVX}}}SessionId") or ""
        with self.lock:
            known = session in self.sessions
        if not known:
            return _soap_result(name, -1, 0, "System.Exception: Invalid session, please authenticate")
        if name != "GetReportData":
            return _soap_result(name, -1, 0, f"{name} is not served by the sandbox")
        return self._pvx_report(operation)

    def _pvx_authenticate(self, operation: Any) -> Response:
        def field(name: str) -> str:
            return operation.findtext(f"{{{PVX}}}{name}") or ""

        try:
            password = base64.b64decode(field("password")).decode()
        except ValueError:
            password = ""
        creds = self.credentials
        if (
            field("clientId") != creds.peoplevox_client_id
            or field("username") != creds.peoplevox_username
            or password != creds.peoplevox_password
        ):
            return _soap_result("Authenticate", -1, 0, "Invalid user name or password")
        session = uuid.uuid4().hex
        with self.lock:
            self.sessions[session] = field("username")
        return _soap_result("Authenticate", 0, 0, f"{creds.peoplevox_client_id},{session}")

    def _pvx_report(self, operation: Any) -> Response:
        request = operation.find(f"{{{PVX}}}getReportRequest")

        def field(name: str) -> str:
            return (request.findtext(f"{{{PVX}}}{name}") if request is not None else None) or ""

        template = field("TemplateName")
        with self.lock:
            report = self.data.report(template)
            columns, rows = (list(report[0]), list(report[1])) if report else ([], [])
        if report is None:
            return _soap_result("GetReportData", -1, 0, f"Report '{template}' not found")
        try:
            page, per_page = max(1, int(field("PageNo") or 1)), min(1000, max(1, int(field("ItemsPerPage") or 50)))
            rows = [row for row in rows if _clause_matches(field("SearchClause"), row)]
        except ValueError as exc:
            return _soap_result("GetReportData", -1, 0, f"Invalid request: {exc}")
        if order := field("OrderBy").strip("[] "):
            rows.sort(key=lambda row: _parse_time(row.get(order)) or datetime.min.replace(tzinfo=UTC))
        chunk = rows[(page - 1) * per_page : page * per_page]
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\r\n")
        writer.writerow(columns)
        for row in chunk:
            cells = [row.get(column, "") for column in columns]
            writer.writerow([*cells, *row.get("_extra", [])])
        return _soap_result("GetReportData", 0, len(rows), out.getvalue() if chunk else "")

    # ----- Clarus

    async def clarus_token(self, request: Request) -> Response:
        form = dict(parse_qsl((await request.body()).decode("utf-8", errors="replace")))
        creds = self.credentials
        if form.get("grant_type") != "client_credentials":
            return JSONResponse({"error": "unsupported_grant_type"}, 400)
        if form.get("client_id") != creds.clarus_client_id or form.get("client_secret") != creds.clarus_client_secret:
            return JSONResponse({"error": "invalid_client", "error_description": "Client authentication failed"}, 401)
        token = uuid.uuid4().hex
        with self.lock:
            self.tokens[token] = time.monotonic() + self.token_ttl
        return JSONResponse(
            {"access_token": token, "token_type": "Bearer", "expires_in": int(self.token_ttl), "scope": "read"}
        )

    async def clarus_graphql(self, request: Request) -> Response:
        token = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        with self.lock:
            expires = self.tokens.get(token)
        if expires is None or expires < time.monotonic():
            return JSONResponse({"error": "invalid_token", "error_description": "The access token expired"}, 401)
        if request.headers.get("X-Clarus-Subdomain") != self.credentials.clarus_subdomain:
            return JSONResponse({"error": "unknown subdomain"}, 403)
        return await self._graphql(request, self.clarus_schema)

    def _clarus_schema(self) -> GraphQLSchema:
        schema = build_schema(clarus_sdl())
        for collection, (type_name, _, _) in CLARUS_TYPES.items():
            schema.query_type.fields[collection].resolve = lambda *_: {}  # type: ignore[union-attr]
            all_field = schema.get_type(f"{type_name}Collection").fields["all"]  # type: ignore[union-attr]
            all_field.resolve = self._clarus_resolver(collection)
        shipment_packages = schema.get_type("Shipment").fields["packages"]  # type: ignore[union-attr]
        shipment_packages.resolve = self._clarus_packages
        return schema

    def _clarus_packages(self, shipment: Mapping[str, Any], _: Any) -> list[dict[str, Any]]:
        with self.lock:
            packages = self.data.collection("clarus", "packages")
            return [p for p in packages if (p.get("shipment") or {}).get("id") == shipment.get("id")]

    def _clarus_resolver(self, collection: str) -> Callable[..., dict[str, Any]]:
        def resolve(_: Any, __: Any, filter: Mapping[str, Any] | None = None, first: int | None = None,
                    after: str | None = None) -> dict[str, Any]:  # fmt: skip
            with self.lock:
                items = list(self.data.collection("clarus", collection))
            for name, condition in (filter or {}).items():
                items = [item for item in items if _matches(_clarus_value(item, name), condition or {})]
            return relay_page(items, first, after, 500)

        return resolve

    # ----- Swap

    async def swap_returns(self, request: Request) -> Response:
        if request.headers.get("x-api-key") != self.credentials.swap_api_key:
            return JSONResponse({"message": "Forbidden"}, 403)
        params = request.query_params
        if params.get("swap_store_id") != self.credentials.swap_store_id:
            return JSONResponse({"message": "swap_store_id is required and must name your store"}, 400)
        try:
            page = int(params.get("page", "1"))
            per_page = int(params.get("items_per_page", "50"))
        except ValueError:
            return JSONResponse({"message": "page and items_per_page must be integers"}, 400)
        if not 1 <= per_page <= 50 or page < 1:
            return JSONResponse({"message": "items_per_page must be between 1 and 50"}, 400)
        with self.lock:
            returns = list(self.data.collection("swap", "returns"))
        if since := _parse_time(params.get("last_updated_date")):
            returns = [r for r in returns if (_parse_time(r.get("date_updated")) or since) >= since]
        returns.sort(key=lambda r: str(r.get("date_updated") or ""))
        chunk = returns[(page - 1) * per_page : page * per_page]
        total_pages = max(1, -(-len(returns) // per_page))
        return JSONResponse(
            {
                "returns": chunk,
                "page": page,
                "items_per_page": per_page,
                "total_items": len(returns),
                "total_pages": total_pages,
            }
        )

    # ----- Marketplacer

    async def marketplacer_graphql(self, request: Request) -> Response:
        key = request.headers.get("MARKETPLACER-API-KEY", "")
        if key != self.credentials.marketplacer_api_key:
            return JSONResponse({"errors": [{"message": "Unauthorized"}]}, 401)
        with self.lock:
            wait = self.marketplacer_limit.allow(key)
        if wait is not None:
            return JSONResponse(
                {"errors": [{"message": "Rate limit exceeded"}]}, 429, headers={"Retry-After": f"{wait:.0f}"}
            )
        return await self._graphql(request, self.marketplacer_schema)

    def _marketplacer_schema(self) -> GraphQLSchema:
        schema = build_schema(MARKETPLACER_SDL)
        fields = schema.query_type.fields  # type: ignore[union-attr]
        fields["invoices"].resolve = self._marketplacer_resolver("invoices")
        fields["refundRequests"].resolve = self._marketplacer_resolver("refund_requests")
        fields["variants"].resolve = self._marketplacer_resolver("variants")
        return schema

    def _marketplacer_resolver(self, collection: str) -> Callable[..., dict[str, Any]]:
        def resolve(_: Any, __: Any, first: int | None = None, after: str | None = None,
                    filters: Mapping[str, Any] | None = None) -> dict[str, Any]:  # fmt: skip
            if first is not None and first > 500:
                raise ValueError("first must be at most 500")
            with self.lock:
                items = list(self.data.collection("marketplacer", collection))
            filters = filters or {}
            if since := _parse_time(filters.get("updatedSince")):
                items = [item for item in items if (_parse_time(item.get("updatedAt")) or since) >= since]
            if statuses := filters.get("statuses"):
                items = [item for item in items if item.get("status") in statuses]
            return relay_page(items, first, after, 500)

        return resolve

    async def _graphql(self, request: Request, schema: GraphQLSchema) -> Response:
        try:
            payload = await request.json()
        except ValueError:
            return JSONResponse({"errors": [{"message": "Body is not JSON"}]}, 400)
        query = payload.get("query", "")
        document = self._documents.get((id(schema), query))
        if document is None:
            try:
                document = parse(query)
            except GraphQLError as error:
                return JSONResponse({"data": None, "errors": [error.formatted]})
            if errors := validate(schema, document):
                return JSONResponse({"data": None, "errors": [error.formatted for error in errors]})
            self._documents[(id(schema), query)] = document
        result = execute_sync(schema, document, variable_values=payload.get("variables"))
        body: dict[str, Any] = {"data": result.data}
        if result.errors:
            body["errors"] = [error.formatted for error in result.errors]
        return JSONResponse(body)


_CLAUSE = re.compile(r"\(?\s*\[(?P<column>[^\]]+)\]\s*(?P<op>>=|<=|>|<)\s*DateTime\((?P<parts>[\d,\s]+)\)\s*\)?")


def _clause_matches(clause: str, row: Mapping[str, Any]) -> bool:
    """The date comparisons of a Peoplevox search clause, joined with AND (all the sandbox needs)."""
    if not clause.strip():
        return True
    for part in re.split(r"\s+AND\s+", clause.strip(), flags=re.IGNORECASE):
        match = _CLAUSE.fullmatch(part.strip())
        if not match:
            raise ValueError(f"unsupported search clause {part!r}")
        bound = datetime(*map(int, match["parts"].split(",")), tzinfo=UTC)
        value = _parse_time(row.get(match["column"]))
        if value is None:
            return False
        ok = {">=": value >= bound, "<=": value <= bound, ">": value > bound, "<": value < bound}[match["op"]]
        if not ok:
            return False
    return True


def _soap_result(operation: str, response_id: int, total: int, detail: str) -> Response:
    xml = (
        '<?xml version="1.0" encoding="utf-8"?>'
        f'<soap:Envelope xmlns:soap="{SOAP}"><soap:Body><{operation}Response xmlns="{PVX}">'
        f"<{operation}Result><ResponseId>{response_id}</ResponseId><TotalCount>{total}</TotalCount>"
        f"<Detail>{escape(detail)}</Detail><Statuses /></{operation}Result></{operation}Response>"
        "</soap:Body></soap:Envelope>"
    )
    return Response(xml, media_type="text/xml; charset=utf-8")


def _soap_fault(message: str) -> Response:
    xml = (
        f'<?xml version="1.0" encoding="utf-8"?><soap:Envelope xmlns:soap="{SOAP}"><soap:Body><soap:Fault>'
        f"<faultcode>soap:Client</faultcode><faultstring>{escape(message)}</faultstring></soap:Fault>"
        "</soap:Body></soap:Envelope>"
    )
    return Response(xml, status_code=500, media_type="text/xml; charset=utf-8")
