"""The scale-out settings, the audit chain per process, and a keystore that does not answer."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from s3proxy import settings as settings_mod
from s3proxy.kms.api import KmsApi
from s3proxy.kms.audit import FileAuditSink, MemoryAuditSink, audit_log_path, audit_logs
from s3proxy.kms.caller import Caller
from s3proxy.kms.keystore import KeystoreUnavailable, sqlite_path
from s3proxy.kms.keystore.postgres import PostgresKeystore
from s3proxy.kms.service import KeyService
from tests.pg import PgServer

ALICE = Caller("AKIAALICE", "alice", "000000000000")


@pytest.mark.parametrize("url", ["mysql://h/db", "sqlite://host/x", "sqlite:///", "file:///x", "postgresql"])
def test_a_keystore_url_that_names_no_keystore_is_refused(url: str) -> None:
    with pytest.raises(settings_mod.SettingsError, match="keystore_url"):
        settings_mod.load({"keystore_url": url}, env={})


def test_keystore_urls_and_their_files(tmp_path: Path) -> None:
    assert sqlite_path(None, tmp_path) == tmp_path / "kms" / "keystore.sqlite3"  # the embedded default, unchanged
    assert sqlite_path("sqlite:///rel/k.db", tmp_path) == Path("rel/k.db")
    assert sqlite_path("sqlite:////abs/k.db", tmp_path) == Path("/abs/k.db")
    assert sqlite_path("postgresql://u@h/db", tmp_path) is None
    url = "postgresql://s3proxy:pw-in-url@pg-a:5432,pg-b:5432/s3proxy?target_session_attrs=read-write"
    s = settings_mod.load({"keystore_url": url, "workers": "4"}, env={})
    assert s.keystore_url == url and s.workers == 4
    assert "pw-in-url" not in repr(s) and settings_mod.describe(s)["keystore_url"] == "<redacted>"
    for bad in ("0", "65", "two"):
        with pytest.raises(settings_mod.SettingsError, match="workers"):
            settings_mod.load({"workers": bad}, env={})


def test_config_shows_no_keystore_password(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "s3proxy", "config", "--keystore-url", "postgresql://u:hunter2@h/db",
                          "--data-dir", str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "hunter2" not in out.stdout + out.stderr


def test_each_process_has_its_own_audit_chain_and_a_second_writer_is_refused(tmp_path: Path) -> None:
    assert audit_log_path(tmp_path) == tmp_path / "kms" / "audit.log"
    assert audit_log_path(tmp_path, 3) == tmp_path / "kms" / "audit.w3.log"
    first = FileAuditSink(audit_log_path(tmp_path, 1))
    try:
        with pytest.raises(OSError, match="in use by another process"):
            FileAuditSink(audit_log_path(tmp_path, 1))
        second = FileAuditSink(audit_log_path(tmp_path, 2), ik_audit=bytes(32))  # keyed: it writes
        second.emit({"eventName": "Test"})
        second.close()
    finally:
        first.close()
    FileAuditSink(audit_log_path(tmp_path)).close()
    (tmp_path / "kms" / "audit.wx.log").write_text("")  # not a worker's name: not a chain of this data dir
    assert [p.name for p in audit_logs(tmp_path)] == ["audit.log", "audit.w1.log", "audit.w2.log"]


def test_a_keystore_that_does_not_answer_is_a_dependency_timeout_not_a_hang(tmp_path: Path) -> None:
    server = PgServer().start()
    try:
        store = PostgresKeystore(server.url, timeout=1.5)
        service = KeyService.create(store, MemoryAuditSink(), root_key=bytes(32))
        api = KmsApi(service)
        key = service.create_key(ALICE).key_id
        server.stop("immediate")
        # a known key is served from the cache
        assert service.encrypt(ALICE, key, b"still served").key_arn.endswith(key)
        # what needs the database waits up to the timeout, then answers as AWS does for a dependency
        with pytest.raises(KeystoreUnavailable):
            service.create_key(ALICE)
        status, body = api.dispatch("TrentService.CreateKey", b"{}", ALICE)
        assert status == 500 and json.loads(body)["__type"] == "DependencyTimeoutException"
        server.start()
        assert service.create_key(ALICE).key_id  # back without a restart
        service.close()
    finally:
        server.close()
