"""Keystore care: encrypted, verifiable backups, restore, and root-key rotation without downtime.

Backup archive (all integers big-endian):

    "S3PXKMS1" || salt(16) || nonce(12) || AES-256-GCM(K, nonce, payload, aad = the 36 header bytes)
    K       = scrypt(passphrase, salt, n=2^15, r=8, p=1, 32 bytes)
    payload = u32 len(manifest) || manifest (UTF-8 JSON) || u64 len(keystore) || keystore (an
              SQLite database file) [|| root keyring, when the manifest says "root_key": true]

The manifest names the format, the time, the number of entries and the SHA-256 of the keystore
bytes, so `verify` checks an archive end to end without touching the live keystore. Key material
inside the keystore stays sealed under the root key; the archive carries the root keyring only
when asked (`--include-root-key`), because an archive plus its passphrase must then be guarded like
the root key itself.

Both keystores: a SQLite keystore is copied with SQLite's online backup API; a PostgreSQL keystore
is exported entry by entry (name, version, sealed blob: one consistent snapshot, one SELECT) into
the same SQLite layout, so archives look alike and restore either way. Restoring into PostgreSQL
replaces every entry in one transaction and announces each through the change feed, so running
proxies pick the restored records up within the coherence bound. The database's own backups
(pg_dump, base backups with WAL archiving) stay the operator's tool for the rest of the server.

Root-key rotation: `rotate` writes the root key file as a keyring (new key first, the old ones
after it), then re-seals every keystore entry under the new key with compare-and-swap. A running
proxy keeps serving from the records it holds in memory; anything it writes meanwhile is sealed
under a key still in the keyring. A proxy reads its root key file again when it meets a record it
cannot open, so proxies sharing one keystore need the new keyring in their root key file (one
mounted secret, or a copy on each host) before records re-sealed elsewhere reach them; until then
they keep the records they hold. After every proxy has the keyring, `finish` re-seals whatever is
left and drops the old keys from the file.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import sqlite3
import struct
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from ..private import make_dir, open_file, write_file
from .errors import KeystoreConflict
from .keystore import Entry, Keystore, open_keystore, sqlite_path
from .wrapping import ROOT_KEY_BYTES, Sealer, load_root_key, root_key_location, write_root_key

MAGIC = b"S3PXKMS1"
_HEADER = len(MAGIC) + 16 + 12
FORMAT = "s3proxy-kms-backup/1"


class BackupError(Exception):
    """The archive is damaged, the passphrase is wrong, or a restore would overwrite a keystore."""


@dataclass(frozen=True)
class Manifest:
    format: str
    created: str
    entries: int
    keystore_sha256: str
    root_key: bool


def keystore_path(data_dir: Path, keystore_url: str | None = None) -> Path | None:
    """The SQLite keystore file, or None when the keystore is a PostgreSQL database."""
    return sqlite_path(keystore_url, Path(data_dir))


def _kdf(passphrase: bytes, salt: bytes) -> bytes:
    if len(passphrase) < 12:
        raise BackupError("the passphrase must be at least 12 bytes")
    return Scrypt(salt=salt, length=32, n=2**15, r=8, p=1).derive(passphrase)


def _snapshot(db_path: Path) -> bytes:
    """A consistent copy of the live SQLite keystore (the online backup API, safe beside writers)."""
    if not db_path.exists():
        raise BackupError(f"no keystore at {db_path}")
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "keystore.sqlite3"
        src, dst = sqlite3.connect(db_path), sqlite3.connect(copy)
        try:
            src.backup(dst)
        finally:
            dst.close()
            src.close()
        return copy.read_bytes()


def _export(keystore_url: str, data_dir: Path) -> bytes:
    """Every entry of a database keystore, as a SQLite keystore file's bytes (versions kept)."""
    store = open_keystore(keystore_url, data_dir)
    try:
        entries = list(store.scan(""))
    finally:
        store.close()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "keystore.sqlite3"
        conn = sqlite3.connect(path)
        try:
            conn.execute("CREATE TABLE entries (name TEXT PRIMARY KEY, version INTEGER NOT NULL, blob BLOB NOT NULL)")
            conn.executemany("INSERT INTO entries VALUES (?, ?, ?)", [(e.name, e.version, e.blob) for e in entries])
            conn.commit()
        finally:
            conn.close()
        return path.read_bytes()


