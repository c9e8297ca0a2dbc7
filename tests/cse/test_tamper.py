"""Bad input never yields plaintext: each case is a clear error (docs/CSE.md "Errors").

Objects are written by us and, where it matters, by the official Python client; the tampering is
done at rest with plain boto3, as an attacker with write access to the bucket could.
"""

from __future__ import annotations

import base64
import io
import json
import os

import pytest

from s3proxy.cse import (
    AesGcmKeyring,
    CseClient,
    CseError,
    DecryptionFailed,
    EncryptionContextMismatch,
    EnvelopeError,
    InstructionFileMissing,
    KeyringMismatch,
    KmsKeyring,
)

CONTEXT = {"owner": "alice"}


def _client(endpoint, key_id, **kw):
    return CseClient(endpoint.s3(), KmsKeyring(endpoint.kms(), key_id), **kw)


def _rewrite(endpoint, bucket, key, body=None, meta_update=None, meta_drop=()):
    """Replace the stored object's body and/or metadata, bypassing encryption."""
    s3 = endpoint.s3()
    obj = s3.get_object(Bucket=bucket, Key=key)
    data = obj["Body"].read() if body is None else body
    meta = {k: v for k, v in obj["Metadata"].items() if k not in meta_drop}
    meta.update(meta_update or {})
    s3.put_object(Bucket=bucket, Key=key, Body=data(obj) if callable(data) else data, Metadata=meta)


def _flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 1]) + data[at + 1:]


@pytest.mark.parametrize("version", [2, 3])
@pytest.mark.parametrize("where", [  # which byte of the stored body changes, and why it matters
    0,      # first ciphertext byte
    1999,   # last ciphertext byte, just before the tag
    2000,   # first tag byte
    -1,     # last tag byte
])
def test_tampered_body_is_rejected(endpoint, bucket, kms_key_id, version, where):
    client = _client(endpoint, kms_key_id, format_version=version)
    client.put_object(bucket, "obj", os.urandom(2000), context=CONTEXT)
    stored = endpoint.s3().get_object(Bucket=bucket, Key="obj")["Body"].read()
    _rewrite(endpoint, bucket, "obj", body=_flip(stored, where % len(stored)))
    with pytest.raises(DecryptionFailed):
        client.get_bytes(bucket, "obj", context=CONTEXT)


@pytest.mark.parametrize("change", ["truncate-tag", "truncate-all", "append"])
def test_truncated_or_extended_body_is_rejected(endpoint, bucket, kms_key_id, change):
    client = _client(endpoint, kms_key_id)
    client.put_object(bucket, "obj", os.urandom(100), context=CONTEXT)
    stored = endpoint.s3().get_object(Bucket=bucket, Key="obj")["Body"].read()
    body = {"truncate-tag": stored[:-1], "truncate-all": stored[:5], "append": stored + b"\0"}[change]
    _rewrite(endpoint, bucket, "obj", body=body)
    out = io.BytesIO()
    with pytest.raises(DecryptionFailed):
        client.get_object(bucket, "obj", out, context=CONTEXT)


@pytest.mark.parametrize("version", [2, 3])
def test_swapped_envelope_is_rejected(endpoint, bucket, kms_key_id, version):
    """Object A's body with object B's envelope (same key, same context): both keys unwrap fine."""
    client = _client(endpoint, kms_key_id, format_version=version)
    client.put_object(bucket, "a", os.urandom(500), context=CONTEXT)
    client.put_object(bucket, "b", os.urandom(500), context=CONTEXT)
    meta_b = endpoint.s3().head_object(Bucket=bucket, Key="b")["Metadata"]
    _rewrite(endpoint, bucket, "a", meta_update=meta_b)
    with pytest.raises(DecryptionFailed):
        client.get_bytes(bucket, "a", context=CONTEXT)


def test_wrong_context_is_rejected_before_kms(endpoint, bucket, kms_key_id):
    client = _client(endpoint, kms_key_id)
    client.put_object(bucket, "obj", b"secret", context=CONTEXT)
    for wrong in ({"owner": "mallory"}, {}, {**CONTEXT, "extra": "x"}):
        with pytest.raises(EncryptionContextMismatch):
            client.get_bytes(bucket, "obj", context=wrong)


@pytest.mark.parametrize("version,field", [(2, "x-amz-matdesc"), (3, "x-amz-t")])
def test_stored_context_edited_to_match_is_rejected_by_kms(endpoint, bucket, kms_key_id, version, field):
    """An attacker rewrites the stored context to what the reader expects: KMS refuses the unwrap."""
    client = _client(endpoint, kms_key_id, format_version=version)
    client.put_object(bucket, "obj", b"secret", context=CONTEXT)
    cek = "115" if version == 3 else "AES/GCM/NoPadding"
    forged = json.dumps({"owner": "mallory", "aws:x-amz-cek-alg": cek})
    _rewrite(endpoint, bucket, "obj", meta_update={field: forged})
    with pytest.raises(DecryptionFailed):
        client.get_bytes(bucket, "obj", context={"owner": "mallory"})


