"""The integrity key IK and the record anchors, kept in the KMS keystore (docs/FORMAT.md §2, §15, §16).

IK is 32 random bytes, created once per keystore and shared by every proxy on it; like every
keystore entry it is sealed under the root key with its entry name as associated data, so
`kms rotate-root-key` re-seals it and keeps it, and whoever holds the backend but not the root key
does not have it. Its sub-keys (format.keys.integrity_keys) authenticate what the proxy returns
(IK_meta), its records in the backend (IK_records) and the audit log (IK_audit). It never leaves
the process: not to the backend, a log, an error or a repr.

An anchor is the latest generation of one mutable record in the backend (a bucket's default
encryption today), held here, out of the backend holder's reach: a record older than its anchor
is a replay, a missing one while anchored a deletion. Anchors only grow (compare-and-swap), also
across a bucket's deletion and re-creation.

    ring = IntegrityRing(keystore, sealer)
    keys = ring.keys()                              # IntegrityKeys(meta, records, audit); IK made on first use
    ring.anchor("bucket-encryption/b")              # 0 when never anchored
    ring.advance("bucket-encryption/b", 3)          # never lowers it

Entries: `i/integrity-key` (IK) and `i/anchor/<record name>` (u64 generation), both sealed. Two
proxies creating IK at once converge on the first one written.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path

from ..format.keys import IntegrityKeys, integrity_keys
from .errors import KeystoreConflict, RootKeyError
from .keystore import open_keystore, sqlite_path
from .keystore.base import Keystore
from .wrapping import Sealer, load_root_key, root_key_location

IK_ENTRY = "i/integrity-key"
ANCHOR_PREFIX = "i/anchor/"
IK_SIZE = 32
_ATTEMPTS = 16


class IntegrityKeyMissing(Exception):
    """What `read_integrity_keys` needs is not there (no keystore, no root key, or no IK in it)."""


class IntegrityRing:
    """IK and the anchors on one keystore. Thread-safe; IK is read (or created) once and kept."""

    def __init__(self, keystore: Keystore, sealer: Sealer, *, rand: Callable[[int], bytes] = os.urandom) -> None:
        self._store = keystore
        self._sealer = sealer
        self._rand = rand
        self._lock = threading.Lock()
        self._keys: IntegrityKeys | None = None

    def __repr__(self) -> str:
        return "IntegrityRing(<keys hidden>)"

    def keys(self, *, create: bool = True) -> IntegrityKeys:
        """The sub-keys of IK; IK is created on first use unless `create` is False
        (IntegrityKeyMissing then)."""
        with self._lock:
            if self._keys is None:
                self._keys = integrity_keys(self._load(create))
            return self._keys

    def _load(self, create: bool) -> bytes:
        for _ in range(_ATTEMPTS):
            entry = self._store.get(IK_ENTRY)
            if entry is not None:
                ik = self._sealer.open(IK_ENTRY, entry.blob)
                if len(ik) != IK_SIZE:
                    raise RootKeyError(f"keystore entry {IK_ENTRY!r} is not an integrity key")
                return ik
            if not create:
                raise IntegrityKeyMissing("the keystore holds no integrity key (no proxy of format 2 has run on it)")
            try:
                self._store.put(IK_ENTRY, self._sealer.seal(IK_ENTRY, self._rand(IK_SIZE)), 0)
            except KeystoreConflict:
                continue  # another proxy made it first: read theirs
        raise KeystoreConflict(IK_ENTRY)

    # anchors -------------------------------------------------------------------------------------
    def anchor(self, name: str) -> int:
        """The anchored generation of record `name` (0: never anchored)."""
        entry = self._store.get(ANCHOR_PREFIX + name)
        return 0 if entry is None else self._open_anchor(entry.name, entry.blob)

    def advance(self, name: str, generation: int) -> int:
        """Raise the anchor of `name` to `generation` (never lower it); the anchor after the call."""
        entry_name = ANCHOR_PREFIX + name
        for _ in range(_ATTEMPTS):
            entry = self._store.get(entry_name)
            current = 0 if entry is None else self._open_anchor(entry_name, entry.blob)
            if current >= generation:
                return current
            blob = self._sealer.seal(entry_name, generation.to_bytes(8, "big"))
            try:
                self._store.put(entry_name, blob, entry.version if entry is not None else 0)
                return generation
            except KeystoreConflict:
                continue  # another writer moved it: look again
        raise KeystoreConflict(entry_name)

    def _open_anchor(self, name: str, blob: bytes) -> int:
        raw = self._sealer.open(name, blob)
        if len(raw) != 8:
            raise RootKeyError(f"keystore entry {name!r} is not an anchor")
        return int.from_bytes(raw, "big")


def read_integrity_keys(data_dir: Path, root_key_file: Path | None = None, *, keystore_url: str | None = None,
                        sealer: Sealer | None = None) -> IntegrityKeys:
    """IK's sub-keys from the keystore `keystore_url` names (default the data dir's SQLite file) and the
    root key (the file, or `sealer` over a PKCS#11 token), read only (for `s3proxy audit verify`):
    creates nothing. IntegrityKeyMissing names what is missing; RootKeyError if the key does not fit."""
    root_path = root_key_location(data_dir, root_key_file)
    local = sqlite_path(keystore_url, Path(data_dir))
    if local is not None and not local.exists():
        raise IntegrityKeyMissing(f"no keystore at {local.resolve()}")
    if sealer is None:
        if not root_path.exists():
            raise IntegrityKeyMissing(f"no root key at {root_path.resolve()}")
        sealer = Sealer(load_root_key(root_path, create=False))
    store = open_keystore(keystore_url, Path(data_dir))
    try:
        return IntegrityRing(store, sealer).keys(create=False)
    finally:
        store.close()