def _archived_entries(db: bytes) -> list[Entry]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "k.sqlite3"
        path.write_bytes(db)
        conn = sqlite3.connect(path)
        try:
            rows = conn.execute("SELECT name, version, blob FROM entries ORDER BY name").fetchall()
        finally:
            conn.close()
    return [Entry(n, v, bytes(b)) for n, v, b in rows]


def _count_entries(db: bytes) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "k.sqlite3"
        path.write_bytes(db)
        conn = sqlite3.connect(path)
        try:
            return int(conn.execute("SELECT COUNT(*) FROM entries").fetchone()[0])
        except sqlite3.DatabaseError:
            raise BackupError("the archived keystore is not a readable keystore database") from None
        finally:
            conn.close()


def backup(data_dir: Path, out: Path, passphrase: bytes, *, root_key_file: Path | None = None,
           include_root_key: bool = False, rand: Callable[[int], bytes] = os.urandom,
           clock: Callable[[], float] | None = None, keystore_url: str | None = None) -> Manifest:
    path = keystore_path(data_dir, keystore_url)
    db = _snapshot(path) if path is not None else _export(str(keystore_url), Path(data_dir))
    keyring = load_root_key(root_key_location(data_dir, root_key_file), create=False) if include_root_key else b""
    now = dt.datetime.fromtimestamp(clock() if clock else dt.datetime.now().timestamp(), dt.UTC)
    manifest = Manifest(FORMAT, now.isoformat(), _count_entries(db), hashlib.sha256(db).hexdigest(), include_root_key)
    meta = json.dumps(manifest.__dict__, sort_keys=True).encode()
    payload = struct.pack(">I", len(meta)) + meta + struct.pack(">Q", len(db)) + db + keyring
    salt, nonce = rand(16), rand(12)
    header = MAGIC + salt + nonce
    sealed = header + AESGCM(_kdf(passphrase, salt)).encrypt(nonce, payload, header)
    tmp = out.with_name(out.name + ".partial")
    fd = open_file(tmp)
    try:
        os.write(fd, sealed)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, out)
    return manifest


def open_archive(path: Path, passphrase: bytes) -> tuple[Manifest, bytes, bytes]:
    """(manifest, keystore database bytes, root keyring or b''), all checked."""
    data = Path(path).read_bytes()
    if len(data) < _HEADER + 16 or not data.startswith(MAGIC):
        raise BackupError(f"{path} is not an s3proxy KMS backup")
    header, salt, nonce = data[:_HEADER], data[len(MAGIC) : len(MAGIC) + 16], data[len(MAGIC) + 16 : _HEADER]
    try:
        payload = AESGCM(_kdf(passphrase, salt)).decrypt(nonce, data[_HEADER:], header)
    except InvalidTag:
        raise BackupError("wrong passphrase, or the archive was altered") from None
    (meta_len,) = struct.unpack(">I", payload[:4])
    manifest = Manifest(**json.loads(payload[4 : 4 + meta_len]))
    (db_len,) = struct.unpack(">Q", payload[4 + meta_len : 12 + meta_len])
    db = payload[12 + meta_len : 12 + meta_len + db_len]
    keyring = payload[12 + meta_len + db_len :]
    if manifest.format != FORMAT or hashlib.sha256(db).hexdigest() != manifest.keystore_sha256:
        raise BackupError("the archive's manifest does not match its keystore")
    if _count_entries(db) != manifest.entries or bool(keyring) != manifest.root_key or len(keyring) % ROOT_KEY_BYTES:
        raise BackupError("the archive's manifest does not match its contents")
    return manifest, db, keyring


