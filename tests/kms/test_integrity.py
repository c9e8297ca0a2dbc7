"""The integrity key IK and the record anchors in the keystore (kms/integrity.py, FORMAT.md §2, §15):
created once and shared by every service on the keystore, kept through a root-key rotation, never
shown; anchors only grow."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from s3proxy.kms import care
from s3proxy.kms.errors import RootKeyError
from s3proxy.kms.integrity import IK_ENTRY, IntegrityKeyMissing, IntegrityRing, read_integrity_keys
from s3proxy.kms.keystore.memory import MemoryKeystore
from s3proxy.kms.keystore.sqlite import SqliteKeystore
from s3proxy.kms.service import KeyService
from s3proxy.kms.wrapping import Sealer

ROOT = bytes(range(32))


def test_ik_is_made_once_sealed_and_shared_by_every_ring_on_the_keystore() -> None:
    store = MemoryKeystore()
    first = IntegrityRing(store, Sealer(ROOT)).keys()
    assert IntegrityRing(store, Sealer(ROOT)).keys() == first
    entry = store.get(IK_ENTRY)
    assert entry is not None and len(entry.blob) > 32  # sealed: nonce, ciphertext, tag
    assert first.meta not in entry.blob and first.records != first.meta != first.audit
    assert "keys hidden" in repr(IntegrityRing(store, Sealer(ROOT))) and first.meta.hex() not in repr(first)


def test_rings_creating_ik_at_once_converge_on_one_key() -> None:
    store = MemoryKeystore()
    found: list[bytes] = []
    start = threading.Barrier(8)

    def one() -> None:
        ring = IntegrityRing(store, Sealer(ROOT))
        start.wait()
        found.append(ring.keys().meta)

    threads = [threading.Thread(target=one) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(found)) == 1 and len(found) == 8


def test_another_root_key_does_not_open_ik_and_read_only_access_creates_nothing(tmp_path: Path) -> None:
    store = MemoryKeystore()
    IntegrityRing(store, Sealer(ROOT)).keys()
    with pytest.raises(RootKeyError):
        IntegrityRing(store, Sealer(bytes(32))).keys()
    with pytest.raises(IntegrityKeyMissing):
        IntegrityRing(MemoryKeystore(), Sealer(ROOT)).keys(create=False)
    with pytest.raises(IntegrityKeyMissing):
        read_integrity_keys(tmp_path / "nothing")
    assert not (tmp_path / "nothing").exists()


def test_anchors_only_grow_and_are_per_name() -> None:
    ring = IntegrityRing(MemoryKeystore(), Sealer(ROOT))
    assert ring.anchor("bucket-encryption/a") == 0
    assert ring.advance("bucket-encryption/a", 3) == 3
    assert ring.advance("bucket-encryption/a", 2) == 3 and ring.anchor("bucket-encryption/a") == 3
    assert ring.anchor("bucket-encryption/b") == 0


def test_ik_and_anchors_survive_a_root_key_rotation_and_every_service_on_the_data_dir_sees_them(tmp_path: Path) -> None:
    """`kms rotate-root-key` re-seals every keystore entry: IK stays the same key, readable by the
    new root key; a service opened afterwards (another proxy) finds it."""
    svc = KeyService.open(tmp_path)
    try:
        keys = svc.integrity().keys()
        svc.integrity().advance("bucket-encryption/b", 5)
    finally:
        svc.close()
    assert care.rotate_root_key(tmp_path) >= 2
    care.finish_rotation(tmp_path)
    assert read_integrity_keys(tmp_path) == keys
    svc = KeyService.open(tmp_path)
    try:
        assert svc.integrity().keys() == keys and svc.integrity().anchor("bucket-encryption/b") == 5
    finally:
        svc.close()
    store = SqliteKeystore(tmp_path / "kms" / "keystore.sqlite3")
    try:
        assert {e.name for e in store.scan("i/")} == {IK_ENTRY, "i/anchor/bucket-encryption/b"}
    finally:
        store.close()
