"""Klaviyo filter expressions (`?filter=equals(email,"a@b.com")`), built so no value can break out.

Strings are double-quoted with `\\` and `"` escaped; datetimes are unquoted ISO 8601 in UTC;
lists are `["a","b"]`. The client URL-encodes the whole expression (so an E.164 `+` arrives as a
plus, not a space).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime
from decimal import Decimal

from pydantic import BaseModel, ConfigDict, field_validator

Scalar = str | int | float | Decimal | bool | datetime | date | None
_FIELD = re.compile(r"^[A-Za-z_$][A-Za-z0-9_.$-]*$")


class Filter(str):
    """A rendered filter expression; a plain `str` to the HTTP layer."""

    __slots__ = ()


def literal(value: Scalar) -> str:
    """One value in Klaviyo's filter syntax."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError(f"filter datetime {value.isoformat()} has no timezone; use an aware datetime")
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, int | float | Decimal):
        return str(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    raise TypeError(f"cannot use {type(value).__name__} in a Klaviyo filter")


def _field(name: str) -> str:
    if not _FIELD.match(name):
        raise ValueError(f"invalid Klaviyo filter field {name!r}")
    return name


def _op(operator: str, field: str, value: str | None = None) -> Filter:
    return Filter(f"{operator}({_field(field)})" if value is None else f"{operator}({_field(field)},{value})")


def equals(field: str, value: Scalar) -> Filter:
    return _op("equals", field, literal(value))


def any_of(field: str, values: Iterable[Scalar]) -> Filter:
    items = list(values)
    if not items:
        raise ValueError(f"any({field}, ...) needs at least one value")
    return _op("any", field, "[" + ",".join(literal(v) for v in items) + "]")


def contains(field: str, value: str) -> Filter:
    return _op("contains", field, literal(value))


def greater_than(field: str, value: Scalar) -> Filter:
    return _op("greater-than", field, literal(value))


def greater_or_equal(field: str, value: Scalar) -> Filter:
    return _op("greater-or-equal", field, literal(value))


def less_than(field: str, value: Scalar) -> Filter:
    return _op("less-than", field, literal(value))


def less_or_equal(field: str, value: Scalar) -> Filter:
    return _op("less-or-equal", field, literal(value))


def has(field: str) -> Filter:
    return _op("has", field)


def and_(*filters: str) -> Filter:
    """All of the expressions; a single expression is returned as it is."""
    parts = [f for f in filters if f]
    if not parts:
        raise ValueError("and_() needs at least one filter")
    return Filter(parts[0]) if len(parts) == 1 else Filter(f"and({','.join(parts)})")


class ProfileFilter(BaseModel):
    """Profiles by identifier: a single value becomes `equals(...)`, several become `any(...)`.

    Several fields are combined with `and(...)`.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str | Sequence[str] | None = None
    email: str | Sequence[str] | None = None
    phone_number: str | Sequence[str] | None = None
    external_id: str | Sequence[str] | None = None

    @field_validator("id", "email", "phone_number", "external_id")
    @classmethod
    def _not_empty(cls, value: str | Sequence[str] | None) -> str | Sequence[str] | None:
        if value is not None and not isinstance(value, str) and not list(value):
            raise ValueError("give at least one value")
        if value is not None and not isinstance(value, str):
            return tuple(value)
        return value

    def render(self) -> Filter:
        parts: list[str] = []
        for name in ("id", "email", "phone_number", "external_id"):
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, str):
                parts.append(equals(name, value))
            elif len(value) == 1:
                parts.append(equals(name, value[0]))
            else:
                parts.append(any_of(name, value))
        if not parts:
            raise ValueError("ProfileFilter needs at least one of id, email, phone_number, external_id")
        return and_(*parts)
