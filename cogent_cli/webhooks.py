"""Verifying webhook deliveries: what each source system signs, and how to check it.

| System | What proves a delivery authentic |
|---|---|
| Marketplacer | `Marketplacer-Hmac-256`: Base64(HMAC-SHA256(webhook secret, raw body)) |
| Swap Commerce | a JWT (HS256, signed with the store's `whsk_...` secret) in the body's `jwt` field, unexpired, whose `return_id` claim matches the body; optionally an HMAC header (V2) |
| Peoplevox, Clarus, Scend | nothing: a per-source secret token in the URL path |

Every comparison is constant-time. Failures raise `WebhookAuthError` with a reason safe to log
(it never contains a secret or the presented token).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jwt

from cogent_cli.errors import CredentialError

# Clock difference tolerated between Swap's servers and ours when checking `exp`/`iat`.
SWAP_LEEWAY_SECONDS = 30
SWAP_REQUIRED_CLAIMS = ("exp", "iat", "nonce", "return_id", "event")


class WebhookAuthError(CredentialError):
    """A delivery that is not provably from the source: forged, tampered, expired or unsigned."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"webhook rejected: {reason}", hint="Check the webhook secret configured at the vendor.")
        self.reason = reason


def _header(headers: Mapping[str, str], name: str) -> str | None:
    wanted = name.lower()
    for key, value in headers.items():
        if key.lower() == wanted:
            return value
    return None


def hmac_sha256_b64(secret: str, body: bytes) -> str:
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def verify_hmac_header(headers: Mapping[str, str], header: str, secret: str, body: bytes) -> None:
    """The header must hold Base64(HMAC-SHA256(secret, body)) (Marketplacer, Swap V2)."""
    presented = _header(headers, header)
    if not presented:
        raise WebhookAuthError(f"no {header} header")
    expected = hmac_sha256_b64(secret, body)
    if not hmac.compare_digest(presented.strip().encode(), expected.encode()):
        raise WebhookAuthError(f"{header} does not match the body")


def verify_token(presented: str, expected: str) -> None:
    """The secret token in the callback URL (Peoplevox, Clarus, Scend sign nothing)."""
    if not hmac.compare_digest(presented.encode(), expected.encode()):
        raise WebhookAuthError("wrong token in the URL")


@dataclass(frozen=True)
class SwapDelivery:
    """A verified Swap webhook: its JWT claims and the return object it describes."""

    claims: dict[str, Any]
    body: dict[str, Any]

    @property
    def event(self) -> str:
        return str(self.claims["event"])

    @property
    def return_id(self) -> str:
        return str(self.claims["return_id"])


def swap_return_object(body: Mapping[str, Any]) -> Mapping[str, Any]:
    """The return inside a Swap webhook body: `{"return": {...}, "jwt": ...}`, or the body itself."""
    inner = body.get("return")
    return inner if isinstance(inner, Mapping) else body


def verify_swap(
    body: bytes,
    secret: str,
    *,
    store_id: str | None = None,
) -> SwapDelivery:
    """Check the HS256 JWT in the body's `jwt` field and bind its claims to the body.

    The JWT signs its claims, not the body, so the body's return id (and store id, when configured)
    must equal the signed ones; otherwise a captured token could carry a different payload.
    """
    try:
        parsed = json.loads(body)
    except (ValueError, RecursionError):
        raise WebhookAuthError("body is not JSON, so it carries no jwt") from None
    if not isinstance(parsed, dict) or not isinstance(parsed.get("jwt"), str):
        raise WebhookAuthError("no jwt field in the body")
    try:
        claims = jwt.decode(
            parsed["jwt"],
            secret,
            algorithms=["HS256"],
            options={"require": list(SWAP_REQUIRED_CLAIMS)},
            leeway=SWAP_LEEWAY_SECONDS,
        )
    except jwt.ExpiredSignatureError:
        raise WebhookAuthError("jwt has expired") from None
    except jwt.InvalidTokenError as exc:
        raise WebhookAuthError(f"jwt is not valid ({type(exc).__name__})") from None
    returned = swap_return_object(parsed)
    body_return_id = returned.get("return_id") or returned.get("id")
    if body_return_id is not None and str(body_return_id) != str(claims["return_id"]):
        raise WebhookAuthError("jwt return_id does not match the body")
    if store_id and claims.get("store_id") is not None and str(claims["store_id"]) != store_id:
        raise WebhookAuthError("jwt store_id is not this workspace's store")
    return SwapDelivery(claims=claims, body=parsed)
