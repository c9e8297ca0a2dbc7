"""The Registry: every key and alias record, cached unsealed in memory over the sealed Keystore.

Entry names: `k/<key id>` (a key record, its material included), `a/<alias name>` (alias ->
key id), `s/<custom key store id>` (a custom key store: its PKCS#11 token and the token's PIN,
custom_stores.py), `m/root-check` (proves the root key opens this keystore). Every blob is sealed whole
under the root key with its entry name as AAD, so the keystore sees nothing but opaque bytes.

The cache holds every record unsealed, so cryptographic calls never touch the keystore. Many
processes may share one keystore (worker processes over one SQLite file, proxies over one
PostgreSQL database); the cache stays coherent three ways:
- a miss reads through: a key or alias created anywhere is usable everywhere at once;
- `refresh` applies the keystore's change feed (every entry written or deleted since the last
  counter seen); the KeyService's watcher thread runs it whenever the keystore signals a change,
  so a change made elsewhere shows here within the keystore's poll bound (docs/SCALING.md);
- writes are compare-and-swap against the cached version; a lost race re-reads and re-applies.
Every change seen, local or remote, is announced to the `on_change` listeners with the key id
(caches derived from a key, such as S3 bucket keys, drop what they hold for it).
Time-driven changes go through `due`: a key past its deletion date is removed, a key past its
automatic rotation date gets a new version of material, and imported material past its ValidTo is
dropped (the key becomes PendingImport), on the first access after the date.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from . import keys, lifecycle
from .errors import AlreadyExistsException, KeystoreConflict, RootKeyError
from .keystore.base import Entry, Keystore
from .wrapping import Sealer

log = logging.getLogger("s3proxy.kms")

_ROOT_CHECK = "m/root-check"
# what a miss may read through for: key ids are UUIDs, alias names follow AWS's pattern; anything
# else cannot exist, so it never costs a keystore round trip
_KEY_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_ALIAS = re.compile(r"alias/[a-zA-Z0-9/_-]{1,250}")
_STORE_ID = re.compile(r"cks-[0-9a-f]{17}")
_ROOT_CHECK_TEXT = b"s3proxy keystore root key check v1"


@dataclass(frozen=True)
class KeyRecord:
    key_id: str
    arn: str
    account_id: str
    created: float
    key_spec: str
    key_usage: str
    state: str
    policy: str
    materials: tuple[bytes, ...] = field(repr=False)  # version n is materials[n-1]
    description: str = ""
    origin: str = "AWS_KMS"
    key_manager: str = "CUSTOMER"  # CUSTOMER | AWS | SERVICE (the proxy's own SSE-S3 key: hidden from the API)
    deletion_date: float | None = None
    pending_window: int | None = None
    tags: tuple[tuple[str, str], ...] = ()
    rotation_enabled: bool = False
    rotation_period: int | None = None
    next_rotation: float | None = None
    on_demand_started: float | None = None
    rotations: tuple[tuple[int, float, str], ...] = ()  # (material version, date, AUTOMATIC|ON_DEMAND)
    grants: tuple[dict[str, Any], ...] = ()
    # imported material (Origin EXTERNAL, importing.py): its expiry, a fingerprint, the pending import parameters
    expiration_model: str | None = None
    valid_to: float | None = None
    material_check: str = ""
    import_parameters: dict[str, Any] | None = field(default=None, repr=False)
    custom_key_store_id: str | None = None  # a key whose material lives in a PKCS#11 key store (custom_stores.py)

    @property
    def version(self) -> int:
        """The current version of the material; a key in a custom key store has one, in its token."""
        return len(self.materials) if self.custom_key_store_id is None else 1

    def material_id(self, version: int | None = None) -> str:
        """A non-secret id for one version of the material (AWS's KeyMaterialId is 64 hex digits)."""
        return hashlib.sha256(f"{self.key_id}/{version or self.version}".encode()).hexdigest()

    def without_material(self) -> KeyRecord:
        """This record with its imported material gone: PendingImport (unless it waits for deletion)."""
        state = self.state if self.state == lifecycle.PENDING_DELETION else lifecycle.PENDING_IMPORT
        return replace(self, materials=(), state=state, valid_to=None)

    def to_bytes(self) -> bytes:
        d = dataclasses.asdict(self)
        d["materials"] = [base64.b64encode(m).decode() for m in self.materials]
        return json.dumps(d, separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> KeyRecord:
        d = json.loads(data)
        d["materials"] = tuple(base64.b64decode(m) for m in d["materials"])
        d["tags"] = tuple(tuple(t) for t in d["tags"])
        d["rotations"] = tuple(tuple(r) for r in d["rotations"])
        d["grants"] = tuple(d["grants"])
        return cls(**d)


@dataclass(frozen=True)
class AliasRecord:
    name: str
    target: str
    created: float
    updated: float


@dataclass(frozen=True)
class StoreRecord:
    """A custom key store of type AWS_CLOUDHSM: a PKCS#11 token (custom_stores.py). `password` is the token's
    user PIN (KeyStorePassword): kept only in this record, which the keystore holds sealed like every other."""

    store_id: str
    account_id: str
    name: str
    cluster_id: str  # CloudHsmClusterId: a pkcs11: URI naming the token, or a token label
    trust_anchor: str
    password: str = field(repr=False)
    created: float
    connection_state: str = "DISCONNECTED"  # CONNECTED | DISCONNECTED | FAILED (as asked; not the token's health)
    error_code: str | None = None  # ConnectionErrorCode of the last failed ConnectCustomKeyStore
    store_type: str = "AWS_CLOUDHSM"

    def to_bytes(self) -> bytes:
        return json.dumps(dataclasses.asdict(self), separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> StoreRecord:
        return cls(**json.loads(data))


class Registry:
    """The cached, sealed view of a keystore. Thread-safe."""

    def __init__(
        self, keystore: Keystore, sealer: Sealer, *,
        clock: Callable[[], float] = time.time, rand: Callable[[int], bytes] = os.urandom,
    ) -> None:
        self._store = keystore
        self._sealer = sealer
        self._clock = clock
        self._rand = rand
        self._lock = threading.RLock()
        self._keys: dict[str, tuple[int, KeyRecord]] = {}
        self._aliases: dict[str, tuple[int, AliasRecord]] = {}
        self._stores: dict[str, tuple[int, StoreRecord]] = {}
        self._listeners: list[Callable[[str], None]] = []
        self._purging: list[Callable[[KeyRecord], None]] = []
        self._check_root()
        self._cursor = keystore.changes(0)[0]  # before the scan: what changes during it is applied again later
        for e in keystore.scan("k/"):
            self._keys[e.name[2:]] = (e.version, self._open_key(e.name, e.blob))
        for e in keystore.scan("a/"):
            self._aliases[e.name[2:]] = (e.version, self._open_alias(e.name, e.blob))
        for e in keystore.scan("s/"):
            self._stores[e.name[2:]] = (e.version, StoreRecord.from_bytes(self._sealer.open(e.name, e.blob)))

    def _open_key(self, name: str, blob: bytes) -> KeyRecord:
        return KeyRecord.from_bytes(self._sealer.open(name, blob))

    def _open_alias(self, name: str, blob: bytes) -> AliasRecord:
        return AliasRecord(**json.loads(self._sealer.open(name, blob)))

    # coherence --------------------------------------------------------------------------------
    def on_change(self, callback: Callable[[str], None]) -> Callable[[], None]:
        """Call `callback(key_id)` after any change to a key record (its state, policy, grants, material),
        made here or seen from elsewhere; returns the unsubscribe. A listener's failure is logged."""
        self._listeners.append(callback)
        return lambda: self._listeners.remove(callback)

    def on_purge(self, callback: Callable[[KeyRecord], None]) -> None:
        """Call `callback(record)` when a key's waiting period is over, just before its record is destroyed (by the
        process that destroys it): to destroy what of the key lives elsewhere. It must not raise."""
        self._purging.append(callback)

    def _announce(self, key_ids: list[str]) -> None:
        for key_id in key_ids:
            for callback in list(self._listeners):
                try:
                    callback(key_id)
                except Exception:  # a listener's failure must not stop the others or the writer
                    log.exception("a key-change listener failed for %s", key_id)

    def refresh(self) -> int:
        """Apply every keystore change made since the last refresh (by any process); the number applied."""
        changed: list[str] = []
        # the reads happen outside the lock, so writers here are not held up by them ...
        counter, names = self._store.changes(self._cursor)
        fetched = [(name, self._store.get(name)) for name in names]
        with self._lock:
            for name, entry in fetched:
                table = self._table(name)
                held = table.get(name[2:]) if table is not None else None
                if held is None or entry is None or entry.version < held[0]:
                    # ... and one that may be older than the cache is read again under the lock: this process
                    # may have written or deleted it since (or it was deleted and made again: versions restart)
                    entry = self._store.get(name)
                applied = self._apply(name, entry)
                if applied and name.startswith("k/"):
                    changed.append(name[2:])
                elif applied and name.startswith("s/"):  # a store connected or disconnected elsewhere: its keys' state changed
                    changed += self._store_keys(name[2:])
            self._cursor = max(self._cursor, counter)
        self._announce(changed)
        return len(names)

    def _apply(self, name: str, entry: Entry | None) -> bool:
        """Make the cached record `entry` (None: deleted); the caller holds the lock and knows the entry
        is at least as new as the cache (read under the lock, or read after the change feed named it
        and not older than what is held; versions alone cannot tell: a name deleted and created
        again starts over at 1)."""
        kind, ident = name[:2], name[2:]
        table = self._table(name)
        if table is None:
            return False  # m/root-check: nothing cached
        if entry is None:
            return table.pop(ident, None) is not None
        try:
            record: Any = (self._open_key(name, entry.blob) if kind == "k/" else self._open_alias(name, entry.blob)
                           if kind == "a/" else StoreRecord.from_bytes(self._sealer.open(name, entry.blob)))
        except RootKeyError:  # sealed under a root key this process lacks (a rotation elsewhere): keep what it holds
            log.error("keystore entry %s was re-sealed under a root key this process does not have", name)
            return False
        held = table.get(ident)
        table[ident] = (entry.version, record)
        return held is None or held[1] != record  # this process's own writes come back unchanged

    def _table(self, name: str) -> dict[str, Any] | None:
        tables: dict[str, dict[str, Any]] = {"k/": self._keys, "a/": self._aliases, "s/": self._stores}
        return tables.get(name[:2])

    def _read_through(self, name: str) -> bool:
        """A cache miss: read the entry (under the lock, so a refresh cannot interleave) and cache it."""
        with self._lock:
            entry = self._store.get(name)
            if entry is None:
                return False
            self._apply(name, entry)  # False when the watcher cached it meanwhile: found all the same
            return True

    def _check_root(self) -> None:
        entry = self._store.get(_ROOT_CHECK)
        if entry is None:
            try:
                self._store.put(_ROOT_CHECK, self._sealer.seal(_ROOT_CHECK, _ROOT_CHECK_TEXT), 0)
            except KeystoreConflict:
                entry = self._store.get(_ROOT_CHECK)
        if entry is not None:
            try:
                ok = self._sealer.open(_ROOT_CHECK, entry.blob) == _ROOT_CHECK_TEXT
            except RootKeyError:
                ok = False
            if not ok:
                raise RootKeyError("the root key does not match this keystore (wrong S3PROXY_ROOT_KEY_FILE?)")

    # keys -------------------------------------------------------------------------------------
    def _cached(self, name: str, pattern: re.Pattern[str]) -> Any:
        """The cached record of entry `name`, read through on a miss when its id could exist."""
        table = self._table(name)
        assert table is not None
        found = table.get(name[2:])
        if found is None and pattern.fullmatch(name[2:]) and self._read_through(name):
            found = table.get(name[2:])
        return found[1] if found else None

    def _store_keys(self, store_id: str) -> list[str]:
        return [r.key_id for _, r in self._keys.values() if r.custom_key_store_id == store_id]

    def key(self, key_id: str) -> KeyRecord | None:
        found: KeyRecord | None = self._cached("k/" + key_id, _KEY_ID)
        return found

    def keys(self) -> list[KeyRecord]:
        with self._lock:
            return [r for _, r in sorted(self._keys.values(), key=lambda vr: (vr[1].created, vr[1].key_id))]

    def add_key(self, record: KeyRecord) -> None:
        name = "k/" + record.key_id
        with self._lock:
            version = self._store.put(name, self._sealer.seal(name, record.to_bytes()), 0)
            self._keys[record.key_id] = (version, record)
        self._announce([record.key_id])

    def update_key(self, key_id: str, change: Callable[[KeyRecord], KeyRecord]) -> KeyRecord:
        """Apply `change` to the current record and store it (compare-and-swap; re-reads on conflict)."""
        name = "k/" + key_id
        with self._lock:
            if key_id not in self._keys:
                self._reload_key(key_id)
            for _ in range(5):
                version, current = self._keys[key_id]
                new = change(current)
                try:
                    stored = self._store.put(name, self._sealer.seal(name, new.to_bytes()), version)
                except KeystoreConflict:
                    self._reload_key(key_id)
                    continue
                self._keys[key_id] = (stored, new)
                break
            else:
                raise KeystoreConflict(name)
        self._announce([key_id])
        return new

    def _reload_key(self, key_id: str) -> None:
        e = self._store.get("k/" + key_id)
        if e is None:
            self._keys.pop(key_id, None)
            raise KeyError(key_id)
        self._keys[key_id] = (e.version, KeyRecord.from_bytes(self._sealer.open(e.name, e.blob)))

    def due(self, record: KeyRecord) -> KeyRecord | None:
        """Carry out what time has made due: deletion at the end of the waiting period, automatic rotation."""
        now = self._clock()
        if record.state == lifecycle.PENDING_DELETION and record.deletion_date is not None and record.deletion_date <= now:
            if self.key(record.key_id) is not None:
                # material kept elsewhere (a token) goes first; outside the lock, which the callback's own locks
                # must never wait inside (it may run twice, in two threads: destroying what is gone is a no-op)
                for callback in self._purging:
                    callback(record)
            with self._lock:
                if self.key(record.key_id) is not None:
                    self.remove_key(record.key_id)
            return None
        if record.valid_to is not None and record.valid_to <= now and record.materials:  # imported material expired
            return self.update_key(record.key_id, lambda r: r.without_material() if r.valid_to == record.valid_to else r)
        if record.rotation_enabled and record.next_rotation is not None and record.next_rotation <= now:
            return self.update_key(record.key_id, lambda r: self.rotated(r, "AUTOMATIC", now))
        return record

    def rotated(self, r: KeyRecord, kind: str, now: float) -> KeyRecord:
        """`r` with one more version of key material (the old ones stay to decrypt old blobs)."""
        if kind == "AUTOMATIC":
            if not (r.rotation_enabled and r.next_rotation is not None and r.next_rotation <= now):
                return r  # another thread rotated first
            nxt = r.next_rotation
            while nxt <= now:
                nxt += (r.rotation_period or 365) * 86400
            next_rotation: float | None = nxt
        else:
            next_rotation = r.next_rotation
        return replace(
            r, materials=r.materials + (keys.generate_material(r.key_spec, self._rand),),
            rotations=r.rotations + ((len(r.materials) + 1, now, kind),), next_rotation=next_rotation,
        )

    def remove_key(self, key_id: str) -> None:
        """Destroy a key record and every alias that points at it."""
        with self._lock:
            for alias in [a for a in self.aliases() if a.target == key_id]:
                self.remove_alias(alias.name)
            version, _ = self._keys[key_id]
            try:
                self._store.delete("k/" + key_id, version)
            except KeystoreConflict:
                pass  # already gone (another process purged it), or changed: the change feed tells
            self._keys.pop(key_id, None)
        self._announce([key_id])

    # custom key stores -----------------------------------------------------------------------
    def store(self, store_id: str, *, fresh: bool = False) -> StoreRecord | None:
        """The store's record from the cache; `fresh`: read from the keystore now (a store operation must not act
        on a state another process changed a moment ago)."""
        if fresh and _STORE_ID.fullmatch(store_id):
            with self._lock:
                changed = self._apply("s/" + store_id, self._store.get("s/" + store_id))
                keys = self._store_keys(store_id) if changed else []
            self._announce(keys)
        found: StoreRecord | None = self._cached("s/" + store_id, _STORE_ID)
        return found

    def stores(self) -> list[StoreRecord]:
        with self._lock:
            return [s for _, s in sorted(self._stores.values(), key=lambda vs: (vs[1].created, vs[1].store_id))]

    def put_store(self, record: StoreRecord, *, create: bool = False, expected: StoreRecord | None = None) -> None:
        """Store a new record (`create`), or replace `expected` (KeystoreConflict if the record changed since)."""
        name = "s/" + record.store_id
        with self._lock:
            held = self._stores.get(record.store_id)
            if not create and (held is None or held[1] != expected):
                raise KeystoreConflict(name)
            version = self._store.put(name, self._sealer.seal(name, record.to_bytes()), 0 if create else held[0])  # type: ignore[index]
            self._stores[record.store_id] = (version, record)
            changed = self._store_keys(record.store_id)
        self._announce(changed)

    def remove_store(self, store_id: str) -> None:
        with self._lock:
            version, _ = self._stores.pop(store_id)
            try:
                self._store.delete("s/" + store_id, version)
            except KeystoreConflict:
                pass

    # aliases ----------------------------------------------------------------------------------
    def alias(self, name: str) -> AliasRecord | None:
        found: AliasRecord | None = self._cached("a/" + name, _ALIAS)
        return found

    def aliases(self) -> list[AliasRecord]:
        with self._lock:
            return [a for _, a in sorted(self._aliases.values(), key=lambda va: va[1].name)]

    def put_alias(self, alias: AliasRecord, *, create: bool) -> None:
        name = "a/" + alias.name
        with self._lock:
            if not create and alias.name not in self._aliases:
                self._read_through(name)
            expected = 0 if create else self._aliases[alias.name][0]
            if create and alias.name in self._aliases:
                raise AlreadyExistsException(f"An alias with the name {alias.name} already exists")
            try:
                version = self._store.put(name, self._sealer.seal(name, json.dumps(dataclasses.asdict(alias)).encode()), expected)
            except KeystoreConflict:
                raise AlreadyExistsException(f"Alias {alias.name} was changed concurrently") from None
            self._aliases[alias.name] = (version, alias)

    def remove_alias(self, alias_name: str) -> None:
        with self._lock:
            version, _ = self._aliases.pop(alias_name)
            try:
                self._store.delete("a/" + alias_name, version)
            except KeystoreConflict:
                pass
