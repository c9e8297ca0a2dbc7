"""The default Keystore: one SQLite file in WAL mode, every commit durable (synchronous=FULL).

One connection guarded by a lock serves all threads of a process; other processes may open the
same file (SQLite's locking and a busy timeout arbitrate). Compare-and-swap is a conditional
UPDATE inside an IMMEDIATE transaction.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

from ...private import prepare_sqlite
from ..errors import KeystoreConflict
from .base import Entry

_SCHEMA = "CREATE TABLE IF NOT EXISTS entries (name TEXT PRIMARY KEY, version INTEGER NOT NULL, blob BLOB NOT NULL)"


class SqliteKeystore:
    def __init__(self, path: Path) -> None:
        prepare_sqlite(path)  # 0600, and so are its -wal and -shm
        self.path = path
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), timeout=30.0, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(_SCHEMA)

    def get(self, name: str) -> Entry | None:
        with self._lock:
            row = self._db.execute("SELECT version, blob FROM entries WHERE name = ?", (name,)).fetchone()
        return Entry(name, row[0], bytes(row[1])) if row else None

    def put(self, name: str, blob: bytes, expected_version: int) -> int:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                if expected_version == 0:
                    cur = self._db.execute(
                        "INSERT OR IGNORE INTO entries (name, version, blob) VALUES (?, 1, ?)", (name, bytes(blob))
                    )
                else:
                    cur = self._db.execute(
                        "UPDATE entries SET version = version + 1, blob = ? WHERE name = ? AND version = ?",
                        (bytes(blob), name, expected_version),
                    )
                if cur.rowcount != 1:
                    raise KeystoreConflict(name)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return expected_version + 1

    def delete(self, name: str, expected_version: int) -> None:
        with self._lock:
            cur = self._db.execute("DELETE FROM entries WHERE name = ? AND version = ?", (name, expected_version))
            if cur.rowcount != 1:
                raise KeystoreConflict(name)

    def scan(self, prefix: str) -> Iterator[Entry]:
        # prefix range scan: names in [prefix, prefix + U+10FFFF)
        with self._lock:
            rows = self._db.execute(
                "SELECT name, version, blob FROM entries WHERE name >= ? AND name < ? ORDER BY name",
                (prefix, prefix + "\U0010ffff"),
            ).fetchall()
        return iter([Entry(n, v, bytes(b)) for n, v, b in rows])

    def close(self) -> None:
        with self._lock:
            self._db.close()
