"""The `aws kms` CLI (awscli, as a real subprocess) against the KMS endpoint."""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path


def aws(kms, *args: str, user: str = "alice", check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["aws", "--endpoint-url", kms.endpoint, "--output", "json", "kms", *args],
                          capture_output=True, text=True, env=kms.cli_env(user), timeout=60, check=check)


def test_cli_round_trip(kms, tmp_path: Path) -> None:
    key = json.loads(aws(kms, "create-key", "--description", "cli key").stdout)["KeyMetadata"]
    kid = key["KeyId"]
    aws(kms, "create-alias", "--alias-name", "alias/cli-key", "--target-key-id", kid)
    assert json.loads(aws(kms, "describe-key", "--key-id", "alias/cli-key").stdout)["KeyMetadata"]["KeyId"] == kid
    (tmp_path / "plain.txt").write_bytes(b"hello from the cli")
    enc = json.loads(aws(kms, "encrypt", "--key-id", "alias/cli-key", "--plaintext", f"fileb://{tmp_path / 'plain.txt'}",
                         "--encryption-context", "purpose=test").stdout)
    (tmp_path / "blob.bin").write_bytes(base64.b64decode(enc["CiphertextBlob"]))
    dec = json.loads(aws(kms, "decrypt", "--ciphertext-blob", f"fileb://{tmp_path / 'blob.bin'}",
                         "--encryption-context", "purpose=test").stdout)
    assert base64.b64decode(dec["Plaintext"]) == b"hello from the cli" and dec["KeyId"] == key["Arn"]
    dk = json.loads(aws(kms, "generate-data-key", "--key-id", kid, "--key-spec", "AES_256").stdout)
    assert len(base64.b64decode(dk["Plaintext"])) == 32
    assert kid in aws(kms, "list-keys").stdout
    aws(kms, "disable-key", "--key-id", kid)
    failed = aws(kms, "encrypt", "--key-id", kid, "--plaintext", f"fileb://{tmp_path / 'plain.txt'}", check=False)
    assert failed.returncode != 0 and "DisabledException" in failed.stderr and "is disabled." in failed.stderr
    out = json.loads(aws(kms, "schedule-key-deletion", "--key-id", kid, "--pending-window-in-days", "7").stdout)
    assert out["KeyState"] == "PendingDeletion"
    aws(kms, "cancel-key-deletion", "--key-id", kid)
    assert json.loads(aws(kms, "describe-key", "--key-id", kid).stdout)["KeyMetadata"]["KeyState"] == "Disabled"


def test_cli_access_denied_for_another_user(kms) -> None:
    kid = json.loads(aws(kms, "create-key").stdout)["KeyMetadata"]["KeyId"]
    failed = aws(kms, "describe-key", "--key-id", kid, user="bob", check=False)
    assert failed.returncode != 0 and "AccessDeniedException" in failed.stderr


def test_cli_sign_verify_and_random(kms, tmp_path: Path) -> None:
    kid = json.loads(aws(kms, "create-key", "--key-spec", "ECC_NIST_P256", "--key-usage", "SIGN_VERIFY").stdout)["KeyMetadata"][
        "KeyId"
    ]
    (tmp_path / "m").write_bytes(b"message")
    sig = json.loads(aws(kms, "sign", "--key-id", kid, "--message", f"fileb://{tmp_path / 'm'}",
                         "--signing-algorithm", "ECDSA_SHA_256").stdout)["Signature"]
    (tmp_path / "s").write_bytes(base64.b64decode(sig))
    ok = json.loads(aws(kms, "verify", "--key-id", kid, "--message", f"fileb://{tmp_path / 'm'}", "--signature",
                        f"fileb://{tmp_path / 's'}", "--signing-algorithm", "ECDSA_SHA_256").stdout)
    assert ok["SignatureValid"] is True
    assert len(base64.b64decode(json.loads(aws(kms, "generate-random", "--number-of-bytes", "64").stdout)["Plaintext"])) == 64
