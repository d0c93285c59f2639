"""Reading fields of raw records; every failure is a NormaliseError naming field, value and rule.

`Row(record)` looks columns up forgivingly, because the same report reaches us with display names
("Despatch number"), XML-style names ("Despatch_number") or different capitalisation: names compare
by their letters and digits only. Values are stripped; an empty value counts as absent.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime, tzinfo
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cogent_cli.normalise.base import NormaliseError

MAX_QUANTITY = 1_000_000_000
EARLIEST_YEAR, LATEST_YEAR = 1970, 2200
TRUE_WORDS = frozenset({"true", "t", "yes", "y", "1"})
FALSE_WORDS = frozenset({"false", "f", "no", "n", "0"})
# Day-first, as Peoplevox reports print them ('03/07/2017 06:03'); ISO 8601 is tried first.
_DAY_FIRST = ("%d/%m/%Y %H:%M:%S", "%d/%m/%Y %H:%M", "%d/%m/%Y", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M")
_CANON = re.compile(r"[^0-9a-z]+")


@lru_cache(maxsize=4096)
def canon(name: str) -> str:
    return _CANON.sub("", name.lower())


@lru_cache(maxsize=64)
def zone(name: str) -> tzinfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise NormaliseError("timezone", name, "not a known IANA time zone (e.g. Europe/London)") from None


def text_value(value: Any) -> str | None:
    if type(value) is str:
        return value.strip() or None
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | Decimal):
        return str(value)
    if not isinstance(value, str):
        return None
    stripped = value.strip()
    return stripped or None


def parse_int(field: str, raw: Any, *, minimum: int | None = 0) -> int:
    if isinstance(raw, bool):
        raise NormaliseError(field, raw, "must be a whole number")
    if isinstance(raw, int):
        number = raw
    else:
        text = text_value(raw) if not isinstance(raw, float) else str(raw)
        try:
            decimal = Decimal(str(text).replace(",", ""))
            if not decimal.is_finite() or decimal != decimal.to_integral_value():
                raise ValueError
            number = int(decimal)
        except (InvalidOperation, ValueError, TypeError):
            raise NormaliseError(field, raw, "must be a whole number") from None
    if minimum is not None and number < minimum:
        raise NormaliseError(field, raw, f"must be at least {minimum}")
    if abs(number) > MAX_QUANTITY:
        raise NormaliseError(field, raw, f"must be at most {MAX_QUANTITY:,}")
    return number


def parse_decimal(field: str, raw: Any) -> Decimal:
    text = text_value(raw)
    try:
        value = Decimal((text or "").replace(",", "").lstrip("£$€"))
    except InvalidOperation:
        raise NormaliseError(field, raw, "must be a decimal amount such as 29.89") from None
    if not value.is_finite() or abs(value) >= Decimal(10) ** 12:
        raise NormaliseError(field, raw, "must be a finite amount below 10^12")
    return value


def parse_bool(field: str, raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    word = (text_value(raw) or "").lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise NormaliseError(field, raw, "must be true or false")


def parse_datetime(field: str, raw: Any, default_zone: str = "UTC") -> datetime:
    """ISO 8601, or day-first 'dd/MM/yyyy HH:mm[:ss]'; times without an offset are in `default_zone`."""
    text = (text_value(raw) or "").strip("'\"")
    parsed = _parse_datetime(text, default_zone)
    if isinstance(parsed, str):
        raise NormaliseError(field, raw, parsed)
    return parsed


@lru_cache(maxsize=16384)
def _parse_datetime(text: str, default_zone: str) -> datetime | str:
    """The UTC time, or the rule it breaks (cached: exports repeat the same timestamps row after row)."""
    value: datetime | None = None
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        for pattern in _DAY_FIRST:
            try:
                value = datetime.strptime(text, pattern)
                break
            except ValueError:
                continue
    if value is None:
        return "must be a date and time (ISO 8601 or dd/MM/yyyy HH:mm)"
    if not EARLIEST_YEAR <= value.year <= LATEST_YEAR:
        return f"must be a year between {EARLIEST_YEAR} and {LATEST_YEAR}"
    if value.tzinfo is None:
        value = value.replace(tzinfo=zone(default_zone))
    return value.astimezone(UTC)


@lru_cache(maxsize=256)
def _canon_index(keys: tuple[Any, ...]) -> dict[str, str]:
    """Canonical name -> the first key spelling it (cached: records of one source share their keys)."""
    index: dict[str, str] = {}
    for key in keys:
        if isinstance(key, str):
            index.setdefault(canon(key), key)
    return index


class Row:
    """One flat record with forgiving column names; see the module docstring."""

    __slots__ = ("_index", "record")

    def __init__(self, record: Mapping[str, Any]) -> None:
        self.record = record
        self._index: dict[str, str] | None = None

    def _lookup(self, name: str) -> tuple[str, Any] | None:
        if name in self.record:  # the common case: the column is spelt as expected
            return name, self.record[name]
        if self._index is None:
            self._index = _canon_index(tuple(self.record))
        key = self._index.get(canon(name))
        return None if key is None else (key, self.record[key])

    def _find(self, names: tuple[str, ...]) -> tuple[str, Any]:
        """The first of `names` holding a value, else the first present (blank), else the first name."""
        first = names[0]
        if first in self.record:  # the common case: the first name, spelt as expected
            value = self.record[first]
            if len(names) == 1 or (type(value) is str and value.strip()):
                return first, value
        blank = None
        for name in names:
            hit = self._lookup(name)
            if hit is not None:
                if text_value(hit[1]) is not None:
                    return hit
                blank = blank or hit
        return blank or (names[0], None)

    def has(self, *names: str) -> bool:
        return any(self._lookup(name) is not None for name in names)

    def text(self, *names: str) -> str | None:
        value = self.record.get(names[0])
        if type(value) is str and (value := value.strip()):  # the common case, without the search
            return value
        return text_value(self._find(names)[1])

    def required(self, *names: str) -> str:
        field, raw = self._find(names)
        value = text_value(raw)
        if value is None:
            raise NormaliseError(field, raw, "is required")
        return value

    def integer(self, *names: str, default: int | None = None, minimum: int | None = 0) -> int:
        field, raw = self._find(names)
        if text_value(raw) is None:
            if default is None:
                raise NormaliseError(field, raw, "is required")
            return default
        return parse_int(field, raw, minimum=minimum)

    def optional_integer(self, *names: str, minimum: int | None = 0) -> int | None:
        field, raw = self._find(names)
        return None if text_value(raw) is None else parse_int(field, raw, minimum=minimum)

    def decimal(self, *names: str) -> Decimal | None:
        field, raw = self._find(names)
        return None if text_value(raw) is None else parse_decimal(field, raw)

    def boolean(self, *names: str, default: bool | None = None) -> bool | None:
        field, raw = self._find(names)
        return default if text_value(raw) is None else parse_bool(field, raw)

    def datetime(self, *names: str, zone_name: str = "UTC") -> datetime:
        field, raw = self._find(names)
        if text_value(raw) is None:
            raise NormaliseError(field, raw, "is required")
        return parse_datetime(field, raw, zone_name)

    def optional_datetime(self, *names: str, zone_name: str = "UTC") -> datetime | None:
        field, raw = self._find(names)
        return None if text_value(raw) is None else parse_datetime(field, raw, zone_name)
