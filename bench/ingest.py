"""Ingest benchmark: 1,000,000 Peoplevox Despatch summary rows and 1,000,000 JSON Lines webhook bodies.

Generates both files in a temporary folder, then ingests each into a fresh workspace in its own process
(so peak memory is per run) through the path `cogent ingest` takes: every row stored raw in the inbox
(idempotency keys, duplicate detection) and normalised into `events`, batch by batch in one transaction
each. Prints rows/second, CPU seconds (user + system, worker processes included: steadier than wall
time on a busy machine), events and peak memory. Targets: each file under 60 s on 2 cores, peak memory
under 500 MB.

    python bench/ingest.py            # 1,000,000 rows each
    python bench/ingest.py --rows 100000
"""

from __future__ import annotations

import argparse
import csv
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HEADER = [
    "Salesorder number", "Requested delivery date", "Despatch number", "Carrier", "Service", "Despatch date",
    "Tracking number", "Item name", "No of items", "Destination country", "Site reference", "Item code",
    "Username", "Carrier reference", "Service type code", "Shipping cost", "Email", "Contact name", "Total sale",
    "Channel name",
]  # fmt: skip
SERVICES = [("DPD", "UK Standard 1-2 Days (Tracked)"), ("RM", "Tracked 24"), ("DHL", "Express 9:00")]


def write_despatch_csv(path: Path, rows: int) -> None:
    """Despatches of 1-3 items, a few orders split over two despatches."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(HEADER)
        written = despatch = 0
        while written < rows:
            despatch += 1
            order = 100_000 + despatch // 2 if despatch % 10 == 0 else 500_000 + despatch
            carrier, service = SERVICES[despatch % len(SERVICES)]
            when = f"{1 + despatch % 28:02d}/07/2026 {despatch % 24:02d}:{despatch % 60:02d}"
            for item in range(min(1 + despatch % 3, rows - written)):
                writer.writerow([
                    order, when, despatch, carrier, service, when, f"TRK{despatch:09d}", f"Item {item}",
                    1 + item, "England", "PrimarySite", f"SKU-{(despatch * 7 + item) % 5000:05d}", "bench",
                    carrier, service, "4.95", f"customer{order % 50_000}@example.com", "Sam Example", "59.90", "Web",
                ])  # fmt: skip
                written += 1


def write_webhook_jsonl(path: Path, rows: int) -> None:
    """Scend despatch webhooks (one parcel, one or two items each)."""
    with path.open("w", encoding="utf-8") as handle:
        for n in range(rows):
            items = [{"sku": f"SKU-{n % 5000:05d}", "qty": 1}] + ([{"sku": "SKU-00001", "qty": 2}] if n % 2 else [])
            body = {
                "event": "despatch.confirmed",
                "event_id": f"evt_{n:09d}",
                "occurred_at": f"2026-07-{1 + n % 28:02d}T{n % 24:02d}:{n % 60:02d}:00Z",
                "client_code": "ACME",
                "order_number": f"SO-{n:08d}",
                "despatch_id": f"DSP-{n:09d}",
                "is_final": True,
                "parcels": [
                    {
                        "parcel_id": "PCL-1",
                        "carrier": {"code": "RM", "name": "Royal Mail"},
                        "service": {"code": "TPN24", "name": "Tracked 24"},
                        "tracking_number": f"TT{n:09d}GB",
                        "items": items,
                    }
                ],
            }
            handle.write(json.dumps(body) + "\n")


def cpu_seconds() -> float:
    """User and system CPU time of this process and of any worker processes it has waited for."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def run_one(system: str, path: Path, workspace_dir: Path) -> dict[str, float]:
    from cogent_cli.ingest import ingest_paths
    from cogent_cli.normalise.base import load_normalisers
    from cogent_cli.workspace import init_workspace

    load_normalisers()  # imports, outside the timing
    workspace = init_workspace(workspace_dir, name="bench")
    with workspace.store() as store:
        started, cpu_started = time.perf_counter(), cpu_seconds()
        summary = ingest_paths(store, workspace.config, system, [path])
        finished, cpu_finished = time.perf_counter(), cpu_seconds()
        inbox_rows = store.db.execute("SELECT count(*) FROM inbox").fetchone()[0]
    normalised = summary.normalised
    assert normalised is not None
    return {
        "records": summary.records,
        "inbox": inbox_rows,
        "seconds": finished - started,
        "cpu_seconds": cpu_finished - cpu_started,
        "events": normalised.events_written,
        "quarantined": normalised.quarantined,
        "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--run", nargs=3, metavar=("SYSTEM", "PATH", "WORKSPACE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run:
        system, path, workspace = args.run
        print(json.dumps(run_one(system, Path(path), Path(workspace))))
        return
    with tempfile.TemporaryDirectory(prefix="cogent-bench-") as tmp:
        folder = Path(tmp)
        files = {
            "peoplevox": (folder / "despatch_summary.csv", write_despatch_csv),
            "scend": (folder / "webhooks.jsonl", write_webhook_jsonl),
        }
        for path, write in files.values():
            write(path, args.rows)
        print(
            f"{'file':<22}{'records':>10}{'inbox':>10}{'events':>10}{'quarant.':>9}{'s':>8}{'rows/s':>9}{'cpu s':>8}{'peak MB':>9}"
        )
        for system, (path, _) in files.items():
            output = subprocess.run(
                [sys.executable, __file__, "--run", system, str(path), str(folder / f"ws-{system}")],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
            figures = json.loads(output.strip().splitlines()[-1])
            print(
                f"{path.name:<22}{figures['records']:>10,}{figures['inbox']:>10,}{figures['events']:>10,}"
                f"{figures['quarantined']:>9,}{figures['seconds']:>8.1f}{figures['records'] / figures['seconds']:>9,.0f}"
                f"{figures['cpu_seconds']:>8.1f}{figures['peak_mb']:>9.0f}"
            )


if __name__ == "__main__":
    main()
