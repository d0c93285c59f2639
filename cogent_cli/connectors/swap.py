"""Swap Commerce: the Returns API v2 (`GET /returns-api`), `x-api-key` and the store id.

Paged with `page` / `items_per_page` (at most 50), incremental on the returns' last update
(`last_updated_date`, the v1 name; v2 documents only "additional filters").
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any

import httpx

from cogent_cli.config import Config
from cogent_cli.connectors.base import (
    Page,
    Pass,
    RawRecord,
    RetryPolicy,
    SourceHTTP,
    SourceResponseError,
    content_key,
    iso,
)
from cogent_cli.credentials import Credentials
from cogent_cli.errors import UsageError

RETURNS_PATH = "/returns-api"


def returns_of(payload: Any) -> tuple[list[dict[str, Any]], int | None, int | None]:
    """(returns, total pages, total items) from a page, accepting a bare list or an envelope."""
    if isinstance(payload, list):
        return [item for item in payload if isinstance(item, dict)], None, None
    if isinstance(payload, dict):
        for name in ("returns", "data", "results"):
            if isinstance(payload.get(name), list):
                items = [item for item in payload[name] if isinstance(item, dict)]
                pages = payload.get("total_pages")
                total = payload.get("total_items", payload.get("total"))
                return items, int(pages) if pages is not None else None, int(total) if total is not None else None
    raise SourceResponseError(
        "swap answered the returns query with a body holding no list of returns",
        hint="Check base_url under [sources.swap] (https://api-gateway.swap-os.com, or the sandbox-apigw host).",
    )


class SwapConnector:
    system = "swap"
    streams = ("returns",)

    def __init__(
        self,
        config: Config,
        *,
        transport: httpx.BaseTransport | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        settings = config.sources.swap
        if settings is None or not settings.store_id:
            raise UsageError(
                "Swap is not configured",
                hint="Add [sources.swap] with store_id to cogent.toml, then `cogent auth set swap`.",
            )
        self.settings = settings
        self.http = SourceHTTP(
            "swap",
            settings.base_url,
            transport=transport,
            retry=retry,
            headers={"x-api-key": Credentials(config).get("swap", "api_key")},
        )

    def close(self) -> None:
        self.http.close()

    def pages(self, stream: str, cursor: Mapping[str, Any] | None, since: datetime | None) -> Iterator[Page]:
        sweep = Pass.begin(cursor, since)
        page = int(sweep.position or 0)
        while True:
            page += 1
            params: dict[str, Any] = {
                "swap_store_id": self.settings.store_id,
                "page": page,
                "items_per_page": self.settings.items_per_page,
            }
            if sweep.since is not None:
                params["last_updated_date"] = iso(sweep.since)
            response = self.http.request("GET", RETURNS_PATH, params=params)
            if response.status_code in (401, 403):
                raise self.http.rejected(
                    response,
                    f"API key for store {self.settings.store_id!r}",
                    "Generate a Returns API key in the Swap dashboard (Returns -> Integrations) and store it with "
                    "`cogent auth set swap` (or set COGENT_SWAP_API_KEY); check store_id under [sources.swap].",
                )
            self.http.expect_ok(response)
            items, total_pages, total = returns_of(self.http.json(response))
            done = len(items) < self.settings.items_per_page or (total_pages is not None and page >= total_pages)
            records = [
                RawRecord(
                    "swap_return",
                    content_key("swap_return", str(item.get("return_id", "")), body=item),
                    json.dumps(item),
                )
                for item in items
            ]
            yield Page(stream, records, sweep.finished() if done else sweep.at(page), total=total)
            if done:
                return
