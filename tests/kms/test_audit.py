"""The audit trail: one CloudTrail-shaped line per call, no secrets, a chain keyed under IK_audit that
shows tampering, even by someone who recomputes every hash (FORMAT.md §16, §19.3)."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from s3proxy.format.auditchain import AuditOutcome
from s3proxy.kms.audit import FileAuditSink, run_audit_verify, verify_audit_log

IK_AUDIT = bytes(range(32))


def lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]


def intact(path: Path, key: bytes = IK_AUDIT) -> bool:
    verdict = verify_audit_log(path, key)
    assert verdict.outcome == AuditOutcome.INTACT, verdict.problems
    return True


def test_every_api_call_is_one_line_without_secrets(kms_factory) -> None:
    server = kms_factory()
    c = server.client()
    kid = c.create_key()["KeyMetadata"]["KeyId"]
    secret = b"the plaintext must never be logged"
    ctx = {"dept": "audit"}
    blob = c.encrypt(KeyId=kid, Plaintext=secret, EncryptionContext=ctx)["CiphertextBlob"]
    dk = c.generate_data_key(KeyId=kid, KeySpec="AES_256", EncryptionContext=ctx)
    c.decrypt(CiphertextBlob=blob, EncryptionContext=ctx)
    with pytest.raises(ClientError):
        c.decrypt(CiphertextBlob=blob, EncryptionContext={"dept": "wrong"})
    material = server.service.records.key(kid).materials[0]
    server.close()
    log = server.data_dir / "kms" / "audit.log"
    records = lines(log)
    assert [r["eventName"] for r in records] == ["CreateKey", "Encrypt", "GenerateDataKey", "Decrypt", "Decrypt"]
    gen = records[2]
    assert gen["eventSource"] == "kms.amazonaws.com" and gen["userIdentity"]["accessKeyId"] == server.access_key
    assert gen["userIdentity"]["arn"] == "arn:aws:iam::000000000000:user/alice"
    assert gen["requestParameters"] == {"keyId": kid, "encryptionContext": ctx, "keySpec": "AES_256"}
    assert gen["resources"] == [{"ARN": f"arn:aws:kms:us-east-1:000000000000:key/{kid}", "accountId": "000000000000",
                                 "type": "AWS::KMS::Key"}]
    assert gen["sourceIPAddress"] == "127.0.0.1" and "Boto3" in gen["userAgent"] and gen["requestID"]
    assert "errorCode" not in gen and records[4]["errorCode"] == "InvalidCiphertextException"
    text = log.read_bytes()
    for value in (secret, blob, dk["Plaintext"], dk["CiphertextBlob"], material):
        for form in (value, base64.b64encode(value), value.hex().encode()):
            assert form not in text
    assert intact(log, server.service.integrity().keys().audit)


def _log(tmp_path: Path, n: int = 6) -> Path:
    path = tmp_path / "audit.log"
    sink = FileAuditSink(path, ik_audit=IK_AUDIT)
    for i in range(n):
        sink.emit({"eventName": "Encrypt", "i": i})
    sink.close()
    return path


def _rewrite(path: Path, change) -> None:  # type: ignore[no-untyped-def]
    rows = path.read_text().splitlines(keepends=True)
    path.write_text("".join(change(rows)))


def _sha256_rewrite(rows: list[str], change) -> list[str]:  # type: ignore[no-untyped-def]
    """What someone with the disk but not the root key can do: edit the records, then recompute a
    plain SHA-256 chain over them (the version-1 format), head file included."""
    records = [change({k: v for k, v in json.loads(r).items() if k not in ("seq", "prevMac", "mac", "prevHash", "hash")})
               for r in rows]
    out, prev = [], "0" * 64
    for seq, record in enumerate(records, start=1):
        body = dict(record, seq=seq, prevHash=prev)
        prev = hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()).hexdigest()
        out.append(json.dumps({**body, "hash": prev}, sort_keys=True, separators=(",", ":")) + "\n")
    return out


# every row: how the log is tampered with, what the chain must say
TAMPERING = [
    ("edit", lambda rows: rows[:2] + [rows[2].replace('"i":2', '"i":9')] + rows[3:], AuditOutcome.TAMPERED),
    ("delete middle", lambda rows: rows[:2] + rows[3:], AuditOutcome.INCOMPLETE),
    ("swap", lambda rows: rows[:2] + [rows[3], rows[2]] + rows[4:], AuditOutcome.INCOMPLETE),
    ("cut tail", lambda rows: rows[:4], AuditOutcome.INCOMPLETE),  # caught by the head file
    ("delete first", lambda rows: rows[1:], AuditOutcome.INCOMPLETE),
    ("garbage", lambda rows: rows + ["not json\n"], AuditOutcome.TAMPERED),
    ("forged line", lambda rows: rows + [rows[-1].replace('"i":5', '"i":6')], AuditOutcome.TAMPERED),
    ("recomputed with plain SHA-256", lambda rows: _sha256_rewrite(rows, lambda r: r), AuditOutcome.TAMPERED),
    ("edited, then SHA-256 recomputed", lambda rows: _sha256_rewrite(rows, lambda r: {**r, "i": 0}), AuditOutcome.TAMPERED),
]


@pytest.mark.parametrize("name,change,outcome", TAMPERING, ids=[t[0] for t in TAMPERING])
def test_chain_detects_tampering(tmp_path: Path, name, change, outcome) -> None:
    path = _log(tmp_path)
    assert intact(path)
    _rewrite(path, change)
    verdict = verify_audit_log(path, IK_AUDIT)
    assert verdict.outcome == outcome and verdict.problems, (verdict.outcome, verdict.problems)


def test_a_log_rewritten_with_another_key_is_tampered(tmp_path: Path) -> None:
    """Lines MACed under any key but this keystore's: what a holder of the disk could forge."""
    path = _log(tmp_path)
    assert verify_audit_log(path, os.urandom(32)).outcome == AuditOutcome.TAMPERED


