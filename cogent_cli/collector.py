"""Garbage-collector settings for long, allocation-heavy work (a sync run, a sandbox serving bulk requests).

Such work allocates millions of short-lived objects (parsed JSON, payloads, rows); with the default
thresholds the collector keeps re-walking every long-lived object (modules, the Klaviyo spec, pydantic
schemas, caches), which can cost as much as the work itself. Those are set aside (`gc.freeze`) and young
objects are collected less often; reference counting still frees the acyclic garbage at once.

Nested uses (an ingest that normalises what an earlier run left pending) keep the outermost settings.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

YOUNG_THRESHOLD = 50_000
_depth = 0


@contextmanager
def fewer_collections(young_threshold: int = YOUNG_THRESHOLD) -> Iterator[None]:
    global _depth
    if _depth:
        yield
        return
    _depth += 1
    threshold = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(young_threshold, *threshold[1:])
    try:
        yield
    finally:
        gc.set_threshold(*threshold)
        gc.unfreeze()
        _depth -= 1
