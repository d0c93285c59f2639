"""`Store` owns the workspace's SQLite file: opening, migrating, and refusing newer schemas."""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlite_utils import Database

from cogent_cli.errors import StateError, StateTooNewError
from cogent_cli.state.migrations import migrations

BUSY_TIMEOUT_MS = 30_000
CHECKPOINT_INTERVAL = 1.0
# How long the checkpointer waits for the writer to finish before restarting the WAL; it tries again
# a second later if it could not.
RESTART_WAIT_MS = 200
WAL_BACKSTOP_BYTES = 64 * 1024 * 1024
# Pages for new files. A commit writes each changed page to the WAL as a frame of its own (two write
# calls), and inserts at random places in a large index (event ids, dedupe keys) change about one
# page per row: with SQLite's default 4 KiB, a commit of a thousand rows into a file of a million
# was mostly those calls. 16 KiB pages hold four times the keys, so such a commit changes a quarter
# as many. An existing file keeps the page size it was made with.
PAGE_SIZE = 16_384
# SQLite's default page cache (2 MiB) is far smaller than the indexes a large ingest inserts into at
# random (event ids are uuids): every insert then reads pages back from the file. 64 MiB keeps them.
CACHE_KIB = 65_536

log = logging.getLogger(__name__)

# sqlite3 binds None as NULL only after looking for an adapter and failing: two attribute lookups,
# one raising and formatting an AttributeError, for every NULL parameter (it passes only int, float,
# str and bytearray straight through). An identity adapter makes that one dict hit; rows with many
# empty columns (profiles, events) bind several times faster. The value bound is still NULL.
sqlite3.register_adapter(type(None), lambda value: value)


def connect_wal(path: Path, *, cache_kib: int = CACHE_KIB, check_same_thread: bool = True) -> sqlite3.Connection:
    """A connection in autocommit mode (see `write_transaction`) to the SQLite file at `path` in WAL
    mode, the file created private (0600) if it is missing.

    The WAL is meant to be copied by a `Checkpointer`; SQLite's automatic checkpoint stays as a
    backstop at `WAL_BACKSTOP_BYTES`. Raises sqlite3.DatabaseError for a file that is not SQLite.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        # Created here so that it is private from its first byte.
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    # The timeout is SQLite's busy timeout: how long a writer queues for the lock.
    conn = sqlite3.connect(
        path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=check_same_thread
    )
    try:
        conn.execute(f"PRAGMA page_size={PAGE_SIZE}")  # before the first write; ignored for an existing file
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA cache_size=-{cache_kib}")
        (page_size,) = conn.execute("PRAGMA page_size").fetchone()
        conn.execute(f"PRAGMA wal_autocheckpoint={WAL_BACKSTOP_BYTES // page_size}")
    except BaseException:
        conn.close()
        raise
    return conn


@contextmanager
def write_transaction(db: Database) -> Iterator[Database]:
    """BEGIN IMMEDIATE ... COMMIT on a connection opened with isolation_level=None; ROLLBACK on any error.

    IMMEDIATE takes the write lock up front, so two writers queue on busy_timeout instead of
    one failing half-way with "database is locked".
    """
    conn = db.conn
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield db
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


class Checkpointer:
    """Copies the WAL into the database file every `interval` seconds from a thread and connection of
    its own, so that no commit waits while it is done: with SQLite's automatic checkpoint the commit
    that passes the threshold copies the pages and fsyncs, and large writers (a sandbox taking bulk
    requests, an ingest of a big file) spent much of their commit time there. SQLite lets go of the
    GIL while it copies, so the copy runs on another core.

    Each round is a passive copy, which never blocks a writer and is safe beside other processes'
    connections, then a restart, which copies the little written meanwhile and starts the WAL again
    from its beginning, so the file stays small; once a round finds nothing new, the file is
    truncated, so a burst does not leave it at its largest while the process idles. The restart
    waits at most `RESTART_WAIT_MS` for the writer (and blocks the next one while it runs); if it
    cannot, the next round tries again.
    The connection's own automatic checkpoint, at `WAL_BACKSTOP_BYTES`, stays as a backstop should
    this thread fall behind.
    """

    def __init__(self, path: Path, interval: float = CHECKPOINT_INTERVAL) -> None:
        self._conn = sqlite3.connect(
            path, timeout=RESTART_WAIT_MS / 1000, isolation_level=None, check_same_thread=False
        )
        self._wal = path.with_name(path.name + "-wal")
        self._last_wal: tuple[int, int] | None = None
        self._interval = interval
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sqlite-checkpoint", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stopping.wait(self._interval):
            self.checkpoint()

    def checkpoint(self) -> None:
        try:
            # Under a steady stream of commits a passive copy never reaches the WAL's end, and SQLite
            # starts the WAL again only after a copy that did.
            self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
            wal = self._wal_stamp()
            if wal is None or wal != self._last_wal:
                self._conn.execute("PRAGMA wal_checkpoint(RESTART)")
            elif wal[0]:
                # Nothing written for a round: the writer has paused, and the file, which a restart
                # reuses rather than shrinks, gives back what a burst made it grow to.
                self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._last_wal = self._wal_stamp()
        except sqlite3.Error as exc:  # the next round retries; the backstop keeps the WAL bounded meanwhile
            log.debug("WAL checkpoint skipped: %s", exc)

    def _wal_stamp(self) -> tuple[int, int] | None:
        """The WAL file's size and modification time: unchanged for a round means nothing was written."""
        try:
            stat = self._wal.stat()
        except FileNotFoundError:
            return None
        return stat.st_size, stat.st_mtime_ns

    def close(self) -> None:
        self._stopping.set()
        self._thread.join()
        self.checkpoint()
        self._conn.close()


