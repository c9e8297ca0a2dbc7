"""The Keystore seam: a durable name -> (version, blob) map with compare-and-swap writes.

Versions start at 1 for a new entry and grow by one on each write; `expected_version=0` means
"the entry must not exist". A write that loses the race raises `KeystoreConflict`. An acknowledged
write (the call returned) survives a process kill at any later moment.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol, runtime_checkable


@dataclass(frozen=True)
class Entry:
    name: str
    version: int
    blob: bytes

    def __repr__(self) -> str:  # blobs are sealed, but keep them out of logs anyway
        return f"Entry({self.name!r}, v{self.version}, {len(self.blob)} B)"


@runtime_checkable
class Keystore(Protocol):
    def get(self, name: str) -> Entry | None: ...

    def put(self, name: str, blob: bytes, expected_version: int) -> int:
        """Write `blob` if the entry's current version is `expected_version` (0: absent); return the new version."""
        ...

    def delete(self, name: str, expected_version: int) -> None:
        """Remove the entry if its current version is `expected_version`."""
        ...

    def scan(self, prefix: str) -> Iterator[Entry]:
        """Every entry whose name starts with `prefix`, in name order."""
        ...

    def close(self) -> None: ...
