"""Klaviyo's JSON:API envelope: error bodies, resource links and timestamps as the live API writes them."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

from starlette.responses import Response

MEDIA_TYPE = "application/vnd.api+json"

TITLES = {
    400: "Invalid input.",
    401: "Authentication credentials were not provided.",
    403: "You do not have permission to perform this action.",
    404: "Not found.",
    405: "Method not allowed.",
    409: "Conflict.",
    413: "Request entity too large.",
    415: "Unsupported media type.",
    429: "Request was throttled.",
    500: "A server error occurred.",
    501: "Not implemented.",
    502: "Bad gateway.",
    503: "Service unavailable.",
    504: "Gateway timeout.",
}
CODES = {
    400: "invalid",
    401: "not_authenticated",
    403: "permission_denied",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "request_too_large",
    415: "unsupported_media_type",
    429: "throttled",
    500: "error",
    501: "not_implemented",
    502: "bad_gateway",
    503: "service_unavailable",
    504: "gateway_timeout",
}


def error_entry(
    status: int,
    detail: str,
    *,
    code: str | None = None,
    title: str | None = None,
    pointer: str | None = None,
    parameter: str | None = None,
    meta: dict[str, Any] | None = None,
) -> dict[str, Any]:
    source: dict[str, str] = {}
    if pointer is not None:
        source["pointer"] = pointer
    if parameter is not None:
        source["parameter"] = parameter
    return {
        "id": str(uuid.uuid4()),
        "status": status,
        "code": code or CODES.get(status, "error"),
        "title": title or TITLES.get(status, "Error."),
        "detail": detail,
        "source": source,
        "links": {},
        "meta": meta or {},
    }


class ApiError(Exception):
    """An error answer in Klaviyo's format; handlers raise it and the dispatcher renders it."""

    def __init__(self, status: int, errors: list[dict[str, Any]], headers: dict[str, str] | None = None) -> None:
        super().__init__(errors[0]["detail"] if errors else str(status))
        self.status = status
        self.errors = errors
        self.headers = headers or {}

    @classmethod
    def one(cls, status: int, detail: str, **fields: Any) -> ApiError:
        return cls(status, [error_entry(status, detail, **fields)])

    def under(self, prefix: str) -> ApiError:
        """This error with its pointers, given relative to a part of the body, put under `prefix`."""
        for entry in self.errors:
            if "pointer" in entry["source"]:
                entry["source"]["pointer"] = prefix + entry["source"]["pointer"]
        return self

    def response(self) -> Response:
        return json_response({"errors": self.errors}, self.status, self.headers)


def invalid(detail: str, *, pointer: str | None = None, parameter: str | None = None) -> ApiError:
    return ApiError.one(400, detail, pointer=pointer, parameter=parameter)


def not_found(detail: str, *, pointer: str | None = None) -> ApiError:
    return ApiError.one(404, detail, pointer=pointer)


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    content = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
    return Response(content, status_code=status, headers=headers, media_type=MEDIA_TYPE)


def now() -> datetime:
    return datetime.now(UTC)


def iso(moment: datetime) -> str:
    """Klaviyo writes UTC datetimes with an explicit offset, to the second: 2026-07-20T12:00:00+00:00."""
    return moment.astimezone(UTC).replace(microsecond=0).isoformat()


def parse_datetime(text: str) -> datetime:
    """An RFC 3339 / ISO 8601 datetime; a naive one is taken as UTC."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        moment = datetime.fromisoformat(text.replace("z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
