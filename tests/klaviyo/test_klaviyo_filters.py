"""Filter expressions: quoted and escaped strings, unquoted datetimes, nothing can break out."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from urllib.parse import quote, unquote

import pytest
from hypothesis import given
from hypothesis import strategies as st
from klaviyo_spec_check import parse_filter

from cogent_cli.klaviyo import filters
from cogent_cli.klaviyo.filters import ProfileFilter


def test_strings_are_double_quoted() -> None:
    assert filters.equals("email", "a@b.com") == 'equals(email,"a@b.com")'


def test_lists_render_as_any() -> None:
    assert filters.any_of("email", ["a", "b"]) == 'any(email,["a","b"])'


def test_datetimes_are_unquoted_utc() -> None:
    moment = datetime(2026, 4, 19, 2, 0, tzinfo=timezone(timedelta(hours=2)))
    assert filters.greater_than("updated", moment) == "greater-than(updated,2026-04-19T00:00:00Z)"


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="no timezone"):
        filters.literal(datetime(2026, 1, 1))


def test_quotes_and_backslashes_are_escaped() -> None:
    assert filters.equals("external_id", 'a"),equals(id,"x') == r'equals(external_id,"a\"),equals(id,\"x")'


def test_booleans_numbers_and_has() -> None:
    assert filters.equals("published", True) == "equals(published,true)"
    assert filters.greater_or_equal("timestamp", 0) == "greater-or-equal(timestamp,0)"
    assert filters.has("metric") == "has(metric)"


def test_field_names_cannot_inject() -> None:
    with pytest.raises(ValueError, match="invalid Klaviyo filter field"):
        filters.equals('email,"x"),equals(id', "y")


def test_profile_filter_uses_equals_for_one_value_and_any_for_several() -> None:
    rendered = ProfileFilter(email="a@x.com", external_id=["C-1", "C-2"]).render()
    assert rendered == 'and(equals(email,"a@x.com"),any(external_id,["C-1","C-2"]))'
    assert ProfileFilter(phone_number=["+15005550006"]).render() == 'equals(phone_number,"+15005550006")'


def test_profile_filter_needs_a_value() -> None:
    with pytest.raises(ValueError):
        ProfileFilter().render()
    with pytest.raises(ValueError):
        ProfileFilter(email=[])


def test_e164_plus_survives_url_encoding() -> None:
    encoded = quote(ProfileFilter(phone_number="+447700900123").render(), safe="")
    assert "%2B447700900123" in encoded
    assert unquote(encoded) == 'equals(phone_number,"+447700900123")'


@given(st.text(max_size=40), st.lists(st.text(max_size=10), min_size=1, max_size=4))
def test_any_string_value_reads_back_exactly(value: str, values: list[str]) -> None:
    expression = filters.and_(filters.equals("email", value), filters.any_of("external_id", values))
    assert parse_filter(expression) == [
        ("equals", "email", ("string", value)),
        ("any", "external_id", [("string", v) for v in values]),
    ]


@given(st.datetimes(timezones=st.just(UTC)))
def test_any_datetime_renders_as_an_unquoted_iso_value(moment: datetime) -> None:
    [(_, _, (kind, text))] = parse_filter(filters.less_than("datetime", moment))
    assert kind == "bare"
    assert datetime.fromisoformat(text) == moment
