"""Request validation against the official spec: bodies by JSON Schema, query parameters by their declarations.

The spec's object schemas leave `additionalProperties` open, but Klaviyo answers 400 ("'x' is not a valid
field for the resource 'profile'") for a field it does not know, so request schemas are closed here: a
misspelt `uniqueId` must fail in rehearsal, not silently disable deduplication in production.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from typing import Any

import jsonschema_rs

from cogent_cli.klaviyo.spec import Operation, load_spec
from cogent_cli.sandbox.jsonapi import ApiError, error_entry

MAX_ERRORS = 10
BODY_MEDIA_TYPE = "application/vnd.api+json"


def _to_json_schema(schema: Any, closed: bool, in_all_of: bool = False) -> Any:
    """OpenAPI 3.0 schema -> JSON Schema (draft 4): `nullable` becomes a null type; `closed` objects
    refuse properties they do not declare."""
    if isinstance(schema, list):
        return [_to_json_schema(item, closed, in_all_of) for item in schema]
    if not isinstance(schema, dict):
        return schema
    converted: dict[str, Any] = {}
    for key, value in schema.items():
        if key in ("example", "default", "enum", "description"):
            converted[key] = value
        elif key == "properties":
            converted[key] = {name: _to_json_schema(sub, closed) for name, sub in value.items()}
        else:
            # allOf members must stay open: each one only knows part of the properties.
            converted[key] = _to_json_schema(value, closed, in_all_of or key == "allOf")
    if converted.pop("nullable", False):
        if "type" in converted:
            converted["type"] = [converted["type"], "null"]
        if "enum" in converted:
            converted["enum"] = [*converted["enum"], None]
        for combinator in ("oneOf", "anyOf"):
            if combinator in converted:
                converted[combinator] = [*converted[combinator], {"type": "null"}]
    if closed and "properties" in converted and "additionalProperties" not in converted and not in_all_of:
        converted["additionalProperties"] = False
    return converted


@cache
def _schema(name: str, closed: bool) -> Any:
    return _to_json_schema(load_spec()["components"]["schemas"][name], closed)


def _refs(node: Any) -> set[str]:
    if isinstance(node, dict):
        own = {node["$ref"].rsplit("/", 1)[-1]} if isinstance(node.get("$ref"), str) else set()
        return own.union(*(_refs(value) for value in node.values()))
    if isinstance(node, list):
        return set().union(*(_refs(item) for item in node))
    return set()


@cache
def schema_validator(schema_ref: str, closed: bool = True) -> jsonschema_rs.Draft4Validator:
    """A validator for one `#/components/schemas/...` of the spec: closed for requests (Klaviyo refuses
    unknown fields), open for responses (clients must ignore fields they do not know)."""
    # Only the schemas this one can reach: compiling all of them would cost a second per operation.
    reachable: set[str] = set()
    pending = [schema_ref.rsplit("/", 1)[-1]]
    while pending:
        name = pending.pop()
        if name not in reachable:
            reachable.add(name)
            pending.extend(_refs(_schema(name, closed)))
    schemas = {name: _schema(name, closed) for name in reachable}
    return jsonschema_rs.Draft4Validator(
        {"$ref": schema_ref, "components": {"schemas": schemas}}, validate_formats=True
    )


def body_schema_ref(operation: Operation) -> str | None:
    content = operation.definition.get("requestBody", {}).get("content", {})
    schema = content.get(BODY_MEDIA_TYPE, {}).get("schema")
    return schema.get("$ref") if schema else None


def _pointer(path: list[Any]) -> str:
    return "".join(f"/{part}" for part in path)


def _resource_type(body: Any, path: list[Any]) -> str:
    """The JSON:API `type` of the innermost resource object on the path (for Klaviyo-style messages)."""
    found = "resource"
    node = body
    for part in [None, *path]:
        if part is not None:
            try:
                node = node[part]
            except (KeyError, IndexError, TypeError):
                break
        if isinstance(node, Mapping) and isinstance(node.get("type"), str):
            found = node["type"]
    return found


def _leaves(error: jsonschema_rs.ValidationError) -> list[jsonschema_rs.ValidationError]:
    """For a failed oneOf/anyOf, the errors of the alternative that got furthest (deepest path)."""
    branches = getattr(error.kind, "context", None)
    if not branches:
        return [error]
    best = max(branches, key=lambda branch: max((len(e.instance_path) for e in branch), default=-1))
    return [leaf for e in best for leaf in _leaves(e)] or [error]


def _describe(error: jsonschema_rs.ValidationError, body: Any) -> dict[str, Any]:
    path = list(error.instance_path)
    kind = error.kind
    resource = _resource_type(body, path)
    if isinstance(kind, jsonschema_rs.ValidationErrorKind.Required):
        name = kind.property
        detail = f"'{name}' is a required field for the resource '{resource}'."
        return error_entry(400, detail, pointer=_pointer([*path, name]))
    if isinstance(kind, jsonschema_rs.ValidationErrorKind.AdditionalProperties):
        name = sorted(kind.unexpected)[0]
        detail = f"'{name}' is not a valid field for the resource '{resource}'."
        return error_entry(400, detail, pointer=_pointer([*path, name]))
    if isinstance(kind, jsonschema_rs.ValidationErrorKind.Enum):
        allowed = ", ".join(repr(value) for value in kind.options if value is not None)
        field = path[-1] if path else "value"
        detail = f"{error.instance!r} is not a valid choice for '{field}'; expected one of {allowed}."
        return error_entry(400, detail, pointer=_pointer(path))
    return error_entry(400, f"{error.message} (at '{_pointer(path) or '/'}').", pointer=_pointer(path))


def validate_body(operation: Operation, body: Any) -> None:
    """Raise a 400 ApiError listing (up to ten) places where `body` breaks the operation's request schema."""
    ref = body_schema_ref(operation)
    if ref is None:
        return
    validator = schema_validator(ref)
    if validator.is_valid(body):
        return
    errors: list[dict[str, Any]] = []
    seen: set[str] = set()
    for error in validator.iter_errors(body):
        for leaf in _leaves(error):
            entry = _describe(leaf, body)
            pointer = entry["source"]["pointer"]
            if pointer not in seen:
                seen.add(pointer)
                errors.append(entry)
        if len(errors) >= MAX_ERRORS:
            break
    errors.sort(key=lambda entry: entry["source"]["pointer"])
    raise ApiError(400, errors[:MAX_ERRORS])


