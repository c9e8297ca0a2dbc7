"""Interop with Debian's ruby-aws-sdk-s3 1.117.2: Aws::S3::EncryptionV2::Client (writes and reads v2)
and the legacy Aws::S3::Encryption::Client (writes v1, which we read only).

Every test runs against plain moto and through s3proxy (the `endpoint` fixture). Ruby comes from Debian's
ruby-aws-sdk-s3 (brings ruby-aws-sdk-kms); `scripts/test` installs it; without it these tests skip.
"""

from __future__ import annotations

import io
import json
import os
import pathlib
import subprocess

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from s3proxy.cse import AesGcmKeyring, CseClient, KmsKeyring, RsaOaepKeyring

HARNESS = pathlib.Path(__file__).with_name("ruby_s3ec.rb")
MIB = 1024 * 1024
CONTEXT = {"team": "ruby"}



class Ruby:
    """One long-lived Ruby process running the harness; each call is one JSON line in, one line out."""

    def __init__(self, endpoint) -> None:
        self.endpoint = endpoint
        self.proc = subprocess.Popen(["ruby", str(HARNESS)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, env={**os.environ, **endpoint.env()})

    def __call__(self, **req: object) -> str:
        base = {"s3_url": self.endpoint.s3_url, "kms_url": self.endpoint.kms_url, "region": self.endpoint.region,
                "access_key": self.endpoint.access_key, "secret_key": self.endpoint.secret_key}
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps({**base, **req}) + "\n")
        self.proc.stdin.flush()
        return self.proc.stdout.readline().strip()

    def close(self) -> None:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=30)
        self.proc.stdout.close()


@pytest.fixture(scope="module")
def ruby(endpoint, ruby_tool):
    proc = Ruby(endpoint)
    yield proc
    proc.close()


@pytest.fixture(scope="module")
def keys(tmp_path_factory, kms_key_id):
    """One wrapping key of each kind, with what both sides need to use it."""
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = tmp_path_factory.mktemp("rsa") / "key.pem"
    pem.write_bytes(private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                          serialization.NoEncryption()))
    aes = os.urandom(32)
    return {"kms_key_id": kms_key_id, "aes": aes, "rsa_private": private, "rsa_pem": str(pem)}


def _keyring(endpoint, keys, wrap):
    if wrap == "kms":
        return KmsKeyring(endpoint.kms(), keys["kms_key_id"])
    if wrap == "aes":
        return AesGcmKeyring(keys["aes"])
    return RsaOaepKeyring(private_key=keys["rsa_private"])


def _ruby_req(keys, wrap, **kw):
    req = {"wrap": wrap, "kms_key_id": keys["kms_key_id"], "aes_key_hex": keys["aes"].hex(), "rsa_pem": keys["rsa_pem"]}
    return {**req, **kw}


CASES = [  # (wrap, size): every wrap at 1 KiB; kms also empty and multipart-sized
    ("kms", 0), ("kms", 1024), ("kms", 6 * MIB + 3), ("aes", 0), ("aes", 1024), ("rsa", 1024)]


@pytest.mark.parametrize("wrap,size", CASES)
@pytest.mark.parametrize("location", ["metadata", "instruction_file"])
def test_ruby_reads_what_we_wrote(endpoint, bucket, ruby, keys, tmp_path, wrap, size, location):
    data = os.urandom(size)
    client = CseClient(endpoint.s3(), _keyring(endpoint, keys, wrap), format_version=2, part_size=5 * MIB,
                       envelope_location=location.replace("_", "-"))
    client.put_object(bucket, "obj", io.BytesIO(data), context=CONTEXT if wrap == "kms" else None, size=size)
    out = tmp_path / "out"
    extra = {"context": CONTEXT} if wrap == "kms" else {}
    assert ruby(**_ruby_req(keys, wrap, op="get", bucket=bucket, key="obj", path=str(out),
                            location=location, **extra)) == "ok"
    assert out.read_bytes() == data