def restore(path: Path, passphrase: bytes, data_dir: Path, *, root_key_file: Path | None = None, force: bool = False,
            keystore_url: str | None = None) -> Manifest:
    manifest, db, keyring = open_archive(path, passphrase)
    target = keystore_path(data_dir, keystore_url)
    root_path = root_key_location(data_dir, root_key_file)
    if target is None:
        _restore_into_database(str(keystore_url), Path(data_dir), _archived_entries(db), force=force)
    else:
        if target.exists() and not force:
            raise BackupError(f"a keystore already exists at {target}; pass --force to replace it")
        make_dir(target.parent)
        for suffix in ("-wal", "-shm"):  # a replaced database must not meet the old one's journal
            Path(str(target) + suffix).unlink(missing_ok=True)
        tmp = target.with_name(target.name + ".restoring")
        write_file(tmp, db, fsync=True)
        os.replace(tmp, target)
    if keyring and (force or not root_path.exists()):
        write_root_key(root_path, keyring)
    check_root_key(data_dir, root_path, keystore_url)
    return manifest


def _restore_into_database(keystore_url: str, data_dir: Path, entries: list[Entry], *, force: bool) -> None:
    from .keystore.postgres import PostgresKeystore

    store = open_keystore(keystore_url, data_dir)
    try:
        assert isinstance(store, PostgresKeystore)
        if next(iter(store.scan("")), None) is not None and not force:
            raise BackupError("the PostgreSQL keystore is not empty; pass --force to replace it")
        store.replace_all(entries)
    finally:
        store.close()


def _open(data_dir: Path, keystore_url: str | None) -> Keystore:
    return open_keystore(keystore_url, Path(data_dir))


def check_root_key(data_dir: Path, root_path: Path, keystore_url: str | None = None) -> None:
    """RootKeyError unless every keystore entry opens under the root keyring."""
    sealer = Sealer(load_root_key(root_path, create=False))
    store = _open(data_dir, keystore_url)
    try:
        for entry in store.scan(""):
            sealer.open(entry.name, entry.blob)
    finally:
        store.close()


def rotate_root_key(data_dir: Path, root_key_file: Path | None = None, *, rand: Callable[[int], bytes] = os.urandom,
                    keystore_url: str | None = None) -> int:
    """New root key first in the keyring, every entry re-sealed under it; the count re-sealed."""
    root_path = root_key_location(data_dir, root_key_file)
    keyring = load_root_key(root_path, create=False)
    check_root_key(data_dir, root_path, keystore_url)  # never rotate a keystore the current keyring cannot open
    write_root_key(root_path, rand(ROOT_KEY_BYTES) + keyring[: ROOT_KEY_BYTES * 7])
    return _reseal(data_dir, root_path, keystore_url)


def finish_rotation(data_dir: Path, root_key_file: Path | None = None, *, keystore_url: str | None = None) -> int:
    """Re-seal what is left under the current key, then keep only that key in the file."""
    root_path = root_key_location(data_dir, root_key_file)
    count = _reseal(data_dir, root_path, keystore_url)
    write_root_key(root_path, load_root_key(root_path, create=False)[:ROOT_KEY_BYTES])
    check_root_key(data_dir, root_path, keystore_url)
    return count


def _reseal(data_dir: Path, root_path: Path, keystore_url: str | None) -> int:
    sealer = Sealer(load_root_key(root_path, create=False))
    store = _open(data_dir, keystore_url)
    count = 0
    try:
        for entry in list(store.scan("")):
            while True:
                record, index = sealer.open_with(entry.name, entry.blob)
                if index == 0:
                    break
                try:
                    store.put(entry.name, sealer.seal(entry.name, record), entry.version)
                    count += 1
                    break
                except KeystoreConflict:  # a running proxy wrote it meanwhile: take its version again
                    fresh = store.get(entry.name)
                    if fresh is None:
                        break
                    entry = fresh
    finally:
        store.close()
    return count
