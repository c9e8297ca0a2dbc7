"""The KMS API as served on the proxy's own listener: SigV4 (service kms) verified, the signer is
the principal, errors in AWS's JSON shape. (The other tests in this folder drive KmsApi through a
lightweight server; these prove the real front door in front of it.)"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys

import pytest
from botocore.exceptions import ClientError

from tests.e2e.conftest import OTHER_ACCESS_KEY, OTHER_SECRET_KEY, start_proxy


@pytest.fixture(scope="module")
def proxy(tmp_path_factory):
    thread, endpoint = start_proxy(tmp_path_factory.mktemp("kms-proxy"), "fs", None)
    yield endpoint
    thread.stop()


def _code(exc: pytest.ExceptionInfo) -> str:
    return exc.value.response["Error"]["Code"]


def test_wrong_secret_is_invalid_signature(proxy):
    with pytest.raises(ClientError) as exc:
        proxy.client("kms", secret_key="not-the-secret").list_keys()
    assert _code(exc) == "InvalidSignatureException"
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


def test_unknown_access_key_is_unrecognized_client(proxy):
    with pytest.raises(ClientError) as exc:
        proxy.client("kms", access_key="AKIANOBODY0000000000", secret_key="x").list_keys()
    assert _code(exc) == "UnrecognizedClientException"


def test_the_signer_is_the_principal_a_key_policy_judges(proxy):
    alice = proxy.client("kms")
    bob = proxy.client("kms", access_key=OTHER_ACCESS_KEY, secret_key=OTHER_SECRET_KEY)
    key = alice.create_key(Description="alice's")["KeyMetadata"]
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:aws:iam::{key['AWSAccountId']}:user/alice"},
                "Action": "kms:*",
                "Resource": "*",
            }
        ],
    }
    alice.put_key_policy(KeyId=key["KeyId"], PolicyName="default", Policy=json.dumps(policy))
    blob = alice.encrypt(KeyId=key["KeyId"], Plaintext=b"hello", EncryptionContext={"a": "b"})["CiphertextBlob"]
    assert alice.decrypt(CiphertextBlob=blob, EncryptionContext={"a": "b"})["Plaintext"] == b"hello"
    with pytest.raises(ClientError) as exc:
        bob.decrypt(CiphertextBlob=blob, EncryptionContext={"a": "b"})
    assert _code(exc) == "AccessDeniedException"
    with pytest.raises(ClientError) as exc:  # the context is bound: a different one never decrypts
        alice.decrypt(CiphertextBlob=blob, EncryptionContext={"a": "c"})
    assert _code(exc) == "InvalidCiphertextException"


def test_awscli_kms_against_the_proxy(proxy, tmp_path):
    env = dict(
        os.environ, AWS_ACCESS_KEY_ID=proxy.access_key, AWS_SECRET_ACCESS_KEY=proxy.secret_key, AWS_DEFAULT_REGION="us-east-1"
    )

    def aws(*args: str) -> dict:
        out = subprocess.run([sys.executable, "-m", "awscli", "--endpoint-url", proxy.url, "kms", *args, "--output", "json"],
                             env=env, capture_output=True, timeout=60)
        assert out.returncode == 0, out.stderr.decode()
        return json.loads(out.stdout or b"{}")

    key_id = aws("create-key", "--description", "cli")["KeyMetadata"]["KeyId"]
    aws("create-alias", "--alias-name", "alias/cli-test", "--target-key-id", key_id)
    (tmp_path / "p").write_bytes(b"secret message")
    blob = aws("encrypt", "--key-id", "alias/cli-test", "--plaintext", f"fileb://{tmp_path / 'p'}")["CiphertextBlob"]
    (tmp_path / "c").write_bytes(base64.b64decode(blob))
    plain = aws("decrypt", "--ciphertext-blob", f"fileb://{tmp_path / 'c'}")["Plaintext"]
    assert base64.b64decode(plain) == b"secret message"
    assert any(a["AliasName"] == "alias/cli-test" for a in aws("list-aliases")["Aliases"])
