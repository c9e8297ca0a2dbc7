"""Keystores: durable maps of opaque sealed blobs with compare-and-swap; they know nothing of crypto.

`base.Keystore` is the seam, `memory.MemoryKeystore` the in-memory twin, `sqlite.SqliteKeystore`
the default (one SQLite file in WAL mode with synchronous=FULL commits).
"""

from .base import Entry, Keystore
from .memory import MemoryKeystore
from .sqlite import SqliteKeystore

__all__ = ["Entry", "Keystore", "MemoryKeystore", "SqliteKeystore"]