def test_v3_commitment_mismatch_is_rejected(endpoint, bucket, kms_key_id):
    client = _client(endpoint, kms_key_id)
    client.put_object(bucket, "obj", os.urandom(64), context=CONTEXT)
    meta = endpoint.s3().head_object(Bucket=bucket, Key="obj")["Metadata"]
    commitment = base64.b64decode(meta["x-amz-d"])
    _rewrite(endpoint, bucket, "obj", meta_update={"x-amz-d": base64.b64encode(_flip(commitment, 3)).decode()})
    with pytest.raises(DecryptionFailed):
        client.get_bytes(bucket, "obj", context=CONTEXT)
    # a different message id derives a different key and commitment: same answer
    _rewrite(endpoint, bucket, "obj", meta_update={"x-amz-d": meta["x-amz-d"],
                                                     "x-amz-i": base64.b64encode(os.urandom(28)).decode()})
    with pytest.raises(DecryptionFailed):
        client.get_bytes(bucket, "obj", context=CONTEXT)


def test_v3_downgrade_by_injecting_v2_fields_is_rejected(endpoint, bucket, kms_key_id):
    client = _client(endpoint, kms_key_id)
    client.put_object(bucket, "obj", b"secret", context=CONTEXT)
    _rewrite(endpoint, bucket, "obj", meta_update={"x-amz-key-v2": "AAAA", "x-amz-iv": "AAAAAAAAAAAAAAAA",
                                                     "x-amz-cek-alg": "AES/GCM/NoPadding", "x-amz-wrap-alg": "kms+context"})
    with pytest.raises(EnvelopeError, match="mixes"):
        client.get_bytes(bucket, "obj", context=CONTEXT)


def test_cek_algorithm_swapped_in_v2_envelope_is_rejected(endpoint, bucket, kms_key_id):
    client = _client(endpoint, kms_key_id, format_version=2)
    client.put_object(bucket, "obj", b"secret" * 10, context=CONTEXT)
    _rewrite(endpoint, bucket, "obj", meta_update={"x-amz-cek-alg": "AES/CBC/PKCS5Padding"})
    with pytest.raises(DecryptionFailed):  # the KMS context binds the content algorithm
        client.get_bytes(bucket, "obj", context=CONTEXT)


@pytest.mark.parametrize("version", [2, 3])
def test_missing_instruction_file_is_a_clear_error(endpoint, bucket, kms_key_id, version):
    client = _client(endpoint, kms_key_id, format_version=version, envelope_location="instruction-file")
    client.put_object(bucket, "obj", b"secret", context=CONTEXT)
    assert client.get_bytes(bucket, "obj", context=CONTEXT) == b"secret"
    endpoint.s3().delete_object(Bucket=bucket, Key="obj.instruction")
    with pytest.raises(InstructionFileMissing, match="obj.instruction"):
        client.get_bytes(bucket, "obj", context=CONTEXT)


def test_instruction_file_carrying_v3_object_fields_is_rejected(endpoint, bucket, kms_key_id):
    client = _client(endpoint, kms_key_id, envelope_location="instruction-file")
    client.put_object(bucket, "obj", b"secret", context=CONTEXT)
    s3 = endpoint.s3()
    fields = json.loads(s3.get_object(Bucket=bucket, Key="obj.instruction")["Body"].read())
    fields["x-amz-d"] = base64.b64encode(os.urandom(28)).decode()
    s3.put_object(Bucket=bucket, Key="obj.instruction", Body=json.dumps(fields).encode())
    with pytest.raises(EnvelopeError, match="belong on the object"):
        client.get_bytes(bucket, "obj", context=CONTEXT)


def test_wrong_kms_key_and_wrong_keyring_kind(endpoint, bucket, kms_key_id, other_kms_key_id):
    _client(endpoint, kms_key_id).put_object(bucket, "obj", b"secret", context=CONTEXT)
    # AWS answers IncorrectKeyException (-> DecryptionFailed); moto answers AccessDeniedException (-> CseError)
    with pytest.raises(CseError, match="decryption failed|IncorrectKey|AccessDenied"):
        _client(endpoint, other_kms_key_id).get_bytes(bucket, "obj", context=CONTEXT)
    with pytest.raises(KeyringMismatch):
        CseClient(endpoint.s3(), AesGcmKeyring(os.urandom(32))).get_bytes(bucket, "obj")


def test_wrong_aes_master_key_is_rejected(endpoint, bucket):
    CseClient(endpoint.s3(), AesGcmKeyring(os.urandom(32))).put_object(bucket, "obj", b"secret")
    with pytest.raises(DecryptionFailed):
        CseClient(endpoint.s3(), AesGcmKeyring(os.urandom(32))).get_bytes(bucket, "obj")


def test_plain_object_has_no_envelope(endpoint, bucket, kms_key_id):
    endpoint.s3().put_object(Bucket=bucket, Key="plain", Body=b"not encrypted")
    with pytest.raises(InstructionFileMissing):
        _client(endpoint, kms_key_id).get_bytes(bucket, "plain")
