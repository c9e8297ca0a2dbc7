"""The Keystore contract, run against every implementation (in-memory twin, SQLite, PostgreSQL).

The PostgreSQL runs are against a real server (tests/pg.py), each test in a fresh database.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from s3proxy.kms.errors import KeystoreConflict
from s3proxy.kms.keystore import Keystore, MemoryKeystore, SqliteKeystore, open_keystore


@pytest.fixture(params=["memory", "sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Keystore]:
    if request.param == "memory":
        s: Keystore = MemoryKeystore()
    elif request.param == "sqlite":
        s = SqliteKeystore(tmp_path / "ks.sqlite3")
    else:
        s = open_keystore(request.getfixturevalue("pg_url"), tmp_path)
    yield s
    s.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def twin_stores(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Keystore, Keystore]]:
    """Two handles on one shared keystore, as two processes hold them."""
    url = f"sqlite:///{tmp_path}/ks.sqlite3" if request.param == "sqlite" else request.getfixturevalue("pg_url")
    a, b = open_keystore(url, tmp_path), open_keystore(url, tmp_path)
    yield a, b
    a.close()
    b.close()


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


# the change feed ------------------------------------------------------------------------------------


def test_change_feed_names_every_write_and_delete_once(store: Keystore) -> None:
    start, names = store.changes(0)
    assert names == [] and start == 0
    store.put("k/a", b"1", 0)
    store.put("a/x", b"1", 0)
    store.put("k/a", b"2", 1)
    mid, names = store.changes(start)
    assert names == ["a/x", "k/a"]  # in counter order, k/a once at its latest write
    store.delete("a/x", 1)
    end, names = store.changes(mid)
    assert end > mid and names == ["a/x"]
    assert store.changes(end) == (end, [])


def test_a_conflict_is_no_change(store: Keystore) -> None:
    store.put("k/a", b"1", 0)
    counter, _ = store.changes(0)
    with pytest.raises(KeystoreConflict):
        store.put("k/a", b"x", 0)
    with pytest.raises(KeystoreConflict):
        store.delete("k/a", 9)
    assert store.changes(counter) == (counter, [])


def test_wait_for_change_returns_within_its_timeout(store: Keystore) -> None:
    began = time.monotonic()
    store.wait_for_change(0.3)
    assert time.monotonic() - began < 2.0


def test_another_handle_sees_writes_through_the_feed(twin_stores: tuple[Keystore, Keystore]) -> None:
    a, b = twin_stores
    cursor, _ = b.changes(0)
    a.put("k/new", b"made on a", 0)
    b.wait_for_change(1.0)
    counter, names = b.changes(cursor)
    assert names == ["k/new"] and b.get("k/new").blob == b"made on a"  # type: ignore[union-attr]
    with pytest.raises(KeystoreConflict):  # compare-and-swap holds across handles
        b.put("k/new", b"lost race", 0)
    b.put("k/new", b"b wins", 1)
    assert a.get("k/new").blob == b"b wins"  # type: ignore[union-attr]


def test_feed_counter_order_is_commit_order_under_concurrent_writers(twin_stores: tuple[Keystore, Keystore]) -> None:
    """Readers advancing a cursor while two handles write concurrently never skip a write."""
    a, b = twin_stores
    seen: set[str] = set()
    cursor = 0
    done = threading.Event()

    def write(store: Keystore, tag: str) -> None:
        for i in range(40):
            store.put(f"k/{tag}{i:02d}", b"x", 0)

    writers = [threading.Thread(target=write, args=(s, t)) for s, t in ((a, "a"), (b, "b"))]
    for w in writers:
        w.start()
    while not done.is_set():
        if not any(w.is_alive() for w in writers):
            done.set()  # one more read after the last write
        cursor, names = a.changes(cursor)
        seen.update(names)
    assert seen == {f"k/{t}{i:02d}" for t in "ab" for i in range(40)}


def test_postgres_listen_wakes_the_waiter_before_its_poll_interval(pg_url: str, tmp_path: Path) -> None:
    from s3proxy.kms.keystore.postgres import PostgresKeystore

    a, b = PostgresKeystore(pg_url), PostgresKeystore(pg_url, poll_interval=30.0)
    try:
        b.wait_for_change(30.0)  # the first call opens the LISTEN connection and returns
        threading.Timer(0.3, lambda: a.put("k/x", b"1", 0)).start()
        began = time.monotonic()
        b.wait_for_change(30.0)
        assert time.monotonic() - began < 10.0  # woken by NOTIFY, not by the 30 s poll
        assert b.changes(0)[1] == ["k/x"]
    finally:
        a.close()
        b.close()


def test_postgres_url_with_a_password_is_never_shown(pg_url: str) -> None:
    from s3proxy.kms.keystore.postgres import PostgresKeystore

    store = PostgresKeystore(pg_url.replace("postgres@", "postgres:hunter2-secret@"))
    try:
        assert "hunter2" not in repr(store) and "hunter2" not in str(vars(store).get("_pool"))
    finally:
        store.close()
