"""The workspace state file: one SQLite database owned by `Store`."""

from cogent_cli.state.store import Store

__all__ = ["Store"]
