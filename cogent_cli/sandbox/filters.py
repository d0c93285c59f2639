"""Klaviyo's `filter` query syntax: `equals(email,"a@b.com")`, `any(id,["1","2"])`,
`greater-or-equal(datetime,2026-01-01T00:00:00Z)`, comma-separated or wrapped in `and(...)`.

Which fields and operators an endpoint accepts is read from the spec's parameter description, so the
sandbox refuses exactly what Klaviyo documents as unsupported.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any

from cogent_cli.klaviyo.spec import Operation, operations
from cogent_cli.sandbox.jsonapi import ApiError, parse_datetime

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.$-]*")
_BARE = re.compile(r"[^,()\[\]\s]+")


@dataclass(frozen=True)
class Condition:
    operator: str
    field: str
    value: Any


def _bad(detail: str) -> ApiError:
    return ApiError.one(400, detail, parameter="filter")


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def fail(self, what: str) -> ApiError:
        return _bad(f"Invalid filter provided: {what} at position {self.pos} of '{self.text}'.")

    def skip_space(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def expect(self, char: str) -> None:
        self.skip_space()
        if self.text[self.pos : self.pos + 1] != char:
            raise self.fail(f"expected '{char}'")
        self.pos += 1

    def peek(self) -> str:
        self.skip_space()
        return self.text[self.pos : self.pos + 1]

    def name(self) -> str:
        self.skip_space()
        match = _NAME.match(self.text, self.pos)
        if not match:
            raise self.fail("expected a name")
        self.pos = match.end()
        return match.group()

    def conditions(self) -> list[Condition]:
        found = self.expression()
        while self.peek() == ",":
            self.pos += 1
            found += self.expression()
        return found

    def expression(self) -> list[Condition]:
        operator = self.name()
        self.expect("(")
        if operator == "and":
            found = self.conditions()
        elif operator in ("or", "not"):
            raise _bad(f"The '{operator}' operator is not supported for this filter.")
        else:
            field = self.name()
            # Unary operators such as has(metric) take no value.
            if self.peek() == ")":
                found = [Condition(operator, field, None)]
            else:
                self.expect(",")
                found = [Condition(operator, field, self.value())]
        self.expect(")")
        return found

    def value(self) -> Any:
        char = self.peek()
        if char in ('"', "'"):
            return self.string(char)
        if char == "[":
            self.pos += 1
            items = [] if self.peek() == "]" else [self.value()]
            while self.peek() == ",":
                self.pos += 1
                items.append(self.value())
            self.expect("]")
            return items
        match = _BARE.match(self.text, self.pos)
        if not match:
            raise self.fail("expected a value")
        self.pos = match.end()
        return self.bare(match.group())

    def string(self, quote: str) -> str:
        self.pos += 1
        out = []
        while self.pos < len(self.text):
            char = self.text[self.pos]
            if char == "\\" and self.pos + 1 < len(self.text):
                out.append(self.text[self.pos + 1])
                self.pos += 2
                continue
            if char == quote:
                self.pos += 1
                return "".join(out)
            out.append(char)
            self.pos += 1
        raise self.fail("unterminated string")

    def bare(self, token: str) -> Any:
        if token in ("true", "false"):
            return token == "true"
        if token == "null":
            return None
        if re.fullmatch(r"-?\d+(\.\d+)?", token):
            return float(token) if "." in token else int(token)
        try:
            return parse_datetime(token)
        except ValueError:
            # Klaviyo requires string literals to be quoted: equals(email,a@b.com) is a 400.
            raise self.fail(f"unquoted value '{token}'") from None


def parse_filter(text: str) -> list[Condition]:
    parser = _Parser(text)
    found = parser.conditions()
    if parser.peek():
        raise parser.fail("unexpected text")
    return found


@cache
def _allowed(operation_id: str) -> dict[str, frozenset[str]]:
    for param in operations()[operation_id].definition.get("parameters", []):
        if param.get("name") == "filter":
            pairs = re.findall(r"`([^`]+)`: ((?:`[^`]+`(?:, )?)+)", param.get("description", ""))
            return {field: frozenset(re.findall(r"`([^`]+)`", ops)) for field, ops in pairs}
    return {}


def allowed_filters(operation: Operation) -> dict[str, frozenset[str]]:
    """Field -> operators, from the spec's "Allowed field(s)/operator(s)" description."""
    return _allowed(operation.operation_id)


def filter_for(operation: Operation, text: str | None) -> list[Condition]:
    """Parse and check a filter against what the operation allows."""
    if not text:
        return []
    allowed = allowed_filters(operation)
    conditions = parse_filter(text)
    for condition in conditions:
        if condition.field not in allowed:
            raise _bad(f"'{condition.field}' is not a valid field for this filter.")
        if condition.operator not in allowed[condition.field]:
            ops = ", ".join(sorted(allowed[condition.field]))
            raise _bad(f"'{condition.operator}' is not a valid operator for '{condition.field}'; use one of {ops}.")
        if condition.operator == "any" and not isinstance(condition.value, list):
            raise _bad(f"'any' needs a list of values for '{condition.field}', e.g. any(id,[\"1\",\"2\"]).")
        if condition.operator != "any" and isinstance(condition.value, list):
            raise _bad(f"'{condition.operator}' takes a single value for '{condition.field}'.")
    return conditions


COMPARATORS = {
    "equals": "=",
    "greater-than": ">",
    "greater-or-equal": ">=",
    "less-than": "<",
    "less-or-equal": "<=",
}


def sql_value(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value
