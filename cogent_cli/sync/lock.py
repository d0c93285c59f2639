"""One sync run at a time per workspace.

The lock is a row in the state file naming its holder: pid, the holder process's start time, host
and run id. Taking it is one IMMEDIATE transaction, so two processes racing for it cannot both win.
A lock whose process is gone, or whose pid now belongs to a different process (the start time
differs), is stale and is taken over; a lock held by a live process makes the caller exit with
`ExitStatus.LOCKED` and a message naming the holder.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cogent_cli.errors import LockHeldError
from cogent_cli.state import Store
from cogent_cli.sync.exceptions import now_iso

LOCK_NAME = "sync"


def process_start_time(pid: int) -> str | None:
    """The kernel's start time of `pid` (clock ticks since boot), or None if it is not running.

    Together with the pid it identifies one process for its lifetime, so a reused pid is noticed."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None
    except OSError:
        return _alive_fallback(pid)
    # Field 22; the command name (field 2) may contain spaces, so split after its closing bracket.
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] == "Z":  # a zombie has exited; only its exit status is left to collect
        return None
    return fields[19]


def _alive_fallback(pid: int) -> str | None:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    return "unknown"


def _start_time(pid: int) -> str | None:
    return process_start_time(pid) if Path("/proc").is_dir() else _alive_fallback(pid)


@dataclass(frozen=True)
class LockHolder:
    pid: int
    process_started: str | None
    host: str
    acquired_at: str
    run_id: int | None

    def alive(self) -> bool:
        if self.host != socket.gethostname():
            return True  # cannot check another machine's processes: assume it is running
        started = _start_time(self.pid)
        if started is None:
            return False
        return self.process_started in (None, "unknown") or started in ("unknown", self.process_started)


def current_holder(store: Store, name: str = LOCK_NAME) -> LockHolder | None:
    rows = list(store.db.query("select * from sync_lock where name = ?", [name]))
    if not rows:
        return None
    row = rows[0]
    return LockHolder(row["pid"], row["process_started"], row["host"], row["acquired_at"], row["run_id"])


def acquire(store: Store, run_id: int | None = None, name: str = LOCK_NAME) -> LockHolder | None:
    """Take the lock; returns the stale holder it replaced (None if it was free)."""
    pid = os.getpid()
    with store.transaction() as db:
        holder = current_holder(store, name)
        if holder is not None and holder.pid != pid and holder.alive():
            raise LockHeldError(
                f"Another sync run holds the workspace lock: pid {holder.pid} on {holder.host}, "
                f"started {holder.acquired_at}" + (f" (run {holder.run_id})" if holder.run_id else ""),
                hint="Wait for it to finish (`cogent runs list` shows it). If that process is gone, "
                "the next run takes the lock over by itself.",
            )
        db["sync_lock"].upsert(
            {
                "name": name,
                "pid": pid,
                "process_started": _start_time(pid),
                "host": socket.gethostname(),
                "acquired_at": now_iso(),
                "run_id": run_id,
            },
            pk="name",
        )
    return holder if holder is not None and holder.pid != pid else None


def set_run(store: Store, run_id: int, name: str = LOCK_NAME) -> None:
    with store.transaction() as db:
        db.execute("update sync_lock set run_id = ? where name = ? and pid = ?", [run_id, name, os.getpid()])


def release(store: Store, name: str = LOCK_NAME) -> None:
    with store.transaction() as db:
        db.execute("delete from sync_lock where name = ? and pid = ?", [name, os.getpid()])


@contextmanager
def workspace_lock(store: Store, name: str = LOCK_NAME) -> Iterator[LockHolder | None]:
    stale = acquire(store, name=name)
    try:
        yield stale
    finally:
        release(store, name)
