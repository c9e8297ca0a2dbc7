"""The Keystore contract, run against every implementation (in-memory twin and SQLite)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Iterator

import pytest

from s3proxy.kms.errors import KeystoreConflict
from s3proxy.kms.keystore import Keystore, MemoryKeystore, SqliteKeystore


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Keystore]:
    s: Keystore = MemoryKeystore() if request.param == "memory" else SqliteKeystore(tmp_path / "ks.sqlite3")
    yield s
    s.close()


def test_is_a_keystore(store: Keystore) -> None:
    assert isinstance(store, Keystore)


def test_absent_entry_reads_none(store: Keystore) -> None:
    assert store.get("k/none") is None


def test_create_then_update_with_versions(store: Keystore) -> None:
    assert store.put("k/a", b"one", 0) == 1
    assert store.put("k/a", b"two", 1) == 2
    e = store.get("k/a")
    assert e is not None and (e.version, e.blob) == (2, b"two")


@pytest.mark.parametrize("expected", [0, 2, 5])  # create over existing, stale version, future version
def test_compare_and_swap_refuses_wrong_version(store: Keystore, expected: int) -> None:
    store.put("k/a", b"one", 0)
    with pytest.raises(KeystoreConflict):
        store.put("k/a", b"x", expected)
    assert store.get("k/a").blob == b"one"  # type: ignore[union-attr]


def test_update_of_absent_entry_conflicts(store: Keystore) -> None:
    with pytest.raises(KeystoreConflict):
        store.put("k/a", b"x", 1)


def test_delete_needs_current_version(store: Keystore) -> None:
    store.put("k/a", b"one", 0)
    with pytest.raises(KeystoreConflict):
        store.delete("k/a", 7)
    store.delete("k/a", 1)
    assert store.get("k/a") is None
    with pytest.raises(KeystoreConflict):
        store.delete("k/a", 1)
    assert store.put("k/a", b"again", 0) == 1  # a deleted name can be created afresh


def test_scan_by_prefix_in_name_order(store: Keystore) -> None:
    for name in ["k/b", "a/x", "k/a", "kz", "k/c"]:
        store.put(name, name.encode(), 0)
    assert [e.name for e in store.scan("k/")] == ["k/a", "k/b", "k/c"]
    assert [e.name for e in store.scan("")] == ["a/x", "k/a", "k/b", "k/c", "kz"]


def test_blobs_are_binary_safe(store: Keystore) -> None:
    blob = bytes(range(256)) * 4
    store.put("k/bin", blob, 0)
    assert store.get("k/bin").blob == blob  # type: ignore[union-attr]


def test_concurrent_writers_never_lose_an_update(store: Keystore) -> None:
    """Eight threads increment one counter with read / compare-and-swap / retry: no increment is lost."""
    store.put("c", b"0", 0)

    def bump() -> None:
        for _ in range(25):
            while True:
                e = store.get("c")
                assert e is not None
                try:
                    store.put("c", str(int(e.blob) + 1).encode(), e.version)
                    break
                except KeystoreConflict:
                    continue

    threads = [threading.Thread(target=bump) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert store.get("c").blob == b"200"  # type: ignore[union-attr]


def test_sqlite_survives_reopen(tmp_path: Path) -> None:
    s = SqliteKeystore(tmp_path / "ks.sqlite3")
    s.put("k/a", b"kept", 0)
    s.close()
    s2 = SqliteKeystore(tmp_path / "ks.sqlite3")
    assert s2.get("k/a").blob == b"kept"  # type: ignore[union-attr]
    assert s2._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    s2.close()
