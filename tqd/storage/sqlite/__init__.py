"""The embedded SQLite store (the default)."""

from tqd.storage.sqlite.backend import SqliteStorage

__all__ = ["SqliteStorage"]
