"""Checks a request the client built against the official spec (revision 2026-07-15).

openapi-core validates the path and query parameters and the security scheme. Bodies are validated
with jsonschema against the resolved request schema with unknown properties forbidden (the spec's
schemas leave `additionalProperties` open, which would let a misspelt attribute through; openapi-core's
own body validation is also far too slow for 10,000-profile bodies). `filter` expressions are parsed
and checked against the operation's `x-klaviyo-filters` (field, operator, value type).
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from functools import cache
from typing import Any
from urllib.parse import parse_qsl, unquote

import httpx
from jsonschema import Draft7Validator, FormatChecker

from cogent_cli.klaviyo.spec import Operation, load_spec, match_operation

REVISION = "2026-07-15"
JSON_API = "application/vnd.api+json"
_SCHEMA_KEYWORDS_DROPPED = {"nullable", "example", "description", "default"}


@cache
def openapi_validators() -> tuple[Any, ...]:
    # Slow import; only the conformance tests pay it.
    from openapi_core import Config, OpenAPI
    from openapi_core.validation.request.validators import (
        V30RequestParametersValidator,
        V30RequestSecurityValidator,
    )

    spec = OpenAPI.from_dict(load_spec(), config=Config(spec_validator_cls=None)).spec
    return V30RequestParametersValidator(spec), V30RequestSecurityValidator(spec)


class _OpenAPIRequest:
    """httpx.Request seen through openapi-core's request protocol."""

    def __init__(self, request: httpx.Request) -> None:
        from openapi_core.datatypes import RequestParameters
        from werkzeug.datastructures import Headers, ImmutableMultiDict

        self.host_url = f"{request.url.scheme}://{request.url.netloc.decode()}"
        self.path = unquote(request.url.raw_path.decode().split("?")[0])
        self.full_url_pattern = self.host_url + self.path
        self.method = request.method.lower()
        self.parameters = RequestParameters(
            query=ImmutableMultiDict(parse_qsl(request.url.query.decode(), keep_blank_values=True)),
            header=Headers(dict(request.headers)),
            cookie=ImmutableMultiDict(),
            path={},
        )
        self.content_type = request.headers.get("content-type", "")
        self.body = request.content or None


def _resolve(ref: str) -> dict[str, Any]:
    node: Any = load_spec()
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    return node


def strict_schema(node: dict[str, Any], depth: int = 0) -> dict[str, Any]:
    """The schema as JSON Schema draft 7, with unknown properties forbidden on every described object."""
    if depth > 60:
        raise RecursionError("schema nests too deeply")
    if "$ref" in node:
        return strict_schema(_resolve(node["$ref"]), depth + 1)
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _SCHEMA_KEYWORDS_DROPPED or key.startswith("x-"):
            continue
        if key == "properties":
            out[key] = {name: strict_schema(sub, depth + 1) for name, sub in value.items()}
        elif key in ("items", "additionalProperties", "not") and isinstance(value, dict):
            out[key] = strict_schema(value, depth + 1)
        elif key in ("allOf", "anyOf", "oneOf"):
            out[key] = [strict_schema(sub, depth + 1) for sub in value]
        else:
            out[key] = value
    if "properties" in out and "additionalProperties" not in out and not {"allOf", "anyOf", "oneOf"} & set(out):
        out["additionalProperties"] = False
    if node.get("nullable"):
        if isinstance(out.get("type"), str):
            out["type"] = [out["type"], "null"]
            if "enum" in out:
                out["enum"] = [*out["enum"], None]
        else:
            out = {"anyOf": [out, {"type": "null"}]}
    return out


@cache
def _body_validator(operation_id: str, schema_json: str) -> Draft7Validator:
    return Draft7Validator(strict_schema(json.loads(schema_json)), format_checker=FormatChecker())


def _shape(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _shape(v) for k, v in sorted(value.items())}
    if isinstance(value, list):
        return [_shape(v) for v in value[:3]]
    return type(value).__name__


def representative(value: Any) -> Any:
    """The body with long arrays cut to one item of each distinct shape (plus the first and last).

    jsonschema needs over a second per thousand profiles; items built by the same code with the
    same shape validate alike, so a 10,000-profile body is checked through its distinct shapes.
    """
    if isinstance(value, dict):
        return {k: representative(v) for k, v in value.items()}
    if isinstance(value, list):
        if len(value) <= 20:
            return [representative(v) for v in value]
        seen: set[str] = set()
        kept = []
        for index, item in enumerate(value):
            signature = json.dumps(_shape(item), sort_keys=True)
            if signature not in seen or index == len(value) - 1:
                seen.add(signature)
                kept.append(representative(item))
        return kept
    return value


# Filter expressions ---------------------------------------------------------------------------

_TOKEN = re.compile(r'\s*(?:(?P<string>"(?:[^"\\]|\\.)*")|(?P<punct>[(),\[\]])|(?P<bare>[^\s(),\[\]"]+))', re.DOTALL)


def parse_filter(text: str) -> list[tuple[str, str, Any]]:
    """`and(equals(a,"x"),any(b,["y"]))` -> [("equals", "a", ("string", "x")), ("any", "b", [...])]."""
    tokens: list[tuple[str, str]] = []
    position = 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if not match or match.end() == position:
            raise ValueError(f"cannot tokenise filter at {text[position:]!r}")
        kind = match.lastgroup or ""
        tokens.append((kind, match.group(kind)))
        position = match.end()
    expressions: list[tuple[str, str, Any]] = []
    index = _parse_expression(tokens, 0, expressions)
    while index < len(tokens) and tokens[index] == ("punct", ","):
        index = _parse_expression(tokens, index + 1, expressions)
    if index != len(tokens):
        raise ValueError(f"trailing tokens in filter {text!r}")
    return expressions


