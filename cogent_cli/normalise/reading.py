"""Defensive reading of outside JSON payloads, with the field path in every error.

Vendors send what their configuration or query produced, not what their docs promise. A `Node`
wraps one JSON object and hands out typed values; a value of the wrong type raises
`NormaliseError(field, value, rule)` naming the full path (`payload.data.node.shipments[1].dispatchedAt`),
so a quarantined payload says exactly what to fix.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Any

from cogent_cli.normalise.base import NormaliseError
from cogent_cli.normalise.fields import EARLIEST_YEAR, LATEST_YEAR, parse_bool, parse_int

# Larger amounts are corrupt data, and would overflow decimal arithmetic (pro-rata rounding).
MAX_AMOUNT_DIGITS = 15
# An ISO code before or after the number ("AUD 25.00", "25.00 AUD"), then symbols and spaces ("A$ 25").
_CURRENCY_AFFIX = re.compile(r"^[A-Za-z]{3}\s*|\s*[A-Za-z]{3}$")
_MONEY_NOISE = re.compile(r"[^\d.eE+\-]")
_CURRENCY_CODE = re.compile(r"\b([A-Z]{3})\b")


def _describe(value: Any) -> Any:
    """The offending value as quoted in a quarantine reason (NormaliseError shortens long ones)."""
    if isinstance(value, dict | list):
        text = json.dumps(value, default=str)
        return text if len(text) <= 80 else text[:77] + "..."
    return value


class Node:
    """One JSON object of a payload, read with type checks and path-aware errors."""

    def __init__(self, data: Any, path: str = "") -> None:
        if not isinstance(data, dict):
            raise NormaliseError(path or "(body)", _describe(data), "must be a JSON object")
        self.data: dict[str, Any] = data
        self.path = path

    def field(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def has(self, key: str) -> bool:
        return self.data.get(key) is not None

    def raw(self, key: str) -> Any:
        return self.data.get(key)

    def error(self, key: str, rule: str) -> NormaliseError:
        return NormaliseError(self.field(key), _describe(self.data.get(key)), rule)

    def node(self, key: str) -> Node:
        value = self.data.get(key)
        if value is None:
            raise self.error(key, "is required")
        return Node(value, self.field(key))

    def opt_node(self, key: str) -> Node | None:
        value = self.data.get(key)
        return None if value is None else Node(value, self.field(key))

    def text(self, key: str) -> str:
        value = self.opt_text(key)
        if value is None:
            raise self.error(key, "is required")
        return value

    def opt_text(self, key: str) -> str | None:
        """A string; ids sent as numbers are accepted and turned into text. Blank means absent."""
        value = self.data.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise self.error(key, "must be a string")
        text = str(value).strip()
        return text or None

    def opt_int(self, key: str) -> int | None:
        value = self.data.get(key)
        return None if value is None else parse_int(self.field(key), value, minimum=None)

    def quantity(self, key: str, default: int | None = None) -> int:
        value = self.data.get(key)
        if value is None:
            if default is None:
                raise self.error(key, "is required")
            return default
        return parse_int(self.field(key), value, minimum=0)

    def opt_bool(self, key: str) -> bool | None:
        value = self.data.get(key)
        return None if value is None else parse_bool(self.field(key), value)

    def opt_time(self, key: str) -> datetime | None:
        value = self.data.get(key)
        if value is None or value == "":
            return None
        if not isinstance(value, str):
            raise self.error(key, "must be an ISO 8601 date-time")
        parsed = parse_time(value)
        if parsed is None:
            raise self.error(key, "must be an ISO 8601 date-time")
        return parsed

    def time(self, key: str) -> datetime:
        value = self.opt_time(key)
        if value is None:
            raise self.error(key, "is required")
        return value

    def opt_decimal(self, key: str) -> Decimal | None:
        """A number or a money string such as "$25.00", "25.00 AUD" or "1,250.50"."""
        value = self.data.get(key)
        if value is None or value == "":
            return None
        if isinstance(value, bool):
            raise self.error(key, "must be a number")
        if isinstance(value, int | float):
            number = Decimal(str(value))
        elif isinstance(value, str):
            text = _CURRENCY_AFFIX.sub("", value.strip().replace(",", ""))
            try:
                number = Decimal(_MONEY_NOISE.sub("", text))
            except InvalidOperation:
                raise self.error(key, "must be a number") from None
        else:
            raise self.error(key, "must be a number")
        if not number.is_finite():
            raise self.error(key, "must be a finite number")
        if number.adjusted() >= MAX_AMOUNT_DIGITS:
            raise self.error(key, f"must be below 10^{MAX_AMOUNT_DIGITS}")
        # 1E+3 -> 1000, so amounts always print as plain decimals.
        return number.quantize(Decimal(1)) if number.as_tuple().exponent > 0 else number

    def opt_currency(self, key: str) -> str | None:
        """The ISO 4217 code inside a money string ("25.00 AUD"), if it names one."""
        value = self.data.get(key)
        if isinstance(value, str) and (match := _CURRENCY_CODE.search(value)):
            return match.group(1)
        return None

    def nodes(self, key: str) -> list[Node]:
        """A list of objects, given as a list, a relay connection (`edges[].node`) or `nodes[]`."""
        value = self.data.get(key)
        return list(iter_nodes(value, self.field(key)))

    def texts(self, key: str) -> list[str]:
        value = self.data.get(key)
        if value is None:
            return []
        if isinstance(value, str):
            return [value]
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise self.error(key, "must be a list of strings")
        return list(value)

    def first_text(self, keys: Sequence[str]) -> str | None:
        for key in keys:
            if (value := self.opt_text(key)) is not None:
                return value
        return None

    def dig_text(self, dotted: str) -> str | None:
        """A string found by a dotted path (`goods_out.external_system_reference1`), if present."""
        *parents, last = dotted.split(".")
        current: Node | None = self
        for part in parents:
            current = current.opt_node(part) if current is not None else None
        return current.opt_text(last) if current is not None else None


def iter_nodes(value: Any, path: str) -> Iterator[Node]:
    if value is None:
        return
    if isinstance(value, dict):
        if "edges" in value:
            edges = value["edges"]
            if not isinstance(edges, list):
                raise NormaliseError(f"{path}.edges", _describe(edges), "must be a list")
            for index, edge in enumerate(edges):
                yield Node(edge, f"{path}.edges[{index}]").node("node")
            return
        if "nodes" in value:
            yield from iter_nodes(value["nodes"], f"{path}.nodes")
            return
        raise NormaliseError(path, _describe(value), "must be a list, a connection with edges, or nodes")
    if not isinstance(value, list):
        raise NormaliseError(path, _describe(value), "must be a list")
    for index, item in enumerate(value):
        yield Node(item, f"{path}[{index}]")


def parse_time(value: str) -> datetime | None:
    """ISO 8601 to aware UTC; a time without an offset is taken as UTC."""
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    if not EARLIEST_YEAR <= parsed.year <= LATEST_YEAR:
        return None
    return parsed.astimezone(UTC)


def load_json(body: str | bytes) -> Node:
    """The body as a JSON object, or NormaliseError saying why it is not one."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise NormaliseError(
            "(body)", _describe(body[:60] if isinstance(body, str) else repr(body[:60])), f"must be JSON ({exc})"
        ) from None
    return Node(data)


