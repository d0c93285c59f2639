"""No input crashes the Peoplevox or Scend normalisers: each record yields events or a NormaliseError."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pvx_scend_support import PVX_DESPATCH, PVX_RETURN, SCEND_WEBHOOK

from cogent_cli.config import SCEND_FIELDS
from cogent_cli.events import dump_event, parse_event
from cogent_cli.inbox import decode_body
from cogent_cli.normalise.base import NormaliseContext, NormaliseError, Normaliser, load_normalisers
from cogent_cli.workspace import Workspace

PEOPLEVOX_NAMES = sorted(
    {*PVX_DESPATCH, *PVX_RETURN, "On hand", "Allocated", "Available", "On order", "Location", "dispatch_number",
     "despatch_number", "tracking_number", "tracking", "package", "carrier", "service", "service_code",
     "service_name", "order_number", "order_no", "order_email", "return_code", "sku", "qty", "reason", "condition",
     "ts", "time", "status", "quantity", "product_sku", "updated_at"}
)  # fmt: skip
SCEND_NAMES = sorted({*(name for names in SCEND_FIELDS.values() for name in names), *SCEND_WEBHOOK, "levels",
                      "lines", "bucket", "qty", "status_at"})  # fmt: skip
WEBHOOK_EVENTS = ["despatch.confirmed", "return.received", "stock.snapshot", "stock.adjusted", "order.status_changed"]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.sampled_from(["", "0", "1", "-1", "7", "1e400", "NaN", "True", "no", "03/07/2017 06:03", "31/02/2017 06:03",
                     "2025-05-01T14:03:11Z", "0001-01-01T00:00:00", "9999-12-31T23:59:59+14:00", "DESPATCHED",
                     "CANCELLED", "Cancelled", "RESTOCK", "SELLABLE", "£3.00", "1,000", "9" * 5000]),
)  # fmt: skip
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)


def records(names: list[str], extra: dict[str, Any] | None = None) -> st.SearchStrategy[dict[str, Any]]:
    nested = st.lists(
        st.dictionaries(st.sampled_from([*names, "items", "carrier", "service"]), values, max_size=8), max_size=3
    )
    base = st.dictionaries(st.sampled_from(names) | st.text(max_size=10), values | nested, max_size=25)
    if extra is None:
        return base
    return st.builds(lambda record, more: {**record, **more}, base, st.fixed_dictionaries(extra))


@pytest.fixture
def context(workspace: Workspace) -> Iterator[NormaliseContext]:
    store = workspace.store()
    store.db.conn.execute("BEGIN")
    yield NormaliseContext(
        config=workspace.config,
        conn=store.db.conn,
        system="peoplevox",
        kind="",
        route="file",
        inbox_id=1,
        received_at=datetime(2026, 1, 1, tzinfo=UTC),
    )
    store.db.conn.execute("ROLLBACK")


def run(normaliser: Normaliser, records_: list[dict[str, Any]], ctx: NormaliseContext) -> None:
    ctx.system, ctx.kind = normaliser.system, normaliser.kind
    try:
        if normaliser.grouped:
            parsed = [normaliser.parse_row(record, ctx) for record in records_]  # type: ignore[misc]
            for record in records_:
                assert isinstance(normaliser.group_key(record, ctx.config), str)  # type: ignore[misc]
            produced = list(normaliser.build_group(parsed, ctx) or ())  # type: ignore[misc]
        else:
            produced = [e for record in records_ for e in (normaliser.normalise(record, ctx) or ())]  # type: ignore[misc]
    except NormaliseError as exc:
        assert exc.field and exc.rule
        return
    for event in produced:
        assert parse_event(dump_event(event)) == event


def kinds(system: str) -> list[Normaliser]:
    return [n for (sys_name, _), n in sorted(load_normalisers().items()) if sys_name == system]


SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.mark.parametrize("normaliser", kinds("peoplevox"), ids=lambda n: n.kind)
@SETTINGS
@given(batch=st.lists(records(PEOPLEVOX_NAMES), min_size=1, max_size=3))
def test_peoplevox_normalisers_never_crash(context: NormaliseContext, normaliser: Normaliser, batch: list) -> None:
    run(normaliser, batch, context)


@pytest.mark.parametrize("normaliser", kinds("scend"), ids=lambda n: n.kind)
@SETTINGS
@given(batch=st.lists(records(SCEND_NAMES, {"event": st.sampled_from(WEBHOOK_EVENTS) | st.text(max_size=5)}),
                      min_size=1, max_size=3))  # fmt: skip
def test_scend_normalisers_never_crash(context: NormaliseContext, normaliser: Normaliser, batch: list) -> None:
    run(normaliser, batch, context)


@settings(max_examples=200, deadline=None)
@given(body=st.text(max_size=200), form=st.booleans())
def test_any_inbox_body_decodes_to_a_record_or_a_normalise_error(body: str, form: bool) -> None:
    normaliser = load_normalisers()[("peoplevox", "availability_changed" if form else "despatch_summary")]
    try:
        assert isinstance(decode_body(body, normaliser), dict)
    except NormaliseError as exc:
        assert exc.field in ("body", "row")
