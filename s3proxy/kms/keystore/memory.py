"""The in-memory Keystore twin: the same contract as SQLite, for tests and ephemeral runs."""

from __future__ import annotations

import threading
from collections.abc import Iterator

from ..errors import KeystoreConflict
from .base import Entry


class MemoryKeystore:
    def __init__(self) -> None:
        self._entries: dict[str, Entry] = {}
        self._changed: dict[str, int] = {}  # name -> counter value of its last write or delete
        self._counter = 0
        self._cond = threading.Condition()

    def get(self, name: str) -> Entry | None:
        with self._cond:
            return self._entries.get(name)

    def _bump(self, name: str) -> None:
        self._counter += 1
        self._changed[name] = self._counter
        self._cond.notify_all()

    def put(self, name: str, blob: bytes, expected_version: int) -> int:
        with self._cond:
            current = self._entries.get(name)
            if (current.version if current else 0) != expected_version:
                raise KeystoreConflict(name)
            self._entries[name] = Entry(name, expected_version + 1, bytes(blob))
            self._bump(name)
            return expected_version + 1

    def delete(self, name: str, expected_version: int) -> None:
        with self._cond:
            current = self._entries.get(name)
            if current is None or current.version != expected_version:
                raise KeystoreConflict(name)
            del self._entries[name]
            self._bump(name)

    def scan(self, prefix: str) -> Iterator[Entry]:
        with self._cond:
            found = sorted((e for n, e in self._entries.items() if n.startswith(prefix)), key=lambda e: e.name)
        return iter(found)

    def changes(self, after: int) -> tuple[int, list[str]]:
        with self._cond:
            return self._counter, [n for n, c in sorted(self._changed.items(), key=lambda nc: nc[1]) if c > after]

    def wait_for_change(self, timeout: float) -> None:
        with self._cond:
            self._cond.wait(timeout)

    def close(self) -> None:
        with self._cond:
            self._cond.notify_all()
