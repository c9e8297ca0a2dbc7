"""The default Keystore: one SQLite file in WAL mode, every commit durable (synchronous=FULL).

One connection guarded by a lock serves all threads of a process; other processes may open the
same file (SQLite's locking and a busy timeout arbitrate: the worker processes of one `serve`).
Compare-and-swap is a conditional UPDATE inside an IMMEDIATE transaction, which also bumps the
change counter (`clock`) and stamps the entry's name with it in `changes`. Writers are serialised
by the IMMEDIATE lock, so counter order is commit order. The counter is one indexed read: other
processes poll it (`wait_for_change` sleeps `poll_interval`).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

from ...private import prepare_sqlite
from ..errors import KeystoreConflict
from .base import Entry

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS entries (name TEXT PRIMARY KEY, version INTEGER NOT NULL, blob BLOB NOT NULL)",
    "CREATE TABLE IF NOT EXISTS clock (id INTEGER PRIMARY KEY CHECK (id = 1), counter INTEGER NOT NULL)",
    "INSERT OR IGNORE INTO clock (id, counter) VALUES (1, 0)",
    "CREATE TABLE IF NOT EXISTS changes (name TEXT PRIMARY KEY, counter INTEGER NOT NULL)",
    "CREATE INDEX IF NOT EXISTS changes_by_counter ON changes (counter)",
)


class SqliteKeystore:
    def __init__(self, path: Path, *, poll_interval: float = 0.2) -> None:
        prepare_sqlite(path)  # 0600, and so are its -wal and -shm
        self.path = path
        self.poll_interval = poll_interval
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._db = sqlite3.connect(str(path), timeout=30.0, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("BEGIN IMMEDIATE")
        try:
            for statement in _SCHEMA:
                self._db.execute(statement)
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    def get(self, name: str) -> Entry | None:
        with self._lock:
            row = self._db.execute("SELECT version, blob FROM entries WHERE name = ?", (name,)).fetchone()
        return Entry(name, row[0], bytes(row[1])) if row else None

    def _stamp(self, name: str) -> None:
        """Inside the write's transaction: bump the counter and mark `name` changed at it."""
        self._db.execute("UPDATE clock SET counter = counter + 1 WHERE id = 1")
        self._db.execute(
            "INSERT INTO changes (name, counter) SELECT ?, counter FROM clock WHERE id = 1 "
            "ON CONFLICT (name) DO UPDATE SET counter = excluded.counter", (name,),
        )

    def _write(self, name: str, sql: str, params: tuple[object, ...]) -> None:
        """One compare-and-swap statement in its own IMMEDIATE transaction: it must touch one row."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                if self._db.execute(sql, params).rowcount != 1:
                    raise KeystoreConflict(name)
                self._stamp(name)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def put(self, name: str, blob: bytes, expected_version: int) -> int:
        if expected_version == 0:
            self._write(name, "INSERT OR IGNORE INTO entries (name, version, blob) VALUES (?, 1, ?)", (name, bytes(blob)))
        else:
            self._write(name, "UPDATE entries SET version = version + 1, blob = ? WHERE name = ? AND version = ?",
                        (bytes(blob), name, expected_version))
        return expected_version + 1

    def delete(self, name: str, expected_version: int) -> None:
        self._write(name, "DELETE FROM entries WHERE name = ? AND version = ?", (name, expected_version))

    def scan(self, prefix: str) -> Iterator[Entry]:
        # prefix range scan: names in [prefix, prefix + U+10FFFF)
        with self._lock:
            rows = self._db.execute(
                "SELECT name, version, blob FROM entries WHERE name >= ? AND name < ? ORDER BY name",
                (prefix, prefix + "\U0010ffff"),
            ).fetchall()
        return iter([Entry(n, v, bytes(b)) for n, v, b in rows])

    def changes(self, after: int) -> tuple[int, list[str]]:
        with self._lock:
            (counter,) = self._db.execute("SELECT counter FROM clock WHERE id = 1").fetchone()
            if counter <= after:
                return counter, []
            rows = self._db.execute(
                "SELECT name FROM changes WHERE counter > ? AND counter <= ? ORDER BY counter", (after, counter)
            ).fetchall()
        return counter, [r[0] for r in rows]

    def wait_for_change(self, timeout: float) -> None:
        self._closed.wait(min(timeout, self.poll_interval))

    def close(self) -> None:
        self._closed.set()
        with self._lock:
            self._db.close()
