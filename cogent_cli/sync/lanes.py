"""Outbox lanes and the states of work not yet delivered.

Kept apart from the mapping and the outbox so that `cogent status` can name them without loading
the event model and the engine.
"""

from __future__ import annotations

# Lanes, delivered in this order: triggers first, state after, history last.
TRANSACTIONAL, PROFILE, CATALOG, BACKFILL = 0, 1, 2, 3
LANE_NAMES = {TRANSACTIONAL: "transactional", PROFILE: "profile", CATALOG: "catalog", BACKFILL: "backfill"}

UNSENT = ("pending", "in_flight", "deferred", "exception")
