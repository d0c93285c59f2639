"""JSON for raw payloads on the ingest path, with orjson's speed and the standard library's tolerance.

orjson refuses a few things `json` accepts (NaN and Infinity, integers beyond 64 bits, lone surrogates);
such payloads fall back to `json`, so what can be stored and read does not change.
"""

from __future__ import annotations

import json
from typing import Any

import orjson


def loads(text: str | bytes) -> Any:
    """Decode JSON text; raises ValueError (json.JSONDecodeError) when neither decoder accepts it."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


def dumps(value: Any) -> str:
    """Compact JSON text, non-ASCII characters kept as they are."""
    try:
        return orjson.dumps(value).decode()
    except TypeError:  # orjson.JSONEncodeError: an integer beyond 64 bits, a lone surrogate, ...
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
