"""Benchmark: the least time this machine needs for the state-file writes that ingest and sync cannot do
without, with no normalising, mapping, identity resolution or HTTP at all, under the same garbage-collector
settings as the real runs. It bounds what
`bench/ingest.py` and `bench/sync.py` can reach here, whatever the code above the writes does.

    python bench/floor.py                          # 1,000,000 ingest rows, 100,000 sync events
    python bench/floor.py --rows 100000 --events 20000
    python bench/floor.py --events 0 --batch 100000 --cache-mib 256    # the most generous ingest floor

* Ingest: each JSON Lines webhook body of `bench/ingest.py` is decoded, given its idempotency key and
  an event id, and stored twice, as `cogent ingest` must: the raw row in `inbox` (its dedupe index
  included) and one `events` row holding the body, batch by batch in one transaction each. Run on the
  workspace's real schema, then with only the two unique keys that dedupe needs (every other index
  dropped), to show what a leaner schema could give. Transactions hold `cogent ingest`'s batch and the
  state file's page cache is its usual size unless `--batch` and `--cache-mib` say otherwise (larger
  ones than a 500 MB memory limit allows the real thing). Target for the real thing: 60 s per million.
* Sync: the `events` of `bench/sync.py`'s mix are read, one outbox row written per event, and then,
  1,000 at a time (a bulk request's most), the rows' payloads read, joined into a request body and
  marked sent, one transaction per request. Printed against the ceiling `bench/sync.py` uses; its
  target is 0.9 of that ceiling end to end.

A 2,000,000-iteration Python loop is timed beside each, to place the machine's speed at the moment.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import tempfile
import time
from collections import Counter
from pathlib import Path

from ingest import write_webhook_jsonl
from sync import ceiling_seconds, mixed_events, write_workspace

from cogent_cli.collector import fewer_collections
from cogent_cli.ingest import INGEST_BATCH
from cogent_cli.klaviyo.client import MAX_EVENTS_PER_REQUEST
from cogent_cli.normalise import json_text
from cogent_cli.state.store import CACHE_KIB
from cogent_cli.workspace import Workspace, init_workspace

INBOX = (
    "INSERT INTO inbox (system, route, kind, idempotency_key, received_at, headers, body, status, attempts)"
    " VALUES ('scend', 'file', 'webhook', ?, ?, '{}', ?, 'normalised', 1) ON CONFLICT DO NOTHING"
)
EVENTS = (
    "INSERT OR IGNORE INTO events (event_id, event_type, system, tenant, occurred_at, order_number, inbox_id, body)"
    " VALUES (?, 'shipment.despatched', 'scend', 'bench', ?, ?, ?, ?)"
)
LEAN = "DROP INDEX idx_inbox_status_id; DROP INDEX idx_events_order_number; DROP INDEX idx_events_inbox_id;"
LEAN += " DROP INDEX idx_events_event_type_occurred_at;"


def loop_seconds() -> float:
    started = time.perf_counter()
    total = 0
    for n in range(2_000_000):
        total += n
    return time.perf_counter() - started


def ingest_floor(path: Path, folder: Path, *, lean: bool, batch: int, cache_kib: int) -> tuple[int, float]:
    workspace = init_workspace(folder, name="floor")
    with workspace.store() as store, fewer_collections():
        conn = store.db.conn
        conn.execute(f"PRAGMA cache_size=-{cache_kib}")
        if lean:
            conn.executescript(LEAN)
        started = time.perf_counter()
        rows = 0
        inbox: list[tuple[str, str, str]] = []
        events: list[tuple[str, str, str, int, str]] = []

        def flush() -> None:
            with store.transaction():
                first = conn.execute("SELECT coalesce(max(id), 0) + 1 FROM inbox").fetchone()[0]
                conn.executemany(INBOX, inbox)
                conn.executemany(EVENTS, [(*event[:3], first + n, event[4]) for n, event in enumerate(events)])
            inbox.clear()
            events.clear()

        with path.open(encoding="utf-8") as handle:
            for line in handle:
                record = json_text.loads(line)
                key = f"despatch:{record['despatch_id']}"
                inbox.append((key, "2026-12-04T00:00:00Z", line))
                event_id = hashlib.sha256(key.encode()).hexdigest()
                events.append((event_id, record["occurred_at"], record["order_number"], 0, line))
                rows += 1
                if len(inbox) >= batch:
                    flush()
        flush()
        return rows, time.perf_counter() - started


def sync_floor(workspace: Workspace) -> tuple[float, float]:
    with workspace.store() as store, fewer_collections():
        conn = store.db.conn
        started = time.perf_counter()
        queued = []
        for rowid, event_id, event_type, occurred_at, order, body in conn.execute(
            "SELECT rowid, event_id, event_type, occurred_at, order_number, body FROM events"
        ):
            event = json_text.loads(body)
            payload = {"properties": event["data"], "profile": event.get("customer"), "time": occurred_at}
            queued.append(
                (f"event:{event_id}", event_id, rowid, event_type, order, occurred_at, json_text.dumps(payload))
            )
        with store.transaction():
            conn.executemany(
                "INSERT INTO outbox (op_key, event_id, event_rowid, kind, lane, system, event_type, order_key,"
                " occurred_at, payload, status, enqueued_at)"
                " VALUES (?, ?, ?, 'event', 0, 'peoplevox', ?, ?, ?, ?, 'pending', '2026-12-04T00:00:00Z')",
                queued,
            )
        queueing = time.perf_counter() - started
        ids = [row[0] for row in conn.execute("SELECT id FROM outbox WHERE status = 'pending' ORDER BY lane, id")]
        for start in range(0, len(ids), MAX_EVENTS_PER_REQUEST):
            chunk = ids[start : start + MAX_EVENTS_PER_REQUEST]
            payloads = conn.execute(
                "SELECT payload FROM outbox WHERE id IN (SELECT value FROM json_each(?))", (json_text.dumps(chunk),)
            )
            body = ",".join(payload for (payload,) in payloads).encode()
            assert body
            with store.transaction():
                conn.executemany(
                    "UPDATE outbox SET status = 'sent', attempts = attempts + 1, sent_at = ? WHERE id = ?",
                    [("2026-12-04T00:00:01Z", row_id) for row_id in chunk],
                )
        return queueing, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000, help="webhook bodies to store (ingest)")
    parser.add_argument("--events", type=int, default=100_000, help="events to queue and mark sent (sync)")
    parser.add_argument("--batch", type=int, default=INGEST_BATCH, help="ingest rows per transaction")
    parser.add_argument("--cache-mib", type=int, default=CACHE_KIB // 1024, help="SQLite page cache (ingest)")
    parser.add_argument("--rate-scale", type=float, default=10.0, help="as bench/sync.py's, for its ceiling")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cogent-floor-") as tmp:
        folder = Path(tmp)
        if args.rows:
            path = folder / "webhooks.jsonl"
            write_webhook_jsonl(path, args.rows)
            for lean in (False, True):
                loop = loop_seconds()
                rows, seconds = ingest_floor(
                    path, folder / f"ingest-{lean}", lean=lean, batch=args.batch, cache_kib=args.cache_mib * 1024
                )
                schema = "only the unique keys" if lean else "the real schema"
                schema += f", {args.batch:,} rows a transaction, {args.cache_mib} MiB cache"
                print(
                    f"ingest floor, {schema}: {rows:,} rows in {seconds:.1f} s, {seconds / rows * 1e6:.1f} µs/row,"
                    f" {seconds / rows * 1e6:.0f} s per million (target 60 s); 2M-iteration loop {loop:.2f} s"
                )
        if args.events:
            workspace = write_workspace(
                folder / "sync", "http://127.0.0.1:9", args.rate_scale, mixed_events(args.events), 1
            )
            loop = loop_seconds()
            queueing, seconds = sync_floor(workspace)
            requests = math.ceil(args.events / MAX_EVENTS_PER_REQUEST)
            bound, _ = ceiling_seconds(Counter({"bulk_create_events": requests}), args.rate_scale)
            print(
                f"sync floor: {args.events:,} events in {seconds:.2f} s ({queueing:.2f} s queueing),"
                f" {seconds / args.events * 1e6:.1f} µs/event; the ceiling's {requests} event requests take"
                f" {bound:.1f} s, so at best {min(bound / seconds, 1):.2f} of it (target 0.9);"
                f" 2M-iteration loop {loop:.2f} s"
            )


if __name__ == "__main__":
    main()
