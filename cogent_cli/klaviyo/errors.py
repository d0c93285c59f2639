"""Klaviyo's `errors[]` turned into typed exceptions that say how to fix the problem.

Callers only ever see what the client's own retries could not fix:

    KlaviyoError                      any failed Klaviyo call (status, errors[], operation)
    ├── ThrottledError                429 still returned after the allowed waits
    ├── TransientError                5xx / timeout / connection reset after bounded retries,
    │                                 or a non-idempotent call that failed ambiguously
    ├── DuplicateProfileError         409 duplicate_profile (carries duplicate_profile_id)
    ├── KlaviyoValidationError        400 with the JSON pointer of the bad field
    ├── KlaviyoNotFoundError          404
    ├── AuthError                     401: the key is wrong or revoked
    │   └── ScopeError                403: the key lacks a scope the operation needs
    └── BulkDeliveryError             some batches of a bulk call failed (carries the outcome)
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cogent_cli.errors import CogentError, ExitStatus
from cogent_cli.logs import redact

if TYPE_CHECKING:
    from cogent_cli.klaviyo.models import BulkOutcome

AUTH_HINT = "Check the private API key: run `cogent auth set klaviyo` or set COGENT_KLAVIYO_API_KEY."


@dataclass(frozen=True)
class ErrorObject:
    """One entry of Klaviyo's `errors[]`."""

    id: str | None = None
    status: int | None = None
    code: str | None = None
    title: str | None = None
    detail: str | None = None
    pointer: str | None = None
    parameter: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, item: dict[str, Any]) -> ErrorObject:
        source = item.get("source") or {}
        status = item.get("status")
        return cls(
            id=item.get("id"),
            status=int(status) if isinstance(status, int | str) and str(status).isdigit() else None,
            code=item.get("code"),
            title=item.get("title"),
            detail=item.get("detail"),
            pointer=source.get("pointer"),
            parameter=source.get("parameter"),
            meta=item.get("meta") or {},
        )

    def describe(self) -> str:
        text = self.detail or self.title or self.code or "no detail given"
        where = self.pointer or (f"parameter {self.parameter}" if self.parameter else None)
        return f"{text} (at {where})" if where else text


def parse_error_body(body: bytes | str) -> list[ErrorObject]:
    """Klaviyo's error objects from a response body; empty when it is not the JSON:API error shape."""
    try:
        payload = json.loads(body or b"null")
    except ValueError:
        return []
    items = payload.get("errors") if isinstance(payload, dict) else None
    if not isinstance(items, list):
        return []
    return [ErrorObject.from_json(item) for item in items if isinstance(item, dict)]


class KlaviyoError(CogentError):
    """A Klaviyo call failed; `errors` holds Klaviyo's own error objects."""

    def __init__(
        self,
        message: str,
        hint: str | None = None,
        *,
        status: int | None = None,
        errors: Sequence[ErrorObject] = (),
        operation_id: str | None = None,
    ) -> None:
        # Server text is echoed back to the user, so it goes through the same redaction as logs.
        super().__init__(redact(message), redact(hint) if hint else None)
        self.status = status
        self.errors = list(errors)
        self.operation_id = operation_id

    @property
    def codes(self) -> list[str]:
        return [e.code for e in self.errors if e.code]


