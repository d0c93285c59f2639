"""Shared helpers for the Clarus, Swap and Marketplacer normaliser and webhook tests."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hypothesis import strategies as st
from sqlite_utils import Database

from cogent_cli.config import Config
from cogent_cli.events import NormalisedEvent, parse_event
from cogent_cli.inbox import Inbox
from cogent_cli.normalise.base import NormaliseContext, NormaliseError, load_normalisers
from cogent_cli.state import Store

RECEIVED = datetime(2026, 3, 11, 8, 0, tzinfo=UTC)


def with_sources(config: Config, **sections: Any) -> Config:
    """The config with [sources.X] sections replaced (dicts validated like cogent.toml)."""
    data = config.model_dump()
    data["sources"] = {**data["sources"], **sections}
    for key, value in list(data.items()):
        if value is None:
            del data[key]
    return Config.model_validate(json.loads(json.dumps(data, default=str)))


class Pipeline:
    """Receives payloads into a real inbox and normalises them, like a webhook or pull would."""

    def __init__(self, store: Store, config: Config) -> None:
        self.store = store
        self.inbox = Inbox(store)
        self.config = config
        self._keys = 0

    def feed(
        self,
        system: str,
        kind: str,
        payload: Any,
        *,
        headers: dict[str, str] | None = None,
        key: str | None = None,
        route: str = "webhook",
    ) -> list[NormalisedEvent]:
        """The events this payload produced (those not already known); raises if it was quarantined."""
        row_id = self.receive(system, kind, payload, headers=headers, key=key, route=route)
        row = self.inbox.get(row_id)
        if row.status == "quarantined":
            raise AssertionError(f"quarantined: {row.reason}")
        return self.events(row_id)

    def receive(
        self,
        system: str,
        kind: str,
        payload: Any,
        *,
        headers: dict[str, str] | None = None,
        key: str | None = None,
        route: str = "webhook",
    ) -> int:
        self._keys += 1
        body = payload if isinstance(payload, str) else json.dumps(payload)
        receipt = self.inbox.receive(
            system, route, kind, key or f"k{self._keys}", body, headers=headers, received_at=RECEIVED
        )
        self.inbox.normalise_pending(self.config, ids=[receipt.id])
        return receipt.id

    def events(self, inbox_id: int) -> list[NormalisedEvent]:
        rows = self.store.db.execute("select body from events where inbox_id = ? order by rowid", [inbox_id])
        return [parse_event(row[0]) for row in rows.fetchall()]

    def all_events(self) -> list[NormalisedEvent]:
        return [parse_event(row[0]) for row in self.store.db.execute("select body from events order by rowid")]


def memory_store() -> Store:
    """A migrated state store in memory: fast enough for property tests."""
    store = Store(Path(":memory:"), Database(memory=True))
    store.migrate()
    return store


def run_directly(store: Store, config: Config, system: str, kind: str, record: Any) -> list[NormalisedEvent]:
    """Call the registered normaliser in a transaction that is always rolled back.

    Returns its events or raises NormaliseError; any other exception is a crash (a bug)."""
    normaliser = load_normalisers()[(system, kind)]
    assert normaliser.normalise is not None
    conn = store.db.conn
    ctx = NormaliseContext(
        config=config,
        conn=conn,
        system=system,
        kind=kind,
        route="webhook",
        inbox_id=1,
        received_at=RECEIVED,
        headers={"Marketplacer-Sequence": "7"},
    )
    conn.execute("BEGIN")
    try:
        if not isinstance(record, dict):
            raise NormaliseError("body", record, "must be a JSON object")
        return list(normaliser.normalise(record, ctx) or ())
    finally:
        conn.execute("ROLLBACK")


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
    | st.sampled_from(["2026-03-10T14:00:00Z", "dispatched", "COMPLETED", "REFUNDED", "Sellable", "$25.00", "1e999"]),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=10,
)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield prefix
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _paths(value, (*prefix, index))


@st.composite
def mutated(draw: st.DrawFn, example: Any, rounds: int = 3) -> Any:
    """A documented example with a few of its values (or whole sub-objects) replaced by arbitrary JSON."""
    document = copy.deepcopy(example)
    for _ in range(draw(st.integers(min_value=1, max_value=rounds))):
        paths = [p for p in _paths(document) if p]
        if not paths:
            return draw(json_values)
        path = draw(st.sampled_from(paths))
        parent = document
        for part in path[:-1]:
            parent = parent[part]
        if draw(st.booleans()) and isinstance(parent, dict):
            del parent[path[-1]]
        else:
            parent[path[-1]] = draw(json_values)
    return document


def json_block(document: str, after: str) -> Any:
    """The first ```json block following `after` in a reference document, parsed."""
    start = document.index(after)
    opening = document.index("```json", start) + len("```json")
    closing = document.index("```", opening)
    return json.loads(document[opening:closing])


def payload_of(block: Any) -> Any:
    """The node of a GraphQL list response `{data: {collection: {all: {edges: [{node}]}}}}`."""
    collection = next(iter(block["data"].values()))
    return collection["all"]["edges"][0]["node"]
