"""The in-memory Keystore twin: the same contract as SQLite, for tests and ephemeral runs."""

from __future__ import annotations

import threading
from collections.abc import Iterator

from ..errors import KeystoreConflict
from .base import Entry


class MemoryKeystore:
    def __init__(self) -> None:
        self._entries: dict[str, Entry] = {}
        self._lock = threading.Lock()

    def get(self, name: str) -> Entry | None:
        with self._lock:
            return self._entries.get(name)

    def put(self, name: str, blob: bytes, expected_version: int) -> int:
        with self._lock:
            current = self._entries.get(name)
            if (current.version if current else 0) != expected_version:
                raise KeystoreConflict(name)
            self._entries[name] = Entry(name, expected_version + 1, bytes(blob))
            return expected_version + 1

    def delete(self, name: str, expected_version: int) -> None:
        with self._lock:
            current = self._entries.get(name)
            if current is None or current.version != expected_version:
                raise KeystoreConflict(name)
            del self._entries[name]

    def scan(self, prefix: str) -> Iterator[Entry]:
        with self._lock:
            found = sorted((e for n, e in self._entries.items() if n.startswith(prefix)), key=lambda e: e.name)
        return iter(found)

    def close(self) -> None:
        pass
