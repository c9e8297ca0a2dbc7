"""The Keystore seam: a durable name -> (version, blob) map with compare-and-swap writes and a change feed.

Versions start at 1 for a new entry and grow by one on each write; `expected_version=0` means
"the entry must not exist". A write that loses the race raises `KeystoreConflict`. An acknowledged
write (the call returned) survives a process kill at any later moment.

The change feed lets every process that caches entries (the Registry) see writes made by the
others: each write or delete bumps one keystore-wide counter inside its own transaction, writers
take the counter in commit order, and `changes(after)` names every entry written after a counter
value. `wait_for_change` blocks until another process may have written (PostgreSQL: LISTEN/NOTIFY;
SQLite: a short sleep, the counter being one indexed read), so a poll loop over the two is the
whole cache-coherence protocol.

A keystore that cannot be reached raises `KeystoreUnavailable`, which the KMS API answers as AWS
does when a dependency times out (DependencyTimeoutException, HTTP 500).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from ..errors import KmsError


class KeystoreUnavailable(KmsError):
    """The keystore did not answer in time (a database restart or failover in progress)."""

    code = "DependencyTimeoutException"
    status = 500
    message = "The system timed out while trying to fulfill the request. The request can be retried."


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

    def changes(self, after: int) -> tuple[int, list[str]]:
        """(the change counter now, the names written or deleted since counter value `after`), in counter order."""
        ...

    def wait_for_change(self, timeout: float) -> None:
        """Return after at most `timeout` seconds, early when a write may have happened (a hint, never a promise)."""
        ...

    def close(self) -> None: ...