def _parse_expression(tokens: list[tuple[str, str]], index: int, out: list[tuple[str, str, Any]]) -> int:
    kind, operator = tokens[index]
    if kind != "bare" or tokens[index + 1] != ("punct", "("):
        raise ValueError(f"expected operator( at token {index}")
    index += 2
    if operator in ("and", "or"):
        index = _parse_expression(tokens, index, out)
        while tokens[index] == ("punct", ","):
            index = _parse_expression(tokens, index + 1, out)
    else:
        field_kind, field = tokens[index]
        if field_kind != "bare":
            raise ValueError(f"expected a field name, got {field!r}")
        index += 1
        value: Any = None
        if tokens[index] == ("punct", ","):
            value, index = _parse_value(tokens, index + 1)
        out.append((operator, field, value))
    if tokens[index] != ("punct", ")"):
        raise ValueError(f"expected ) at token {index}")
    return index + 1


def _parse_value(tokens: list[tuple[str, str]], index: int) -> tuple[Any, int]:
    kind, text = tokens[index]
    if kind == "string":
        return ("string", re.sub(r"\\(.)", r"\1", text[1:-1], flags=re.DOTALL)), index + 1
    if kind == "bare":
        return ("bare", text), index + 1
    if text == "[":
        items: list[Any] = []
        index += 1
        while tokens[index] != ("punct", "]"):
            item, index = _parse_value(tokens, index)
            items.append(item)
            if tokens[index] == ("punct", ","):
                index += 1
        return items, index + 1
    raise ValueError(f"unexpected {text!r} in filter value")


def _value_problem(value: Any, value_type: dict[str, Any]) -> str | None:
    kind, text = value
    expected = value_type.get("type")
    if expected == "string" and value_type.get("format") == "date-time":
        if kind != "bare":
            return f"datetime {text!r} must be unquoted"
        try:
            datetime.fromisoformat(text)
        except ValueError:
            return f"{text!r} is not an ISO 8601 datetime"
        return None
    if expected == "string":
        return None if kind == "string" else f"string {text!r} must be quoted"
    if expected == "boolean":
        return None if (kind, text) in (("bare", "true"), ("bare", "false")) else f"{text!r} is not a boolean"
    if expected in ("number", "integer"):
        return None if kind == "bare" and re.fullmatch(r"-?\d+(\.\d+)?", text) else f"{text!r} is not a number"
    return None


def filter_problems(operation: Operation, text: str) -> list[str]:
    allowed = operation.definition.get("x-klaviyo-filters") or {}
    try:
        expressions = parse_filter(text)
    except (ValueError, IndexError) as exc:
        return [f"filter {text!r} does not parse: {exc}"]
    problems = []
    for operator, field, value in expressions:
        rule = allowed.get(field)
        if rule is None:
            problems.append(f"filter field {field!r} is not filterable on {operation.operation_id}")
            continue
        shape = "none" if value is None else "list" if isinstance(value, list) else "single"
        if operator not in rule["operators"].get(shape, []):
            problems.append(f"{operator}({field}) with a {shape} value is not allowed on {operation.operation_id}")
            continue
        for item in value if isinstance(value, list) else [value] if value is not None else []:
            problem = _value_problem(item, rule.get("value", {}))
            if problem:
                problems.append(f"{field}: {problem}")
    return problems


# The whole request ----------------------------------------------------------------------------


def conformance_problems(request: httpx.Request) -> tuple[str | None, list[str]]:
    """(operationId, problems) for one request; no problems means it conforms to the spec."""
    path = unquote(request.url.raw_path.decode().split("?")[0])
    operation = match_operation(request.method, path)
    if operation is None:
        return None, [f"no operation in the spec for {request.method} {path}"]
    problems: list[str] = []
    wrapped = _OpenAPIRequest(request)
    for error in (e for validator in openapi_validators() for e in validator.iter_errors(wrapped)):
        cause = error.__cause__
        details = getattr(cause, "schema_errors", None) or ([cause] if cause else [])
        problems.append(f"{type(error).__name__}: {error} {'; '.join(str(d)[:300] for d in details)}")

    query = parse_qsl(request.url.query.decode(), keep_blank_values=True)
    declared = {p["name"] for p in operation.definition.get("parameters", []) if p.get("in") == "query"}
    problems += [f"query parameter {name!r} is not in the spec" for name, _ in query if name not in declared]
    problems += [problem for name, value in query if name == "filter" for problem in filter_problems(operation, value)]

    if request.headers.get("revision") != REVISION:
        problems.append(f"revision header is {request.headers.get('revision')!r}, not {REVISION}")
    if not re.fullmatch(r"Klaviyo-API-Key \S+", request.headers.get("authorization", "")):
        problems.append("Authorization header is not `Klaviyo-API-Key <key>`")
    if request.headers.get("accept") != JSON_API:
        problems.append(f"Accept header is {request.headers.get('accept')!r}")

    body_spec = (operation.definition.get("requestBody") or {}).get("content", {}).get(JSON_API)
    if request.content and body_spec is None:
        problems.append(f"{operation.operation_id} takes no body but one was sent")
    elif body_spec is not None:
        if request.headers.get("content-type") != JSON_API:
            problems.append(f"Content-Type is {request.headers.get('content-type')!r}, not {JSON_API}")
        validator = _body_validator(operation.operation_id, json.dumps(body_spec["schema"]))
        body = representative(json.loads(request.content or b"null"))
        for error in sorted(validator.iter_errors(body), key=lambda e: list(e.absolute_path))[:10]:
            where = "/" + "/".join(str(p) for p in error.absolute_path)
            problems.append(f"body {where}: {error.message[:300]}")
    return operation.operation_id, problems