def test_chain_resumes_after_reopen_and_cuts_a_torn_line(tmp_path: Path) -> None:
    path = _log(tmp_path, 3)
    with open(path, "a") as f:
        f.write('{"eventName": "half a li')  # the writer died inside this line: it was never acknowledged
    sink = FileAuditSink(path, ik_audit=IK_AUDIT)
    sink.emit({"eventName": "after"})
    sink.close()
    rows = lines(path)
    assert [r["seq"] for r in rows] == [1, 2, 3, 4] and rows[-1]["prevMac"] == rows[-2]["mac"]
    assert intact(path)


def test_a_sink_without_its_key_writes_nothing_unkeyed(tmp_path: Path) -> None:
    sink = FileAuditSink(tmp_path / "audit.log")
    with pytest.raises(RuntimeError):
        sink.emit({"eventName": "Encrypt"})
    sink.close()
    assert (tmp_path / "audit.log").read_bytes() == b""


def test_a_version_1_log_is_continued_by_a_keyed_line_that_fixes_it(tmp_path: Path) -> None:
    """FORMAT.md §19.3: the first keyed line's prevMac is the last version-1 hash. Before that line
    exists, verify calls the log what it is: unkeyed."""
    path = tmp_path / "audit.log"
    path.write_text("".join(_sha256_rewrite([json.dumps({"eventName": "Encrypt", "i": i}) for i in range(3)], lambda r: r)))
    out = io.StringIO()
    assert run_audit_verify(path, lambda: IK_AUDIT, out) == 1 and "UNKEYED" in out.getvalue()
    FileAuditSink(path, ik_audit=IK_AUDIT).close()  # a format-2 proxy opens it: keyed at once
    rows = lines(path)
    assert rows[3]["eventName"] == "AuditChainKeyed" and rows[3]["prevMac"] == rows[2]["hash"] and rows[3]["seq"] == 4
    assert intact(path)
    _rewrite(path, lambda rows: [rows[0].replace('"i":0', '"i":7')] + rows[1:])  # the old prefix is now fixed
    assert verify_audit_log(path, IK_AUDIT).outcome == AuditOutcome.TAMPERED