@dataclass(frozen=True)
class StateInfo:
    path: Path
    schema_version: str
    applied: int
    pending: int
    size_bytes: int
    tables: dict[str, int]


class Store:
    def __init__(self, path: Path, db: Database) -> None:
        self.path = path
        self.db = db
        self._checkpointer: Checkpointer | None = None  # started by `open` once the file is accepted

    @classmethod
    def open(cls, path: Path, *, migrate: bool = True) -> Store:
        """Open (creating if needed, mode 0600, WAL) and bring the schema up to date."""
        try:
            conn = connect_wal(path)
            conn.execute("PRAGMA foreign_keys=ON")
        except sqlite3.DatabaseError as exc:
            raise StateError(
                f"{path} is not a usable SQLite state file ({exc})",
                hint="Restore it from a backup, or move it aside and run `cogent db migrate` to start afresh.",
            ) from None
        store = cls(path, Database(conn))
        try:
            store._refuse_newer_schema()
            if migrate:
                store.migrate()
        except BaseException:
            store.close()
            raise
        # Only a file this version may use gets checkpointed: a refused one is left as it was found.
        store._checkpointer = Checkpointer(path)
        return store

    def close(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.close()
        self.db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _refuse_newer_schema(self) -> None:
        known = {m.name for m in migrations._migrations}
        unknown = [m.name for m in migrations.applied(self.db) if m.name not in known]
        if unknown:
            raise StateTooNewError(
                f"{self.path} was written by a newer version of cogent (schema {unknown[-1]})",
                hint="Upgrade cogent (`pip install -U cogent-cli`) before using this workspace; nothing was changed.",
            )

    def migrate(self) -> list[str]:
        """Apply pending migrations; returns their names (empty when already current)."""
        pending = [m.name for m in migrations.pending(self.db)]
        if pending:
            migrations.apply(self.db)
            log.info("state %s: applied %s", self.path, ", ".join(pending))
        return pending

    def transaction(self) -> AbstractContextManager[Database]:
        """One write transaction (BEGIN IMMEDIATE), committed on success, rolled back on error."""
        return write_transaction(self.db)

    def get_meta(self, key: str) -> str | None:
        rows = list(self.db.query("select value from meta where key = ?", [key]))
        return rows[0]["value"] if rows else None

    def set_meta(self, key: str, value: str) -> None:
        self.db["meta"].upsert({"key": key, "value": value}, pk="key")

    def info(self) -> StateInfo:
        applied = migrations.applied(self.db)
        tables = {
            name: self.db[name].count for name in sorted(self.db.table_names()) if not name.startswith(("_", "sqlite_"))
        }
        size = sum(p.stat().st_size for p in (self.path, Path(f"{self.path}-wal")) if p.exists())
        return StateInfo(
            path=self.path,
            schema_version=applied[-1].name if applied else "(blank)",
            applied=len(applied),
            pending=len(migrations.pending(self.db)),
            size_bytes=size,
            tables=tables,
        )
