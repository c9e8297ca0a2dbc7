"""Key services sharing one keystore (SQLite file or PostgreSQL database) stay coherent.

Two `KeyService`s stand for two processes (worker processes over the SQLite file, proxies over
PostgreSQL): each has its own cache and watcher thread and talks to the keystore through its own
connections, exactly as separate processes do.
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from s3proxy.kms import care
from s3proxy.kms.audit import MemoryAuditSink
from s3proxy.kms.caller import Caller
from s3proxy.kms.errors import DisabledException, NotFoundException
from s3proxy.kms.service import KeyService
from s3proxy.kms.wrapping import default_root_key
from tests.pg import PgServer
from tests.scale.conftest import BOUND, within

ALICE = Caller("AKIAALICE", "alice", "000000000000")


@pytest.fixture(params=["sqlite", "postgresql"])
def twin_services(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], KeyService]]:
    """`open_service()`: another key service over the one shared keystore, with its own data dir and the same root key."""
    url = f"sqlite:///{tmp_path}/shared.sqlite3" if request.param == "sqlite" else request.getfixturevalue("pg_url")
    opened: list[KeyService] = []

    def open_service() -> KeyService:
        data = tmp_path / f"node{len(opened)}"
        data.mkdir()
        if opened:
            shutil.copy2(default_root_key(tmp_path / "node0"), default_root_key(data))
        service = KeyService.open(data, keystore_url=url, audit=MemoryAuditSink())
        opened.append(service)
        return service

    yield open_service
    for s in opened:
        s.close()


def _raises(exc: type[Exception], call: Callable[[], object]) -> Callable[[], None]:
    def check() -> None:
        with pytest.raises(exc):
            call()
    return lambda: _not_yet(check)


def _not_yet(check: Callable[[], None]) -> None:
    try:
        check()
    except pytest.fail.Exception as e:
        raise AssertionError(str(e)) from None


def test_changes_reach_the_other_service_within_the_bound(twin_services: Callable[[], KeyService]) -> None:
    a, b = twin_services(), twin_services()
    changed: list[str] = []
    b.subscribe(changed.append)
    key = a.create_key(ALICE, description="made on a").key_id
    assert b.describe_key(ALICE, key).description == "made on a"  # a miss reads through at once
    a.update_key_description(ALICE, key, "changed on a")
    within(BOUND, lambda: _check(b.describe_key(ALICE, key).description == "changed on a"))
    assert key in changed  # B's listeners (the bucket-key cache) heard of the change
    a.disable_key(ALICE, key)
    within(BOUND, _raises(DisabledException, lambda: b.encrypt(ALICE, key, b"x")))
    a.enable_key(ALICE, key)
    within(BOUND, lambda: _check(b.encrypt(ALICE, key, b"x").key_arn.endswith(key)))
    a.create_alias(ALICE, "alias/shared", key)
    assert b.encrypt(ALICE, "alias/shared", b"x").key_arn.endswith(key)  # a new alias: read through at once
    a.delete_alias(ALICE, "alias/shared")
    within(BOUND, _raises(NotFoundException, lambda: b.encrypt(ALICE, "alias/shared", b"x")))
    a.create_alias(ALICE, "alias/shared", a.create_key(ALICE).key_id)  # the same name again, a new target (version 1)
    within(BOUND, lambda: _check(b.resolve_key(ALICE, "alias/shared") != b.key_arn(key)))


def test_a_write_on_either_side_wins_once(twin_services: Callable[[], KeyService]) -> None:
    """Compare-and-swap across services: both update one key from stale caches; neither update is lost."""
    a, b = twin_services(), twin_services()
    key = a.create_key(ALICE).key_id
    b.describe_key(ALICE, key)
    a.tag_resource(ALICE, key, {"from": "a"})
    b.tag_resource(ALICE, key, {"also": "b"})  # B's cache is stale: its write conflicts, re-reads, re-applies
    within(BOUND, lambda: _check(a.list_resource_tags(ALICE, key) == {"from": "a", "also": "b"}))


def test_two_services_racing_for_the_aws_managed_key_agree(twin_services: Callable[[], KeyService]) -> None:
    a, b = twin_services(), twin_services()
    for alias in ("alias/aws/s3", "alias/aws/ebs", "alias/aws/rds"):
        barrier, got = threading.Barrier(2), {}

        def take(name: str, s: KeyService, alias: str = alias, barrier: threading.Barrier = barrier,
                 got: dict[str, str] = got) -> None:
            barrier.wait()
            got[name] = s.aws_managed_key(ALICE, alias)

        threads = [threading.Thread(target=take, args=(n, s)) for n, s in (("a", a), ("b", b))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert got["a"] == got["b"], alias
    within(BOUND, lambda: _check(len([k for k in b.records.keys() if k.key_manager == "AWS"]) == 3))


def test_root_key_rotation_across_services(tmp_path: Path, pg_url: str) -> None:
    """rotate-root-key against the shared database while two services run on one root key file (a mounted secret)."""
    root = tmp_path / "root.key"
    a = KeyService.open(tmp_path / "a", root, keystore_url=pg_url, audit=MemoryAuditSink())
    b = KeyService.open(tmp_path / "b", root, keystore_url=pg_url, audit=MemoryAuditSink())
    try:
        key = a.create_key(ALICE).key_id
        blob = a.encrypt(ALICE, key, b"before rotation").ciphertext_blob
        assert care.rotate_root_key(tmp_path / "a", root, keystore_url=pg_url) >= 2
        assert b.decrypt(ALICE, blob).plaintext == b"before rotation"
        a.update_key_description(ALICE, key, "after rotation")  # CAS conflict -> re-read under the new root key
        within(BOUND, lambda: _check(b.describe_key(ALICE, key).description == "after rotation"))
        assert care.finish_rotation(tmp_path / "a", root, keystore_url=pg_url) >= 0
    finally:
        a.close()
        b.close()
    c = KeyService.open(tmp_path / "c", root, keystore_url=pg_url, audit=MemoryAuditSink())
    try:  # only the new key in the file now
        assert c.decrypt(ALICE, blob).plaintext == b"before rotation"
    finally:
        c.close()


def test_backup_and_restore_of_a_postgresql_keystore(tmp_path: Path, pg_server: PgServer) -> None:
    url, other = pg_server.new_database(), pg_server.new_database()
    a = KeyService.open(tmp_path / "a", keystore_url=url, audit=MemoryAuditSink())
    key = a.create_key(ALICE).key_id
    blob = a.encrypt(ALICE, key, b"kept").ciphertext_blob
    archive = tmp_path / "kms.backup"
    made = care.backup(tmp_path / "a", archive, b"a long passphrase!", keystore_url=url)
    assert made.entries == 2  # the root check and the key
    # restore into another, empty database: a service there decrypts what was encrypted before
    care.restore(archive, b"a long passphrase!", tmp_path / "a", keystore_url=other)
    with pytest.raises(care.BackupError):  # never over a keystore silently
        care.restore(archive, b"a long passphrase!", tmp_path / "a", keystore_url=other)
    b = KeyService.open(tmp_path / "a", keystore_url=other, audit=MemoryAuditSink())
    try:
        assert b.decrypt(ALICE, blob).plaintext == b"kept"
        # --force over a live database: the running service sees the restored records within the bound
        a.schedule_key_deletion(ALICE, key, 7)
        care.restore(archive, b"a long passphrase!", tmp_path / "a", keystore_url=url, force=True)
        within(BOUND, lambda: _check(a.describe_key(ALICE, key).key_state == "Enabled"))
    finally:
        a.close()
        b.close()


def test_a_service_rides_out_a_postgresql_restart(tmp_path: Path, pg_server: PgServer) -> None:
    url = pg_server.new_database()
    a = KeyService.open(tmp_path / "a", keystore_url=url, audit=MemoryAuditSink())
    b = KeyService.open(tmp_path / "b", default_root_key(tmp_path / "a"), keystore_url=url, audit=MemoryAuditSink())
    try:
        key = a.create_key(ALICE).key_id
        pg_server.restart()
        # the pool's connections died with the server: new ones are made, no service restart needed
        a.update_key_description(ALICE, key, "after the restart")
        within(3 * BOUND, lambda: _check(b.describe_key(ALICE, key).description == "after the restart"))
        # B's LISTEN connection came back too: the next change arrives within the bound again
        a.update_key_description(ALICE, key, "and again")
        within(BOUND, lambda: _check(b.describe_key(ALICE, key).description == "and again"))
    finally:
        a.close()
        b.close()


def _check(ok: bool) -> None:
    assert ok