def test_run_audit_verify_exit_codes_and_messages(tmp_path: Path) -> None:
    path = _log(tmp_path)
    out = io.StringIO()
    assert run_audit_verify(path, lambda: IK_AUDIT, out) == 0 and "OK, 6 records, chain intact" in out.getvalue()
    _rewrite(path, lambda rows: rows[:1] + rows[2:])
    out = io.StringIO()
    assert run_audit_verify(path, lambda: IK_AUDIT, out) == 3 and "INCOMPLETE" in out.getvalue()
    _rewrite(path, lambda rows: [rows[0].replace('"i":0', '"i":1')] + rows[1:])
    out = io.StringIO()
    assert run_audit_verify(path, lambda: IK_AUDIT, out) == 1 and "TAMPERED" in out.getvalue()
    out = io.StringIO()
    assert run_audit_verify(tmp_path / "missing.log", lambda: IK_AUDIT, out) == 4 and "NOT FOUND" in out.getvalue()
    assert "TAMPERED" not in out.getvalue()

    def no_key() -> bytes:
        raise LookupError("no keystore at /nowhere")

    out = io.StringIO()
    assert run_audit_verify(path, no_key, out) == 4 and "no keystore at /nowhere" in out.getvalue()


def _proxy_data_dir(tmp_path: Path) -> Path:
    """A data dir with a keystore, its root key and a keyed audit log, as a proxy leaves them."""
    from s3proxy.kms.caller import Caller
    from s3proxy.kms.service import KeyService

    data = tmp_path / "data"
    svc = KeyService.open(data)
    try:
        for _ in range(3):
            svc.create_key(Caller("AKIAEXAMPLE", "alice", "000000000000"))
    finally:
        svc.close()
    return data


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    env.pop("S3PROXY_DATA_DIR", None)
    return subprocess.run([sys.executable, "-m", "s3proxy", "audit", "verify", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=60)


def test_cli_finds_the_log_from_the_settings_and_never_calls_a_missing_log_tampered(tmp_path: Path) -> None:
    """`s3proxy audit verify` as a real process: the key from the data dir's keystore and root key,
    the log from --data-dir (or a config file); run elsewhere without them it says NOT FOUND (4)."""
    data = _proxy_data_dir(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    done = _cli("--data-dir", str(data), cwd=elsewhere)
    assert done.returncode == 0 and "chain intact" in done.stdout, done.stdout + done.stderr
    config = tmp_path / "s3proxy.toml"
    config.write_text(f'data_dir = "{data}"\n')
    assert _cli("--config", str(config), cwd=elsewhere).returncode == 0
    lost = _cli(cwd=elsewhere)  # the default ./data is not there
    assert lost.returncode == 4 and "NOT FOUND" in lost.stdout and "TAMPERED" not in lost.stdout
    assert not (elsewhere / "data").exists()  # verifying creates nothing: no keystore, no root key
    keyless = tmp_path / "keyless"
    (keyless / "kms").mkdir(parents=True)
    (keyless / "kms" / "audit.log").write_bytes((data / "kms" / "audit.log").read_bytes())
    done = _cli("--data-dir", str(keyless), cwd=elsewhere)
    assert done.returncode == 4 and "no keystore" in done.stdout and "TAMPERED" not in done.stdout
    assert not (keyless / "kms" / "keystore.sqlite3").exists()
    assert not (keyless / "root.key").exists() and not (tmp_path / "keyless.root.key").exists()  # either place


@pytest.mark.parametrize("change", [lambda r: r, lambda r: {**r, "eventName": "ListKeys"}], ids=["recomputed", "edited"])
def test_cli_refuses_a_log_rewritten_with_plain_sha256(tmp_path: Path, change) -> None:
    """The issue's attack: the disk's holder rewrites the log (edited or not) and recomputes every
    hash, head file included, with plain SHA-256. Today that verifies as intact."""
    data = _proxy_data_dir(tmp_path)
    log = data / "kms" / "audit.log"
    rows = _sha256_rewrite(log.read_text().splitlines(keepends=True), change)
    log.write_text("".join(rows))
    last = json.loads(rows[-1])
    (data / "kms" / "audit.log.head").write_text(json.dumps({"seq": last["seq"], "hash": last["hash"]}))
    done = _cli("--data-dir", str(data), cwd=tmp_path)
    assert done.returncode == 1 and "TAMPERED" in done.stdout, done.stdout + done.stderr