def body_hash(body: str | bytes) -> str:
    """A stable key for a payload that carries no id of its own: SHA-256 of its canonical JSON."""
    raw = body.encode() if isinstance(body, str) else body
    try:
        canonical = json.dumps(json.loads(raw), sort_keys=True, separators=(",", ":")).encode()
    except (ValueError, RecursionError):
        canonical = raw
    return hashlib.sha256(canonical).hexdigest()


def allocate_pro_rata(total: Decimal, weights: Sequence[Decimal], places: int = 2) -> list[Decimal]:
    """Split `total` over `weights` in proportion, rounded to `places`, summing exactly to `total`.

    Largest-remainder rounding: the cents lost to rounding go to the lines that lost most.
    Equal weights are used when every weight is zero.
    """
    if not weights:
        return []
    unit = Decimal(1).scaleb(-places)
    shares = [max(weight, Decimal(0)) for weight in weights]
    if sum(shares) <= 0:
        shares = [Decimal(1)] * len(weights)
    whole = sum(shares)
    exact = [total * share / whole for share in shares]
    floored = [value.quantize(unit, rounding="ROUND_FLOOR") for value in exact]
    leftover = int(((total.quantize(unit, rounding=ROUND_HALF_EVEN) - sum(floored)) / unit).to_integral_value())
    by_remainder = sorted(range(len(exact)), key=lambda i: (exact[i] - floored[i], -i), reverse=True)
    for index in by_remainder[: max(leftover, 0)]:
        floored[index] += unit
    return floored


def unique(values: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(values))
