"""Pull cursors: where each (system, stream) stopped, so the next pull continues from there."""

from __future__ import annotations

from datetime import UTC, datetime

from cogent_cli.state import Store


def get_cursor(store: Store, system: str, stream: str) -> str | None:
    row = store.db.conn.execute(
        "SELECT value FROM cursors WHERE system = ? AND stream = ?", (system, stream)
    ).fetchone()
    return row[0] if row else None


def set_cursor(store: Store, system: str, stream: str, value: str) -> None:
    """Persist a cursor; call it in the same transaction as the inbox rows it covers when you can."""
    store.db.conn.execute(
        "INSERT INTO cursors (system, stream, value, updated_at) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (system, stream) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
        (system, stream, value, datetime.now(UTC).isoformat()),
    )


def all_cursors(store: Store) -> dict[tuple[str, str], str]:
    return {(s, n): v for s, n, v in store.db.conn.execute("SELECT system, stream, value FROM cursors")}
