"""Crash safety and the one-run-at-a-time lock, with real `cogent sync` processes and the sandbox."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from sync_fakes import API_KEY, add_events, refund, return_event, sandbox_events, sandbox_workspace, shipment

from cogent_cli.errors import ExitStatus, LockHeldError
from cogent_cli.sync import lock
from cogent_cli.sync.engine import SyncOptions, run_sync

ZYGOTE = Path(__file__).with_name("sync_zygote.py")
# Profile import jobs take a moment, as Klaviyo's do, so kills also land while runs poll them.
SANDBOX_JOB_SECONDS = 0.2


class Runs:
    """`cogent sync` child processes forked from one pre-imported interpreter."""

    def __init__(self, workspace: Path) -> None:
        env = {**os.environ, "COGENT_KLAVIYO_API_KEY": API_KEY}
        self.workspace = workspace
        self.proc = subprocess.Popen(
            [sys.executable, str(ZYGOTE)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env
        )

    def _ask(self, line: str) -> int:
        assert self.proc.stdin and self.proc.stdout
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        return int(self.proc.stdout.readline())

    def start(self) -> int:
        return self._ask(f"run --workspace {self.workspace} sync")

    def wait(self, pid: int) -> int:
        return self._ask(f"wait {pid}")

    def close(self) -> None:
        assert self.proc.stdin
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


@pytest.fixture
def runs(tmp_path: Path, sandbox: Any) -> Any:
    workspace = sandbox_workspace(tmp_path / "ws", sandbox.base_url, "[sync]\nwave_size = 4\n")
    started = Runs(workspace.root)
    yield workspace, started
    started.close()


def batch(trial: int, size: int) -> list[Any]:
    """Mixed work for one trial: shipments, returns (with profile updates) and refunds."""
    events = []
    for i in range(size):
        order, email = f"K{trial}-{i}", f"c{(trial * size + i) % 11}@shop.test"
        events.append(shipment(f"S{trial}-{i}", [(f"T{trial}-{i}", [("SKU-1", 1)])], order=order, email=email))
        if i % 3 == 0:
            events.append(return_event("return.lodged", f"RET{trial}-{i}", "lodged", order=order, email=email))
            events.append(refund(f"R{trial}-{i}", "9.99", [("SKU-1", 1, "9.99")], order=order, email=email))
    return events


def outbox_in_flight(store: Any) -> int:
    return store.db.execute("select count(*) from outbox where status in ('in_flight', 'sent')").fetchone()[0]


def assert_delivered_exactly_once(workspace: Any, sandbox: Any) -> None:
    with workspace.store() as store:
        left = store.db.execute("select count(*) from outbox where status not in ('sent', 'superseded')").fetchone()[0]
        expected = Counter(
            row[0]
            for row in store.db.execute("select json_extract(payload, '$.unique_id') from outbox where kind = 'event'")
        )
        customers = store.db.execute("select count(distinct email) from events").fetchone()[0]
    assert left == 0
    assert Counter(e["unique_id"] for e in sandbox_events(sandbox)) == expected
    assert sandbox.db["profiles"].count == customers


def test_run_killed_with_sigkill_at_random_points_resumes_and_delivers_every_event_exactly_once(
    runs: Any, sandbox: Any
) -> None:
    workspace, started = runs
    rng = random.Random(5)
    kills = 0
    for trial in range(22):
        with workspace.store() as store:
            add_events(store, batch(trial, 3))
            before = outbox_in_flight(store)
        pid = started.start()
        if trial % 2:
            # Kill once delivery has begun: between the claim, the request and the commit of its outcome.
            deadline = time.monotonic() + 20
            with workspace.store() as store:
                while outbox_in_flight(store) == before and time.monotonic() < deadline:
                    time.sleep(0.005)
            time.sleep(rng.uniform(0, 0.05))
        else:
            time.sleep(rng.uniform(0, 0.6))
        try:
            os.kill(pid, signal.SIGKILL)
            kills += 1
        except ProcessLookupError:
            pass
        started.wait(pid)
    assert kills >= 20
    final = started.start()
    assert started.wait(final) == 0
    assert_delivered_exactly_once(workspace, sandbox)
    # Some profile updates went as import jobs, so some kills came while a run waited on one.
    assert sandbox.db.execute("select count(*) from jobs where type = 'profile-bulk-import-job'").fetchone()[0] >= 3


def test_two_overlapping_runs_never_double_send(runs: Any, sandbox: Any) -> None:
    workspace, started = runs
    with workspace.store() as store:
        add_events(store, batch(0, 12))
    first = started.start()
    second = started.start()
    statuses = sorted([started.wait(first), started.wait(second)])
    assert statuses == [0, ExitStatus.LOCKED]
    assert started.wait(started.start()) == 0
    assert_delivered_exactly_once(workspace, sandbox)
    with workspace.store() as store:
        assert [r["status"] for r in store.db.query("select status from sync_runs order by id")].count("locked") == 1


def test_lock_held_by_a_live_process_names_its_pid_and_a_dead_holder_is_taken_over(workspace: Any) -> None:
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        with workspace.store() as store:
            store.db["sync_lock"].insert(
                {
                    "name": "sync",
                    "pid": sleeper.pid,
                    "process_started": lock.process_start_time(sleeper.pid),
                    "host": os.uname().nodename,
                    "acquired_at": "2026-01-01T00:00:00+00:00",
                }
            )
            with pytest.raises(LockHeldError, match=f"pid {sleeper.pid}") as raised:
                run_sync(workspace, SyncOptions())
            assert raised.value.exit_status == ExitStatus.LOCKED
            # The same pid with another start time is a different (reused) process: the lock is stale.
            store.db.execute("update sync_lock set process_started = '1'")
            stale = lock.acquire(store)
            assert stale is not None and stale.pid == sleeper.pid
            lock.release(store)
    finally:
        sleeper.kill()
        sleeper.wait()
    with workspace.store() as store:
        store.db["sync_lock"].insert(
            {
                "name": "sync",
                "pid": sleeper.pid,
                "process_started": "1",
                "host": os.uname().nodename,
                "acquired_at": "x",
            },
            replace=True,
        )
        taken = lock.acquire(store)
        assert taken is not None and taken.pid == sleeper.pid and not taken.alive()
        assert lock.current_holder(store).pid == os.getpid()  # type: ignore[union-attr]
