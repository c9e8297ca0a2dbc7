"""A primary/standby PostgreSQL pair with streaming replication, and a promotion during load.

The proxy's keystore_url is a libpq multi-host URL with target_session_attrs=read-write, so no
setting changes at the failover: new connections try both hosts and keep the one that accepts
writes. Replication is synchronous (synchronous_standby_names on the primary), which is what
makes "acknowledged" mean "on both servers": with asynchronous replication a key acknowledged just
before the primary died may be missing on the promoted standby (docs/SCALING.md says so).

The primary is stopped the crash way (immediate shutdown), then the standby is promoted.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import psycopg
import pytest
from botocore.exceptions import BotoCoreError, ClientError

from tests.e2e.conftest import start_proxy
from tests.pg import PgServer

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


def test_promotion_during_load_loses_no_acknowledged_key(tmp_path: Path) -> None:
    primary = PgServer().start()
    standby = None
    thread = None
    try:
        standby = primary.standby()
        with psycopg.connect(primary.url, autocommit=True) as conn:
            conn.execute("ALTER SYSTEM SET synchronous_standby_names = '*'")
            conn.execute("SELECT pg_reload_conf()")
            deadline = time.monotonic() + 30
            while conn.execute("SELECT count(*) FROM pg_stat_replication WHERE sync_state = 'sync'").fetchone()[0] != 1:
                assert time.monotonic() < deadline, "the standby never became synchronous"
                time.sleep(0.1)
        url = (f"postgresql://postgres@127.0.0.1:{primary.port},127.0.0.1:{standby.port}/postgres"
               "?target_session_attrs=read-write")
        thread, endpoint = start_proxy(tmp_path, "fs", None, keystore_url=url)
        kms = endpoint.client("kms")
        acked: list[tuple[str, bytes, bytes]] = []
        errors: list[tuple[float, str]] = []
        stop = threading.Event()
        began = time.monotonic()

        def load() -> None:
            n = 0
            while not stop.is_set():
                n += 1
                try:  # CreateKey and UpdateKeyDescription write to PostgreSQL every time
                    key = kms.create_key(Description=f"k{n}")["KeyMetadata"]["KeyId"]
                    kms.update_key_description(KeyId=key, Description=f"k{n} updated")
                    plain = f"secret {n}".encode()
                    acked.append((key, plain, kms.encrypt(KeyId=key, Plaintext=plain)["CiphertextBlob"]))
                except (ClientError, BotoCoreError) as exc:
                    code = getattr(exc, "response", {}).get("Error", {}).get("Code") or type(exc).__name__
                    errors.append((time.monotonic() - began, str(code)))
                    time.sleep(0.05)

        worker = threading.Thread(target=load)
        worker.start()
        time.sleep(3)
        failover_at = time.monotonic() - began
        primary.stop("immediate")
        standby.promote()
        promoted_at = time.monotonic() - began
        time.sleep(8)
        stop.set()
        worker.join(60)
        ended = time.monotonic() - began
        done_before = sum(1 for _ in acked)
        print(f"\nfailover: primary killed at {failover_at:.1f} s, standby promoted at {promoted_at:.1f} s; "
              f"{done_before} keys acknowledged; errors: {[(round(t, 2), c) for t, c in errors]}")
        assert done_before > 20
        # the proxy writes through the new primary without a restart: nothing failed in the last 4 s
        assert not [e for e in errors if e[0] > ended - 4], errors
        # no acknowledged key was lost: each still decrypts what was encrypted under it
        for key, plain, blob in acked:
            assert kms.decrypt(CiphertextBlob=blob, KeyId=key)["Plaintext"] == plain
            assert kms.describe_key(KeyId=key)["KeyMetadata"]["Description"].endswith("updated")
        assert standby.is_primary()
        kms.close()
        # and the promoted server itself holds them: a fresh key service (no cache) over it finds every one
        from s3proxy.kms.audit import MemoryAuditSink
        from s3proxy.kms.caller import Caller
        from s3proxy.kms.service import KeyService
        from s3proxy.kms.wrapping import default_root_key

        fresh = KeyService.open(tmp_path, default_root_key(tmp_path), keystore_url=standby.url, audit=MemoryAuditSink())
        try:
            alice = Caller("AKIAS3PROXYTEST0001", "alice", "000000000000")
            for key, plain, blob in acked:
                assert fresh.describe_key(alice, key).description.endswith("updated")
                assert fresh.decrypt(alice, blob).plaintext == plain
        finally:
            fresh.close()
    finally:
        if thread is not None:
            thread.stop()
        if standby is not None:
            standby.close()
        primary.close()
