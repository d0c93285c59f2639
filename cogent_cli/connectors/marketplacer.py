"""Marketplacer: the GraphQL API (`/graphql`) with the `MARKETPLACER-API-KEY` header.

Invoices (with their line items and shipments) and refund requests are read incrementally with
`updatedSince`; variants (stock on hand) are read whole as one snapshot per run. Paging is relay
(`first` / `after`, at most 500). Requests stay under the published limits (750 per 10 s per key)
with a client-side sliding window; a 429/503 still waits as told (at least 60 s without Retry-After).
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx

from cogent_cli.config import Config
from cogent_cli.connectors.base import Page, Pass, RawRecord, RetryPolicy, SourceHTTP, content_key, iso
from cogent_cli.connectors.graphql import connection_nodes, dig, graphql_data, next_cursor
from cogent_cli.credentials import Credentials
from cogent_cli.errors import UsageError

WINDOW_SECONDS = 10.0
MAX_PAGE_SIZE = 500

INVOICE_FIELDS = (
    "__typename id legacyId createdAt updatedAt statusFlags currency total "
    "buyerFirstName buyerSurname buyerEmailAddress buyerPhone "
    "shippingAddress { address city postcode state { short } country { code } } "
    "seller { id businessName } order { id legacyId externalIds { key value } } "
    "lineItems { id legacyId variantId variantSku variantBarcode variantName quantity status unitPrice totalPrice } "
    "shipments { id trackingNumber trackingLink carrier postageCarrier { id name } dispatchedAt "
    "shippedItems { id quantity lineItem { id } } }"
)
REFUND_FIELDS = (
    "__typename id legacyId status createdAt updatedAt invoice { id legacyId } "
    "lineItems { id reason quantity status amount lineItem { id variantSku } }"
)
VARIANT_FIELDS = "__typename id sku barcode countOnHand infiniteQuantity updatedAt advert { id title }"


@dataclass(frozen=True)
class Query:
    stream: str
    kind: str
    field: str
    fields: str
    filters_type: str | None


QUERIES = {
    q.stream: q
    for q in (
        Query("invoices", "marketplacer_invoice", "invoices", INVOICE_FIELDS, "InvoiceFilters"),
        Query(
            "refund_requests", "marketplacer_refund_request", "refundRequests", REFUND_FIELDS, "RefundRequestFilters"
        ),
        Query("variants", "marketplacer_variant", "variants", VARIANT_FIELDS, None),
    )
}


def query_for(query: Query) -> str:
    filters_var = f", $filters: {query.filters_type}" if query.filters_type else ""
    filters_arg = ", filters: $filters" if query.filters_type else ""
    return (
        f"query Pull($first: Int!, $after: String{filters_var}) {{ {query.field}(first: $first, after: $after"
        f"{filters_arg}) {{ totalCount nodes {{ {query.fields} }} pageInfo {{ hasNextPage endCursor }} }} }}"
    )


class RateLimiter:
    """At most `limit` calls in any `window` seconds (sliding window); waits instead of exceeding it."""

    def __init__(
        self,
        limit: int,
        window: float = WINDOW_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.limit = limit
        self.window = window
        self._clock = clock
        self._sleep = sleep
        self._calls: deque[float] = deque()
        self._lock = threading.Lock()
        self.waited = 0.0

    def acquire(self) -> None:
        with self._lock:
            now = self._clock()
            while self._calls and now - self._calls[0] >= self.window:
                self._calls.popleft()
            if len(self._calls) >= self.limit:
                delay = self.window - (now - self._calls[0])
                self.waited += delay
                self._sleep(delay)
                now = self._clock()
                self._calls.popleft()
            self._calls.append(now)


class MarketplacerConnector:
    system = "marketplacer"
    streams = tuple(QUERIES)

    def __init__(
        self,
        config: Config,
        *,
        transport: httpx.BaseTransport | None = None,
        retry: RetryPolicy | None = None,
        limiter: RateLimiter | None = None,
    ) -> None:
        settings = config.sources.marketplacer
        if settings is None or not settings.base_url:
            raise UsageError(
                "Marketplacer is not configured",
                hint="Add [sources.marketplacer] with base_url (https://<instance>) to cogent.toml, "
                "then `cogent auth set marketplacer`.",
            )
        self.settings = settings
        self.http = SourceHTTP(
            "marketplacer",
            settings.base_url,
            transport=transport,
            retry=retry or RetryPolicy(default_retry_after=60.0),
            headers={"MARKETPLACER-API-KEY": Credentials(config).get("marketplacer", "api_key")},
        )
        self.limiter = limiter or RateLimiter(settings.requests_per_10s)

    def close(self) -> None:
        self.http.close()

    def query(self, query: str, variables: dict[str, Any]) -> dict[str, Any]:
        self.limiter.acquire()
        response = self.http.request("POST", "/graphql", json={"query": query, "variables": variables})
        if response.status_code in (401, 403):
            raise self.http.rejected(
                response,
                "API key",
                "Create an API key in the Marketplacer portal and store it with `cogent auth set marketplacer` "
                "(or set COGENT_MARKETPLACER_API_KEY); an expired key must be replaced.",
            )
        return graphql_data(self.http, response)

    def pages(self, stream: str, cursor: Mapping[str, Any] | None, since: datetime | None) -> Iterator[Page]:
        spec = QUERIES[stream]
        sweep = Pass.begin(cursor, since)
        variables: dict[str, Any] = {"first": min(self.settings.page_size, MAX_PAGE_SIZE)}
        if spec.filters_type and sweep.since is not None:
            variables["filters"] = {"updatedSince": iso(sweep.since)}
        after = sweep.position
        while True:
            data = self.query(query_for(spec), {**variables, "after": after})
            connection = dig(data, (spec.field,))
            nodes = connection_nodes(connection)
            after = next_cursor(connection)
            records = [self.record(spec, node, sweep) for node in nodes]
            total = connection.get("totalCount")
            yield Page(stream, records, sweep.finished() if after is None else sweep.at(after), total=total)
            if after is None:
                return

    def record(self, spec: Query, node: dict[str, Any], sweep: Pass) -> RawRecord:
        parts = [spec.kind] if spec.filters_type else [spec.kind, sweep.snapshot_id]
        return RawRecord(spec.kind, content_key(*parts, str(node.get("id", "")), body=node), json.dumps(node))