class ThrottledError(KlaviyoError):
    exit_status = ExitStatus.UNAVAILABLE

    def __init__(self, *args: Any, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.retry_after = retry_after


class TransientError(KlaviyoError):
    """Klaviyo was unreachable or failing; `maybe_applied` means the request may have taken effect."""

    exit_status = ExitStatus.UNAVAILABLE

    def __init__(self, *args: Any, maybe_applied: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.maybe_applied = maybe_applied


class DuplicateProfileError(KlaviyoError):
    def __init__(self, *args: Any, duplicate_profile_id: str | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.duplicate_profile_id = duplicate_profile_id


class KlaviyoValidationError(KlaviyoError):
    exit_status = ExitStatus.ERROR

    def __init__(self, *args: Any, pointer: str | None = None, parameter: str | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.pointer = pointer
        self.parameter = parameter


class KlaviyoNotFoundError(KlaviyoError):
    pass


class AuthError(KlaviyoError):
    exit_status = ExitStatus.AUTH


class ScopeError(AuthError):
    def __init__(self, *args: Any, scopes: Sequence[str] = (), **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.scopes = tuple(scopes)


class BulkDeliveryError(KlaviyoError):
    """Some batches of a bulk call were rejected; `outcome` says which items were and were not accepted."""

    def __init__(self, outcome: BulkOutcome[Any], operation_id: str) -> None:
        first = outcome.failures[0].error
        failed = sum(len(f.items) for f in outcome.failures)
        super().__init__(
            f"{operation_id}: {failed} of {failed + outcome.accepted} items were not accepted "
            f"({len(outcome.failures)} failed request(s)); first failure: {first.message}",
            first.hint,
            status=first.status,
            errors=first.errors,
            operation_id=operation_id,
        )
        self.outcome = outcome


def error_for_response(
    status: int,
    body: bytes,
    *,
    operation_id: str,
    scopes: Sequence[str],
    retry_after: float | None = None,
) -> KlaviyoError:
    """The typed error for a non-2xx response Klaviyo returned to `operation_id`."""
    errors = parse_error_body(body)
    first = errors[0] if errors else ErrorObject(status=status)
    summary = "; ".join(e.describe() for e in errors[:3]) or f"HTTP {status}"
    common: dict[str, Any] = {"status": status, "errors": errors, "operation_id": operation_id}
    if status == 401:
        return AuthError(f"Klaviyo rejected the API key ({operation_id}): {summary}", AUTH_HINT, **common)
    if status == 403:
        needed = ", ".join(scopes) or "unknown"
        return ScopeError(
            f"The Klaviyo API key lacks a scope needed by {operation_id} (needs: {needed}): {summary}",
            f"Create a private key with the {needed} scope(s) in Klaviyo (Settings > API keys) "
            "and store it with `cogent auth set klaviyo`.",
            scopes=scopes,
            **common,
        )
    if status == 409 and (first.code == "duplicate_profile" or "duplicate_profile_id" in first.meta):
        duplicate = first.meta.get("duplicate_profile_id")
        return DuplicateProfileError(
            f"{operation_id}: another Klaviyo profile ({duplicate}) already owns one of these identifiers",
            "Update that profile instead (upsert via profile-import), drop the conflicting identifier, "
            "or merge the two profiles.",
            duplicate_profile_id=duplicate,
            **common,
        )
    if status == 404:
        return KlaviyoNotFoundError(
            f"{operation_id}: not found: {summary}", "Check the id; it may have been deleted or merged.", **common
        )
    if status == 429:
        return ThrottledError(
            f"{operation_id}: still throttled by Klaviyo after waiting as asked: {summary}",
            "Another integration may share this account's rate limit; lower max_in_flight or run later.",
            retry_after=retry_after,
            **common,
        )
    if status >= 500:
        return TransientError(
            f"{operation_id}: Klaviyo failed with HTTP {status}: {summary}",
            "Klaviyo is having trouble; retry later (check status.klaviyo.com).",
            **common,
        )
    if status in (400, 422) or first.pointer or first.parameter:
        where = first.pointer or first.parameter
        return KlaviyoValidationError(
            f"{operation_id}: Klaviyo rejected the request: {summary}",
            f"Fix the value at {where} and send again." if where else "Fix the request and send again.",
            pointer=first.pointer,
            parameter=first.parameter,
            **common,
        )
    return KlaviyoError(
        f"{operation_id}: Klaviyo answered HTTP {status}: {summary}",
        "See https://developers.klaviyo.com/en/docs/rate_limits_and_error_handling.",
        **common,
    )
