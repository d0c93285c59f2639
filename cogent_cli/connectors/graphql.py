"""Relay-paged GraphQL reads shared by the Clarus and Marketplacer connectors."""

from __future__ import annotations

from typing import Any

import httpx

from cogent_cli.connectors.base import SourceHTTP, SourceResponseError


def graphql_data(http: SourceHTTP, response: httpx.Response) -> dict[str, Any]:
    """The `data` of a GraphQL response, or a clear error naming the first GraphQL error."""
    http.expect_ok(response)
    payload = http.json(response)
    if not isinstance(payload, dict):
        raise SourceResponseError(
            f"{http.system} answered a GraphQL query with {type(payload).__name__}, not an object",
            hint=f"Check base_url under [sources.{http.system}] points at the GraphQL endpoint.",
        )
    errors = payload.get("errors") or []
    if errors or not isinstance(payload.get("data"), dict):
        first = errors[0].get("message", errors[0]) if errors else "no data"
        raise SourceResponseError(
            f"{http.system} refused the GraphQL query: {first}",
            hint="The instance's schema may differ from the documented one; compare it with `docs/pull.md` "
            "and rerun with -vv.",
        )
    return payload["data"]


def dig(data: dict[str, Any], path: tuple[str, ...]) -> dict[str, Any]:
    node: Any = data
    for name in path:
        node = node.get(name) if isinstance(node, dict) else None
    if not isinstance(node, dict):
        raise SourceResponseError(
            f"GraphQL response has no {'.'.join(path)} connection",
            hint="The instance's schema may differ from the documented one; see `docs/pull.md`.",
        )
    return node


def connection_nodes(connection: dict[str, Any]) -> list[dict[str, Any]]:
    """Nodes of a relay connection, whether it exposes `edges { node }` or `nodes`."""
    if "nodes" in connection:
        return [node for node in connection["nodes"] or [] if isinstance(node, dict)]
    return [edge["node"] for edge in connection.get("edges") or [] if isinstance(edge, dict) and edge.get("node")]


def next_cursor(connection: dict[str, Any]) -> str | None:
    info = connection.get("pageInfo") or {}
    return info.get("endCursor") if info.get("hasNextPage") else None
