"""Clarus WMS: GraphQL reads (`/graphql`) with an OAuth2 client-credentials token and `X-Clarus-Subdomain`.

Every collection is read as `<collection> { all(filter:, first:, after:) { edges { node } pageInfo } }`.
Movement streams (shipments with their packages, goods-out lines) filter on the configured updated-at field
from the last pass; stock streams are read whole as one snapshot per run.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx

from cogent_cli.config import Config
from cogent_cli.connectors.base import Page, Pass, RawRecord, RetryPolicy, SourceHTTP, content_key, iso
from cogent_cli.connectors.graphql import connection_nodes, dig, graphql_data, next_cursor
from cogent_cli.credentials import Credentials
from cogent_cli.errors import CredentialError, UsageError

# [ASSUMPTION] the date filter of incremental reads; Clarus documents `created_at` on carriers and
# "more fields and filters via introspection", not this name.
UPDATED_FILTER = "updated_at"
# Renew a token this long before it expires, so a page never starts with a token about to lapse.
TOKEN_MARGIN_SECONDS = 60

REF = "{ id code }"
GOODS_OUT = (
    "goods_out { id reference external_system_reference1 "
    "address { name email_address phone_number postcode country_code } }"
)
# Packages are read inside their shipment, so each shipment arrives with its per-parcel tracking.
SHIPMENT_FIELDS = (
    "id reference name status collection_datetime updated_at packages_count delivery_notes "
    "carrier { id code name } carrier_service { id code name } warehouse { id code name } "
    f"packages {{ id tracking_number storage_unit_type {REF} }} {GOODS_OUT}"
)
LINE_FIELDS = (
    "id order_quantity allocated_quantity pick_quantity dispatch_quantity short_status updated_at "
    f"product {REF} goods_out {{ id reference external_system_reference1 }} carrier {{ id }}"
)
BALANCE_FIELDS = f"available allocated ordered received picked product {REF} account {REF} warehouse {REF}"
STOCK_FIELDS = (
    f"id quantity status fifo_date product {REF} location {REF} account {REF} "
    "storage_unit { id reference } warehouse { id code }"
)


@dataclass(frozen=True)
class Collection:
    stream: str
    kind: str
    field: str
    filter_type: str
    fields: str
    snapshot: bool = False


COLLECTIONS = {
    c.stream: c
    for c in (
        Collection("shipments", "clarus_shipment", "shipments", "ShipmentFilterType", SHIPMENT_FIELDS),
        Collection(
            "goods_out_lines", "clarus_goods_out_line", "goods_out_lines", "GoodsOutLineFilterType", LINE_FIELDS
        ),
        Collection(
            "stock_balances", "clarus_stock_balance", "stock_balances", "StockBalanceFilterType", BALANCE_FIELDS, True
        ),
        Collection("stocks", "clarus_stock", "stocks", "StockFilterType", STOCK_FIELDS, True),
    )
}


def query_for(collection: Collection) -> str:
    return (
        f"query Pull($filter: {collection.filter_type}, $first: Int, $after: String) {{ {collection.field} {{ "
        f"all(filter: $filter, first: $first, after: $after) {{ edges {{ node {{ {collection.fields} }} }} "
        "pageInfo { hasNextPage endCursor } } } }"
    )


class ClarusConnector:
    system = "clarus"
    streams = tuple(COLLECTIONS)

    def __init__(
        self,
        config: Config,
        *,
        transport: httpx.BaseTransport | None = None,
        retry: RetryPolicy | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        settings = config.sources.clarus
        if settings is None or not settings.subdomain or not settings.client_id:
            raise UsageError(
                "Clarus WMS is not configured",
                hint="Add [sources.clarus] with subdomain and client_id to cogent.toml, then `cogent auth set clarus`.",
            )
        self.settings = settings
        self._secret = Credentials(config).get("clarus", "client_secret")
        self.http = SourceHTTP(
            "clarus",
            settings.base_url,
            transport=transport,
            retry=retry,
            headers={"X-Clarus-Subdomain": settings.subdomain},
        )
        self._clock = clock
        self._token: str | None = None
        self._expires_at = 0.0
        self.tokens_issued = 0

    def close(self) -> None:
        self.http.close()

    def token(self) -> str:
        if self._token and self._clock() < self._expires_at - TOKEN_MARGIN_SECONDS:
            return self._token
        response = self.http.request(
            "POST",
            "/oauth/token",
            data={
                "grant_type": "client_credentials",
                "client_id": self.settings.client_id,
                "client_secret": self._secret,
            },
        )
        if response.status_code in (400, 401, 403):
            raise self.http.rejected(
                response,
                f"client credentials for client_id {self.settings.client_id!r}",
                "Check client_id under [sources.clarus], then store the secret again with "
                "`cogent auth set clarus` (or set COGENT_CLARUS_CLIENT_SECRET).",
            )
        self.http.expect_ok(response)
        payload = self.http.json(response)
        if not isinstance(payload, dict) or not payload.get("access_token"):
            raise CredentialError(
                "Clarus issued no access token",
                hint="Check that the API user is allowed the client-credentials grant.",
            )
        self._token = str(payload["access_token"])
        self._expires_at = self._clock() + float(payload.get("expires_in") or 3600)
        self.tokens_issued += 1
        return self._token

    def query(self, query: str, variables: dict[str, Any]) -> dict[str, Any]:
        """Run a query; a 401 drops the cached token and retries once with a fresh one."""
        for fresh in (False, True):
            response = self.http.request(
                "POST",
                "/graphql",
                json={"query": query, "variables": variables},
                headers={"Authorization": f"Bearer {self.token()}"},
            )
            if response.status_code == 403:
                raise self.http.rejected(
                    response,
                    f"request for subdomain {self.settings.subdomain!r}",
                    "Check subdomain under [sources.clarus] (your tenant's name) and the API user's permissions.",
                )
            if response.status_code != 401:
                return graphql_data(self.http, response)
            self._token = None
            if fresh:
                raise self.http.rejected(
                    response,
                    "freshly issued token",
                    "Check subdomain under [sources.clarus] and the API user's permissions in Clarus.",
                )
        raise AssertionError("unreachable")

    def pages(self, stream: str, cursor: Mapping[str, Any] | None, since: datetime | None) -> Iterator[Page]:
        collection = COLLECTIONS[stream]
        sweep = Pass.begin(cursor, since)
        filters: dict[str, Any] = {}
        if not collection.snapshot and sweep.since is not None:
            filters[UPDATED_FILTER] = {"from": iso(sweep.since)}
        after = sweep.position
        while True:
            data = self.query(
                query_for(collection),
                {"filter": filters or None, "first": self.settings.page_size, "after": after},
            )
            connection = dig(data, (collection.field, "all"))
            nodes = connection_nodes(connection)
            after = next_cursor(connection)
            records = [self.record(collection, node, sweep) for node in nodes]
            yield Page(stream, records, sweep.finished() if after is None else sweep.at(after))
            if after is None:
                return

    def record(self, collection: Collection, node: dict[str, Any], sweep: Pass) -> RawRecord:
        parts = [collection.kind]
        if collection.snapshot:
            parts.append(sweep.snapshot_id)
        if node.get("id"):
            parts.append(str(node["id"]))
        return RawRecord(collection.kind, content_key(*parts, body=node), json.dumps(node))
