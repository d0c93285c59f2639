"""The state file: migrations on blank and older databases, `db migrate|info`, and newer files refused."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import stat
import threading
import time
from pathlib import Path

import pytest
from sqlite_utils import Database
from typer.testing import CliRunner

from cogent_cli.cli import app
from cogent_cli.errors import StateError, StateTooNewError
from cogent_cli.state import Store
from cogent_cli.state.migrations import migrations
from cogent_cli.state.store import PAGE_SIZE, WAL_BACKSTOP_BYTES, Checkpointer
from cogent_cli.workspace import Workspace

ALL = [m.name for m in migrations._migrations]


def applied_names(path: Path) -> list[str]:
    with sqlite3.connect(path) as conn:
        return [row[0] for row in conn.execute("select name from _sqlite_migrations order by id")]


def older_database(path: Path) -> None:
    """A state file as the first release left it: only m001 applied."""
    path.parent.mkdir(parents=True, exist_ok=True)
    db = Database(path)
    migrations.apply(db, stop_before=ALL[1:] or None)
    db.close()


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_migrations_start_with_m001_and_are_numbered_in_order():
    assert ALL[0] == "m001_initial"
    numbers = [int(name[1:4]) for name in ALL]
    assert numbers == sorted(numbers)
    assert len(set(numbers)) == len(numbers)


def test_a_blank_database_gets_every_migration_private_and_in_wal_mode(tmp_path):
    path = tmp_path / ".cogent" / "state.db"

    with Store.open(path) as store:
        assert [m.name for m in migrations.pending(store.db)] == []
        assert store.db["meta"].exists()

    assert applied_names(path) == ALL
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_store_keeps_a_page_cache_large_enough_for_bulk_ingests(tmp_path):
    with Store.open(tmp_path / "state.db") as store:
        assert store.db.execute("PRAGMA cache_size").fetchone()[0] == -64 * 1024


def test_a_new_state_file_gets_large_pages_and_an_existing_one_keeps_its_own(tmp_path):
    with Store.open(tmp_path / "new.db") as store:
        assert store.db.execute("PRAGMA page_size").fetchone()[0] == PAGE_SIZE == 16_384
        backstop = store.db.execute("PRAGMA wal_autocheckpoint").fetchone()[0]
        assert backstop * PAGE_SIZE == WAL_BACKSTOP_BYTES

    older = tmp_path / "older.db"
    with sqlite3.connect(older) as conn:
        conn.execute("PRAGMA page_size=4096")
        conn.execute("create table kept (id)")
        conn.execute("insert into kept values (1)")
    with Store.open(older) as store:
        assert store.db.execute("PRAGMA page_size").fetchone()[0] == 4096
        assert store.db.execute("PRAGMA wal_autocheckpoint").fetchone()[0] * 4096 == WAL_BACKSTOP_BYTES
        assert store.db.execute("select id from kept").fetchall() == [(1,)]


def test_an_older_database_is_brought_up_to_date_keeping_its_data(runner: CliRunner, workspace: Workspace):
    workspace.state_path.unlink()
    older_database(workspace.state_path)
    with sqlite3.connect(workspace.state_path) as conn:
        conn.execute("insert into meta (key, value) values ('client', 'acme')")
    assert applied_names(workspace.state_path) == ["m001_initial"]

    result = runner.invoke(app, ["--workspace", str(workspace.root), "db", "migrate"])

    assert result.exit_code == 0, result.output
    pending = ALL[1:]
    expected = f"Applied {len(pending)} migration(s): {', '.join(pending)}" if pending else "Schema already up to date."
    assert result.stderr.strip() == expected
    assert applied_names(workspace.state_path) == ALL
    with Store.open(workspace.state_path) as store:
        assert store.get_meta("client") == "acme"


def test_db_migrate_is_idempotent(runner: CliRunner, workspace: Workspace):
    first = runner.invoke(app, ["--workspace", str(workspace.root), "db", "migrate"])
    second = runner.invoke(app, ["--workspace", str(workspace.root), "db", "migrate"])

    assert first.exit_code == second.exit_code == 0
    assert first.stderr.strip() == second.stderr.strip() == "Schema already up to date."
    assert applied_names(workspace.state_path) == ALL


def test_db_info_shows_schema_version_row_counts_and_size(runner: CliRunner, workspace: Workspace):
    with Store.open(workspace.state_path) as store:
        store.set_meta("a", "1")
        store.set_meta("b", "2")

    text = runner.invoke(app, ["--workspace", str(workspace.root), "db", "info"])
    as_json = runner.invoke(app, ["--workspace", str(workspace.root), "db", "info", "--format", "json"])

    assert text.exit_code == as_json.exit_code == 0
    info = json.loads(as_json.stdout)
    assert info["schema_version"] == ALL[-1]
    assert info["migrations_applied"] == len(ALL)
    assert info["migrations_pending"] == 0
    assert info["tables"]["meta"] == 2
    assert info["size_bytes"] > 0
    assert info["path"] == str(workspace.state_path)
    lines = text.stdout.splitlines()
    assert lines[1] == f"schema version: {ALL[-1]} ({len(ALL)} applied, 0 pending)"
    assert any(line.split() == ["meta", "2", "rows"] for line in lines)


def test_db_info_reports_pending_migrations_of_an_older_file_without_applying_them(
    runner: CliRunner, workspace: Workspace
):
    workspace.state_path.unlink()
    older_database(workspace.state_path)

    result = runner.invoke(app, ["--workspace", str(workspace.root), "db", "info", "--format", "json"])

    assert json.loads(result.stdout)["migrations_pending"] == len(ALL) - 1
    assert applied_names(workspace.state_path) == ["m001_initial"]


@pytest.mark.parametrize("command", [["db", "migrate"], ["db", "info"]])
def test_a_state_file_from_a_newer_cogent_is_refused_and_left_untouched(
    runner: CliRunner, workspace: Workspace, command
):
    with sqlite3.connect(workspace.state_path) as conn:
        conn.execute(
            "insert into _sqlite_migrations (migration_set, name, applied_at) "
            "values ('cogent', 'm999_from_the_future', '2030-01-01')"
        )
    before = digest(workspace.state_path)

    result = runner.invoke(app, ["--workspace", str(workspace.root), *command])

    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        f"Error: {workspace.state_path} was written by a newer version of cogent (schema m999_from_the_future)",
        "Upgrade cogent (`pip install -U cogent-cli`) before using this workspace; nothing was changed.",
    ]
    assert digest(workspace.state_path) == before
    assert applied_names(workspace.state_path) == [*ALL, "m999_from_the_future"]


def test_opening_a_newer_state_file_in_the_library_raises_state_too_new(workspace: Workspace):
    with sqlite3.connect(workspace.state_path) as conn:
        conn.execute(
            "insert into _sqlite_migrations (migration_set, name, applied_at) values ('cogent', 'm999_x', '2030')"
        )

    with pytest.raises(StateTooNewError):
        Store.open(workspace.state_path)


def test_a_file_that_is_not_sqlite_is_refused_with_a_way_out(tmp_path):
    path = tmp_path / "state.db"
    path.write_bytes(b"this is a spreadsheet, honest" * 200)

    with pytest.raises(StateError) as caught:
        Store.open(path)

    assert caught.value.message.startswith(f"{path} is not a usable SQLite state file")
    assert caught.value.hint == (
        "Restore it from a backup, or move it aside and run `cogent db migrate` to start afresh."
    )


def test_a_transaction_commits_all_rows_or_none(workspace: Workspace):
    with workspace.store() as store:
        with pytest.raises(RuntimeError), store.transaction() as db:
            db["meta"].insert({"key": "half", "value": "written"})
            raise RuntimeError("crash between two writes")
        assert store.get_meta("half") is None

        with store.transaction() as db:
            db["meta"].insert({"key": "one", "value": "1"})
            db["meta"].insert({"key": "two", "value": "2"})
        assert (store.get_meta("one"), store.get_meta("two")) == ("1", "2")


def test_meta_values_can_be_replaced(workspace: Workspace):
    with workspace.store() as store:
        store.set_meta("cursor", "1")
        store.set_meta("cursor", "2")
        assert store.get_meta("cursor") == "2"
        assert store.get_meta("never-set") is None


def test_none_is_bound_as_sql_null_in_every_statement_form(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "state.db")
    try:
        conn = store.db.conn
        conn.execute("create table nulls (a, b)")
        conn.execute("insert into nulls values (?, ?)", (None, "one"))
        conn.executemany("insert into nulls values (:a, :b)", [{"a": None, "b": "two"}])
        rows = conn.execute("select typeof(a), b from nulls where a is ? order by b", (None,)).fetchall()
    finally:
        store.close()

    assert rows == [("null", "one"), ("null", "two")]


def _checkpoint_threads() -> set[threading.Thread]:
    return {thread for thread in threading.enumerate() if thread.name == "sqlite-checkpoint"}


def _rows_in_file_alone(path: Path, table: str = "events") -> int:
    """Rows the database file holds by itself, ignoring whatever is still only in its WAL."""
    with sqlite3.connect(f"file:{path}?immutable=1", uri=True) as conn:
        return conn.execute(f"select count(*) from {table}").fetchone()[0]


def _wal_writer(path: Path, table: str) -> sqlite3.Connection:
    """A WAL connection whose commits never copy the WAL themselves: only a Checkpointer does."""
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("PRAGMA journal_mode=WAL")
    writer.execute("PRAGMA wal_autocheckpoint=0")
    writer.execute(f"create table {table} (value)")
    return writer


def test_the_checkpointer_copies_committed_writes_into_the_file_while_writers_go_on(tmp_path: Path) -> None:
    path = tmp_path / "wal.db"
    writer = _wal_writer(path, "events")
    checkpointer = Checkpointer(path, interval=0.01)
    try:
        writer.executemany("insert into events values (?)", [(n,) for n in range(100)])
        deadline = time.monotonic() + 5
        while _rows_in_file_alone(path) < 100 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert _rows_in_file_alone(path) == 100
    finally:
        checkpointer.close()
        writer.close()


def test_the_checkpointer_starts_the_wal_again_while_a_writer_keeps_committing(tmp_path: Path) -> None:
    # A passive copy alone never reaches the end of a WAL that grows while it copies, and SQLite
    # starts the WAL again only after one that did: the file would grow by all that was written.
    path = tmp_path / "wal.db"
    writer = _wal_writer(path, "blobs")
    checkpointer = Checkpointer(path, interval=0.1)
    written = 0
    try:
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            writer.execute("BEGIN")
            writer.executemany("insert into blobs values (randomblob(8000))", [()] * 20)
            writer.execute("COMMIT")
            written += 20 * 8000
            time.sleep(0.002)  # between requests, say
        wal_bytes = (path.parent / "wal.db-wal").stat().st_size
    finally:
        checkpointer.close()
        writer.close()
    assert wal_bytes < written / 3


def test_the_checkpointer_gives_back_the_wals_space_once_the_writer_pauses(tmp_path: Path) -> None:
    # A restart makes the next writer start at the WAL's beginning but leaves the file at its size:
    # a long-running process idling after a burst would keep it at its largest.
    path = tmp_path / "wal.db"
    wal = tmp_path / "wal.db-wal"
    writer = _wal_writer(path, "blobs")
    checkpointer = Checkpointer(path, interval=0.01)
    try:
        writer.execute("BEGIN")
        writer.executemany("insert into blobs values (randomblob(8000))", [()] * 200)
        writer.execute("COMMIT")
        assert wal.stat().st_size > 200 * 8000
        deadline = time.monotonic() + 5
        while wal.stat().st_size and time.monotonic() < deadline:
            time.sleep(0.01)
        assert wal.stat().st_size == 0
        assert _rows_in_file_alone(path, "blobs") == 200
        writer.execute("insert into blobs values (x'00')")  # the writer goes on as before
        assert writer.execute("select count(*) from blobs").fetchone() == (201,)
    finally:
        checkpointer.close()
        writer.close()
    assert _rows_in_file_alone(path, "blobs") == 201


def test_closing_the_store_copies_its_wal_into_the_state_file(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    before = _checkpoint_threads()
    with Store.open(path) as store:
        assert len(_checkpoint_threads() - before) == 1
        store.db.conn.execute("create table readings (id)")
        store.db.conn.executemany("insert into readings values (?)", [(n,) for n in range(10)])

    assert _rows_in_file_alone(path, "readings") == 10
    assert _checkpoint_threads() - before == set()


def test_a_store_refused_at_open_leaves_no_checkpoint_thread_behind(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    Store.open(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute(
            "insert into _sqlite_migrations (migration_set, name, applied_at) values ('cogent', 'm999_future', '')"
        )

    before = _checkpoint_threads()
    with pytest.raises(StateTooNewError):
        Store.open(path)
    assert _checkpoint_threads() - before == set()