def _query_parameters(operation: Operation) -> dict[str, dict[str, Any]]:
    return {param["name"]: param for param in operation.definition.get("parameters", []) if param.get("in") == "query"}


def validate_query(operation: Operation, params: Mapping[str, str]) -> dict[str, Any]:
    """Check each query parameter against the operation's declaration; returns the typed values.

    Arrays (`explode: false`) arrive comma-separated; `page[size]` is an integer with bounds.
    """
    declared = _query_parameters(operation)
    values: dict[str, Any] = {}
    for name, raw in params.items():
        param = declared.get(name)
        if param is None:
            raise ApiError.one(400, f"'{name}' is not a valid query parameter for this endpoint.", parameter=name)
        schema = param.get("schema", {})
        if schema.get("type") == "array":
            items = [item for item in raw.split(",") if item]
            allowed = schema.get("items", {}).get("enum")
            for item in items:
                if allowed is not None and item not in allowed:
                    raise ApiError.one(400, f"'{item}' is not an allowed value for '{name}'.", parameter=name)
            values[name] = items
        elif schema.get("type") == "integer":
            try:
                number = int(raw)
            except ValueError:
                raise ApiError.one(400, f"'{name}' must be an integer.", parameter=name) from None
            low, high = schema.get("minimum"), schema.get("maximum")
            if (low is not None and number < low) or (high is not None and number > high):
                raise ApiError.one(400, f"'{name}' must be between {low} and {high}, not {number}.", parameter=name)
            values[name] = number
        else:
            if "enum" in schema and raw not in schema["enum"]:
                raise ApiError.one(400, f"'{raw}' is not an allowed value for '{name}'.", parameter=name)
            values[name] = raw
    for name, param in declared.items():
        if name not in values and "default" in param.get("schema", {}):
            values[name] = param["schema"]["default"]
    return values
