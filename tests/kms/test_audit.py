"""The audit trail: one CloudTrail-shaped line per call, no secrets, a hash chain that shows tampering."""

from __future__ import annotations

import base64
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from s3proxy.kms.audit import FileAuditSink, run_audit_verify, verify_audit_log


def lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]


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
    assert verify_audit_log(log) == (True, [])


def _log(tmp_path: Path, n: int = 6) -> Path:
    path = tmp_path / "audit.log"
    sink = FileAuditSink(path)
    for i in range(n):
        sink.emit({"eventName": "Encrypt", "i": i})
    sink.close()
    return path


def _rewrite(path: Path, change) -> None:  # type: ignore[no-untyped-def]
    rows = path.read_text().splitlines(keepends=True)
    path.write_text("".join(change(rows)))


# every row: how the log is tampered with, and why the chain must notice
TAMPERING = [
    ("edit", lambda rows: rows[:2] + [rows[2].replace('"i":2', '"i":9')] + rows[3:]),  # content changed
    ("delete middle", lambda rows: rows[:2] + rows[3:]),  # a record removed
    ("swap", lambda rows: rows[:2] + [rows[3], rows[2]] + rows[4:]),  # reordered
    ("cut tail", lambda rows: rows[:4]),  # last records removed: caught by the head file
    ("delete first", lambda rows: rows[1:]),  # the genesis link broken
    ("garbage", lambda rows: rows + ["not json\n"]),  # junk appended
]


@pytest.mark.parametrize("name,change", TAMPERING, ids=[t[0] for t in TAMPERING])
def test_chain_detects_tampering(tmp_path: Path, name, change) -> None:
    path = _log(tmp_path)
    assert verify_audit_log(path) == (True, [])
    _rewrite(path, change)
    ok, problems = verify_audit_log(path)
    assert not ok and problems


def test_chain_resumes_after_reopen_and_cuts_a_torn_line(tmp_path: Path) -> None:
    path = _log(tmp_path, 3)
    with open(path, "a") as f:
        f.write('{"eventName": "half a li')  # the writer died inside this line: it was never acknowledged
    sink = FileAuditSink(path)
    sink.emit({"eventName": "after"})
    sink.close()
    rows = lines(path)
    assert [r["seq"] for r in rows] == [1, 2, 3, 4] and rows[-1]["prevHash"] == rows[-2]["hash"]
    assert verify_audit_log(path) == (True, [])


def test_run_audit_verify_exit_codes(tmp_path: Path) -> None:
    path = _log(tmp_path)
    out = io.StringIO()
    assert run_audit_verify(path, out) == 0 and "OK, 6 records" in out.getvalue()
    _rewrite(path, lambda rows: rows[:1] + rows[2:])
    out = io.StringIO()
    assert run_audit_verify(path, out) == 1 and "TAMPERED" in out.getvalue()


def test_verify_from_a_subprocess(tmp_path: Path) -> None:
    """What `s3proxy audit verify --file PATH` will run, as a real process."""
    path = _log(tmp_path)
    code = "import sys; from pathlib import Path; from s3proxy.kms.audit import run_audit_verify; sys.exit(run_audit_verify(Path(sys.argv[1])))"
    assert subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True).returncode == 0
    _rewrite(path, lambda rows: rows[:-1])
    assert subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True).returncode == 1
