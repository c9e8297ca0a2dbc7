"""Keystores: durable maps of opaque sealed blobs with compare-and-swap and a change feed; they know nothing of crypto.

`base.Keystore` is the seam, `memory.MemoryKeystore` the in-memory twin, `sqlite.SqliteKeystore`
the embedded default (one SQLite file in WAL mode with synchronous=FULL commits) and
`postgres.PostgresKeystore` the shared one for many proxies. `open_keystore` picks one from the
`keystore_url` setting.
"""

from __future__ import annotations

import urllib.parse
from pathlib import Path

from .base import Entry, Keystore, KeystoreUnavailable
from .memory import MemoryKeystore
from .sqlite import SqliteKeystore

__all__ = ["Entry", "Keystore", "KeystoreUnavailable", "MemoryKeystore", "SqliteKeystore", "default_path",
           "open_keystore", "sqlite_path"]

SCHEMES = ("sqlite", "postgresql", "postgres")


def default_path(data_dir: Path) -> Path:
    return Path(data_dir) / "kms" / "keystore.sqlite3"


def sqlite_path(url: str | None, data_dir: Path) -> Path | None:
    """The SQLite file a keystore URL names (the default when empty), or None for a database server.

    `sqlite:///relative/path` and `sqlite:////absolute/path`, as SQLAlchemy spells them."""
    if not url:
        return default_path(data_dir)
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "sqlite":
        return None
    if parts.netloc or not parts.path.startswith("/") or len(parts.path) < 2 or parts.query or parts.fragment:
        raise ValueError("a SQLite keystore URL is sqlite:///relative/path or sqlite:////absolute/path")
    return Path(urllib.parse.unquote(parts.path[1:]))


def check_url(url: str) -> str:
    """`url` if it names a keystore this build can open (validation for the setting), else ValueError."""
    scheme = urllib.parse.urlsplit(url).scheme
    if scheme not in SCHEMES:
        raise ValueError("must be sqlite:///PATH or postgresql://... (a libpq URL)")
    sqlite_path(url, Path("."))
    return url


def open_keystore(url: str | None, data_dir: Path) -> Keystore:
    """The keystore `url` names: empty or sqlite:/// for a SQLite file, postgresql:// for a shared database."""
    path = sqlite_path(url, data_dir)
    if path is not None:
        return SqliteKeystore(path)
    from .postgres import PostgresKeystore  # psycopg is an optional extra

    return PostgresKeystore(str(url))