@pytest.mark.parametrize("wrap,size", CASES)
@pytest.mark.parametrize("location", ["metadata", "instruction_file"])
def test_we_read_what_ruby_wrote(endpoint, bucket, ruby, keys, tmp_path, wrap, size, location):
    data = os.urandom(size)
    src = tmp_path / "in"
    src.write_bytes(data)
    extra = {"context": CONTEXT} if wrap == "kms" else {}
    assert ruby(**_ruby_req(keys, wrap, op="put", bucket=bucket, key="obj", path=str(src),
                            location=location, **extra)) == "ok"
    client = CseClient(endpoint.s3(), _keyring(endpoint, keys, wrap))
    assert client.get_bytes(bucket, "obj", context=CONTEXT if wrap == "kms" else None) == data
    info = client.head_object(bucket, "obj")
    assert (info.format_version, info.plaintext_length) == (2, size)


@pytest.mark.parametrize("wrap", ["kms", "aes", "rsa"])
def test_we_read_v1_objects_ruby_legacy_client_wrote(endpoint, bucket, ruby, keys, tmp_path, wrap):
    data = os.urandom(40_000)  # not a multiple of the CBC block: exercises the padding
    src = tmp_path / "in"
    src.write_bytes(data)
    assert ruby(**_ruby_req(keys, wrap, op="put", bucket=bucket, key="v1", path=str(src), client="v1")) == "ok"
    client = CseClient(endpoint.s3(), _keyring(endpoint, keys, wrap))
    buf = io.BytesIO()
    result = client.get_object(bucket, "v1", buf)
    assert buf.getvalue() == data
    assert result.authenticated is False  # CBC: say so, the caller decides
    assert result.format_version == (2 if wrap == "kms" else 1)  # V1's KMS mode writes x-amz-key-v2 + wrap "kms"


def test_ruby_reads_after_we_rewrap_its_instruction_file(endpoint, bucket, ruby, keys, tmp_path):
    data = os.urandom(2048)
    src = tmp_path / "in"
    src.write_bytes(data)
    assert ruby(**_ruby_req(keys, "aes", op="put", bucket=bucket, key="obj", path=str(src),
                            location="instruction_file")) == "ok"
    before = endpoint.s3().get_object(Bucket=bucket, Key="obj")["Body"].read()
    new_aes = os.urandom(32)
    CseClient(endpoint.s3(), AesGcmKeyring(keys["aes"])).rewrap(bucket, "obj", AesGcmKeyring(new_aes))
    assert endpoint.s3().get_object(Bucket=bucket, Key="obj")["Body"].read() == before  # data untouched
    out = tmp_path / "out"
    assert ruby(**_ruby_req({**keys, "aes": new_aes}, "aes", op="get", bucket=bucket, key="obj",
                            path=str(out), location="instruction_file")) == "ok"
    assert out.read_bytes() == data
    old = ruby(**_ruby_req(keys, "aes", op="get", bucket=bucket, key="obj", path=str(tmp_path / "old"),
                           location="instruction_file"))
    assert old.startswith("error")


def test_official_python_and_ruby_read_each_others_v2(endpoint, bucket, ruby, keys, tmp_path):
    s3ec = pytest.importorskip("s3_encryption", reason="pip install amazon-s3-encryption-client-python")
    from s3_encryption.materials.kms_keyring import KmsKeyring as OfficialKmsKeyring
    from s3_encryption.materials.materials import AlgorithmSuite, CommitmentPolicy

    config = s3ec.S3EncryptionClientConfig(
        keyring=OfficialKmsKeyring(kms_client=endpoint.kms(), kms_key_id=keys["kms_key_id"]),
        encryption_algorithm=AlgorithmSuite.ALG_AES_256_GCM_IV12_TAG16_NO_KDF,
        commitment_policy=CommitmentPolicy.FORBID_ENCRYPT_ALLOW_DECRYPT)
    py = s3ec.S3EncryptionClient(wrapped_s3_client=endpoint.s3(), config=config)
    data = os.urandom(5000)
    py.put_object(Bucket=bucket, Key="from-python", Body=data, EncryptionContext=CONTEXT)
    out = tmp_path / "out"
    assert ruby(**_ruby_req(keys, "kms", op="get", bucket=bucket, key="from-python", path=str(out),
                            context=CONTEXT)) == "ok"
    assert out.read_bytes() == data
    src = tmp_path / "in"
    src.write_bytes(data[::-1])
    assert ruby(**_ruby_req(keys, "kms", op="put", bucket=bucket, key="from-ruby", path=str(src),
                            context=CONTEXT)) == "ok"
    got = py.get_object(Bucket=bucket, Key="from-ruby", EncryptionContext=CONTEXT)["Body"].read()
    assert got == data[::-1]
