"""The library's own behaviour: v3 key derivation, ranged reads, rewrap, listing, stream inputs."""

from __future__ import annotations

import base64
import io
import os

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from s3proxy.cse import AesGcmKeyring, CseClient, CseError, DecryptionFailed, KmsKeyring, RsaOaepKeyring
from s3proxy.cse.content import derive_v3_keys

MIB = 1024 * 1024


def test_v3_key_derivation_matches_the_official_client():
    kd = pytest.importorskip("s3_encryption.key_derivation")
    from s3_encryption.materials.materials import AlgorithmSuite

    for _ in range(20):
        data_key, message_id = os.urandom(32), os.urandom(28)
        expected = kd.derive_keys(data_key, message_id, AlgorithmSuite.ALG_AES_256_GCM_HKDF_SHA512_COMMIT_KEY)
        assert derive_v3_keys(data_key, message_id) == expected


class _Pipe(io.RawIOBase):
    """A non-seekable stream with short reads, like stdin from a pipe."""

    def __init__(self, data: bytes) -> None:
        self._data = memoryview(data)

    def readable(self) -> bool:
        return True

    def readinto(self, buf) -> int:
        n = min(len(buf), len(self._data), 65536)
        buf[:n] = self._data[:n]
        self._data = self._data[n:]
        return n


@pytest.mark.parametrize("version", [2, 3])
def test_multipart_from_a_pipe(endpoint, bucket, version):
    data = os.urandom(11 * MIB + 7)
    client = CseClient(endpoint.s3(), AesGcmKeyring(os.urandom(32)), format_version=version, part_size=5 * MIB)
    put = client.put_object(bucket, "p", _Pipe(data))
    assert (put.parts, put.plaintext_length, put.ciphertext_length) == (3, len(data), len(data) + 16)
    assert client.get_bytes(bucket, "p") == data
    assert client.head_object(bucket, "p").plaintext_length == len(data)


@pytest.mark.parametrize("version", [2, 3])
@pytest.mark.parametrize("first,last", [  # plaintext range, inclusive; why each row matters
    (0, 0),          # first byte
    (15, 16),        # straddles a block boundary
    (17, 40_000),    # unaligned start, many blocks
    (99_990, 10**9), # runs past the end: clipped
    (99_999, 99_999) # last byte
])
def test_unauthenticated_ranged_reads(endpoint, bucket, version, first, last):
    data = os.urandom(100_000)
    keyring = AesGcmKeyring(os.urandom(32))
    CseClient(endpoint.s3(), keyring, format_version=version).put_object(bucket, "r", data)
    with pytest.raises(CseError, match="unauthenticated"):
        CseClient(endpoint.s3(), keyring).get_object_range(bucket, "r", first, last, io.BytesIO())
    out = io.BytesIO()
    result = CseClient(endpoint.s3(), keyring, allow_unauthenticated_ranges=True).get_object_range(
        bucket, "r", first, last, out)
    assert out.getvalue() == data[first:last + 1]
    assert result.authenticated is False


@pytest.mark.parametrize("version", [2, 3])
def test_rewrap_in_metadata_keeps_data_user_metadata_and_type(endpoint, bucket, kms_key_id, other_kms_key_id,
                                                               version):
    s3 = endpoint.s3()
    old = CseClient(s3, KmsKeyring(endpoint.kms(), kms_key_id), format_version=version)
    old.put_object(bucket, "o", b"payload", context={"a": "1"}, metadata={"owner": "bob"}, content_type="text/x")
    stored = s3.get_object(Bucket=bucket, Key="o")["Body"].read()
    old.rewrap(bucket, "o", KmsKeyring(endpoint.kms(), other_kms_key_id), context={"a": "1"},
               new_context={"b": "2"})
    head = s3.head_object(Bucket=bucket, Key="o")
    assert head["Metadata"]["owner"] == "bob" and head["ContentType"] == "text/x"
    assert s3.get_object(Bucket=bucket, Key="o")["Body"].read() == stored
    new = CseClient(s3, KmsKeyring(endpoint.kms(), other_kms_key_id))
    assert new.get_bytes(bucket, "o", context={"b": "2"}) == b"payload"


def test_rewrap_v3_instruction_file_touches_only_the_file(endpoint, bucket, kms_key_id):
    s3 = endpoint.s3()
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    client = CseClient(s3, KmsKeyring(endpoint.kms(), kms_key_id), envelope_location="instruction-file")
    client.put_object(bucket, "o", b"x" * 1000)
    before = s3.head_object(Bucket=bucket, Key="o")
    result = client.rewrap(bucket, "o", RsaOaepKeyring(public_key=private.public_key()))
    after = s3.head_object(Bucket=bucket, Key="o")
    assert result.envelope_location == "instruction-file" and result.new_wrap_alg == "RSA-OAEP-SHA1"
    assert (after["ETag"], after["Metadata"]) == (before["ETag"], before["Metadata"])
    assert CseClient(s3, RsaOaepKeyring(private_key=private)).get_bytes(bucket, "o") == b"x" * 1000
    with pytest.raises(CseError, match="private key"):
        CseClient(s3, RsaOaepKeyring(public_key=private.public_key())).get_bytes(bucket, "o")


def test_list_describes_objects_and_hides_instruction_files(endpoint, bucket, kms_key_id):
    s3 = endpoint.s3()
    CseClient(s3, AesGcmKeyring(os.urandom(32)), format_version=2).put_object(bucket, "a", b"12345")
    CseClient(s3, KmsKeyring(endpoint.kms(), kms_key_id), envelope_location="instruction-file").put_object(
        bucket, "b", b"123")
    s3.put_object(Bucket=bucket, Key="c", Body=b"plain")
    rows = [(i.key, i.format_version, i.wrap_alg, i.envelope_location, i.plaintext_length)
            for i in CseClient(s3, None).list_objects(bucket)]
    assert rows == [("a", 2, "AES/GCM", "metadata", 5), ("b", 3, "kms+context", "instruction-file", 3),
                    ("c", None, "", "", None)]


def test_keys_never_appear_in_reprs_or_errors(endpoint, bucket):
    key = os.urandom(32)
    keyring = AesGcmKeyring(key)
    assert key.hex() not in repr(keyring) and repr(key) not in repr(keyring)
    CseClient(endpoint.s3(), keyring).put_object(bucket, "o", b"secret")
    try:
        CseClient(endpoint.s3(), AesGcmKeyring(os.urandom(32))).get_bytes(bucket, "o")
    except DecryptionFailed as exc:
        assert "secret" not in str(exc) and key.hex() not in str(exc)
    meta = endpoint.s3().head_object(Bucket=bucket, Key="o")["Metadata"]
    assert all(key.hex() not in v and base64.b64encode(key).decode() not in v for v in meta.values())
