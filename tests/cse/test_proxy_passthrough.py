"""S3 Encryption Client objects pass through s3proxy untouched (issue 6, item 1).

What an S3EC writes through the proxy comes back byte-identical, envelope metadata included, in
metadata or in an instruction file; the proxy never needs the client's key, it adds its own SSE-S3
layer at rest (as AWS does: since 5 January 2023 S3 encrypts every new object with SSE-S3 and says so
in `x-amz-server-side-encryption`, S3 User Guide, "Protecting data with server-side encryption");
HEAD says the object is client-side encrypted; suffix ranges work (the Ruby client fetches the GCM
tag with `Range: bytes=-16`, shared/reference/client-side-formats.md §7).

"What the client produced" is recorded on the wire, from the botocore client the S3EC wraps (its
`before-send` event sees the final request: the S3EC's hooks have already encrypted the body and added
the envelope headers). Each case runs with the proxy in front of its filesystem backend and of moto.
"""

from __future__ import annotations

import io
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

from s3proxy.cse import AesGcmKeyring, CseClient, KmsKeyring
from tests.cse.conftest import Endpoint
from tests.cse.test_official_ruby import Ruby
from tests.e2e.conftest import Endpoint as Proxy
from tests.e2e.conftest import start_proxy

pytest.importorskip("s3_encryption", reason="pip install amazon-s3-encryption-client-python")
from tests.cse.test_official_python import official  # noqa: E402

MIB = 1024 * 1024
CONTEXT = {"project": "passthrough"}
GCM_TAG = 16
# The header the proxy adds to HEAD/GET of an object whose own metadata shows an S3EC envelope
# (s3proxy's own extension; AWS has none): v1 | v2 | v3, or instruction-file when the object's
# metadata only says the envelope lives in `<key>.instruction` (v1/v2 there; a v3 object keeps x-amz-c/d/i).
CSE_HEADER = "x-s3proxy-client-side-encryption"



@pytest.fixture(scope="module", params=["fs", "s3"], ids=["fs-backend", "moto-backend"])
def proxied(request, tmp_path_factory, moto_server) -> Iterator[Proxy]:
    thread, proxy = start_proxy(tmp_path_factory.mktemp(f"cse-pass-{request.param}"), request.param, moto_server)
    yield proxy
    thread.stop()


@pytest.fixture(scope="module")
def as_endpoint(proxied) -> Endpoint:
    """The proxy as tests/cse's Endpoint: S3 and KMS on its one URL."""
    return Endpoint("s3proxy", proxied.url, proxied.url, access_key=proxied.access_key, secret_key=proxied.secret_key)


@pytest.fixture(scope="module")
def proxy_kms_key(proxied) -> str:
    """A key in the proxy's own KMS, made through its AWS KMS JSON API."""
    return proxied.client("kms").create_key(Description="cse pass-through")["KeyMetadata"]["KeyId"]


@pytest.fixture
def pbucket(proxied) -> str:
    name = f"csep-{uuid.uuid4().hex[:20]}"
    proxied.client().create_bucket(Bucket=name)
    return name


@dataclass
class Produced:
    """One object as the client sent it: the envelope headers and the body (all parts, in order)."""

    meta: dict[str, str] = field(default_factory=dict)
    parts: dict[int, bytes] = field(default_factory=dict)

    @property
    def body(self) -> bytes:
        return b"".join(self.parts[n] for n in sorted(self.parts))


class Wire:
    """Records the objects a boto3 S3 client sends (PutObject, CreateMultipartUpload, UploadPart)."""

    def __init__(self, s3: Any) -> None:
        self.objects: dict[str, Produced] = {}
        s3.meta.events.register("before-send.s3", self._record)

    @staticmethod
    def _bytes(body: Any) -> bytes:
        if body is None:
            return b""
        if isinstance(body, (bytes, bytearray, memoryview)):
            return bytes(body)
        if isinstance(body, io.BytesIO):
            return body.getvalue()
        raise AssertionError(f"cannot record a {type(body).__name__} body without consuming it")

    def _record(self, request: Any, **_: Any) -> None:
        url = urlsplit(request.url)
        key = unquote(url.path.split("/", 2)[2])
        query = parse_qs(url.query, keep_blank_values=True)
        headers = {k.lower(): (v.decode() if isinstance(v, bytes) else v) for k, v in request.headers.items()}
        meta = {k[len("x-amz-meta-"):]: v for k, v in headers.items() if k.startswith("x-amz-meta-")}
        if request.method == "PUT" and "partNumber" in query:
            self.objects[key].parts[int(query["partNumber"][0])] = self._bytes(request.body)
        elif request.method == "PUT" and "x-amz-copy-source" not in headers:
            self.objects[key] = Produced(meta, {0: self._bytes(request.body)})
        elif request.method == "POST" and "uploads" in query:
            self.objects[key] = Produced(meta)


def assert_only_ciphertext_at_rest(proxied: Proxy, bucket: str, key: str, client_bytes: bytes) -> None:
    """No 32-byte window of what the client sent is stored as such: at rest it is encrypted again.

    Windows, not the whole body: a store may split an object (the fs backend keeps one blob per part).
    """
    n = len(client_bytes)
    windows = {client_bytes[i:i + 32] for i in (0, n // 3, n // 2, n - 32)} if n >= 32 else {client_bytes}
    backend = proxied.backend_client()
    if backend is not None:  # moto behind the proxy: the object under the same bucket and key
        blobs = [backend.get_object(Bucket=bucket, Key=key)["Body"].read()]
        assert len(blobs[0]) > n  # the proxy's format adds its header and per-chunk tags
    else:  # the fs backend: every file under the data dir (blobs, index, keystore)
        blobs = [p.read_bytes() for p in Path(proxied.data_dir).rglob("*") if p.is_file()]
    assert not [w for w in windows for blob in blobs if w in blob]


def assert_passed_through(proxied: Proxy, bucket: str, key: str, produced: Produced, marker: str | None) -> None:
    """The proxy gives back exactly what the client produced, and holds it only under its own encryption."""
    raw = proxied.client()  # plain boto3: no S3EC hooks on it
    got = raw.get_object(Bucket=bucket, Key=key)
    assert got["Body"].read() == produced.body
    assert got["Metadata"] == produced.meta  # every envelope field, names and values untouched
    assert got["ContentLength"] == len(produced.body)
    head = raw.head_object(Bucket=bucket, Key=key)
    assert (head["ContentLength"], head["Metadata"]) == (len(produced.body), produced.meta)
    # AWS applies SSE-S3 to every new object and says so on HEAD/GET; the proxy's own layer does the same
    assert head["ServerSideEncryption"] == got["ServerSideEncryption"] == "AES256"
    # "HEAD tells the user the object is client-side encrypted"; HEAD answers as GET would, minus the body
    # (S3 API Reference, HeadObject), so GET carries the marker too
    assert head["ResponseMetadata"]["HTTPHeaders"].get(CSE_HEADER) == marker
    assert got["ResponseMetadata"]["HTTPHeaders"].get(CSE_HEADER) == marker
    # ciphertext of the ciphertext at rest
    assert_only_ciphertext_at_rest(proxied, bucket, key, produced.body)


# --- the official Python client (v3 default, v2), envelope in metadata ------------------------------------


@pytest.mark.parametrize("version", [2, 3])
@pytest.mark.parametrize("size", [  # plaintext size, and why
    0,              # body is the GCM tag alone
    1024,           # one small PutObject
    6 * MIB + 5,    # one PutObject bigger than the S3EC's and the proxy's part/chunk sizes
])
def test_official_python_object_comes_back_byte_identical(proxied, as_endpoint, proxy_kms_key, pbucket, version,
                                                          size):
    s3 = proxied.client()
    wire = Wire(s3)
    data = os.urandom(size)
    client = official(as_endpoint, proxy_kms_key, version, s3=s3)
    client.put_object(Bucket=pbucket, Key="obj", Body=data, EncryptionContext=CONTEXT)
    produced = wire.objects["obj"]
    assert len(produced.body) == size + GCM_TAG and ("c" if version == 3 else "key-v2") in {
        k.removeprefix("x-amz-") for k in produced.meta}
    assert_passed_through(proxied, pbucket, "obj", produced, f"v{version}")
    assert client.get_object(Bucket=pbucket, Key="obj", EncryptionContext=CONTEXT)["Body"].read() == data


def test_official_python_multipart_upload_comes_back_byte_identical(proxied, as_endpoint, proxy_kms_key, pbucket):
    s3 = proxied.client()
    wire = Wire(s3)
    data = os.urandom(11 * MIB)  # three S3EC parts: 5 + 5 + 1 MiB, the tag on the last
    client = official(as_endpoint, proxy_kms_key, 3, s3=s3)
    client.upload_fileobj(io.BytesIO(data), pbucket, "mpu", multipart_chunksize=5 * MIB, EncryptionContext=CONTEXT)
    produced = wire.objects["mpu"]
    assert sorted(produced.parts) == [1, 2, 3]
    assert_passed_through(proxied, pbucket, "mpu", produced, "v3")
    assert client.get_object(Bucket=pbucket, Key="mpu", EncryptionContext=CONTEXT)["Body"].read() == data


# --- instruction files (our writer: the official Python client only reads them) -----------------------------


@pytest.mark.parametrize("version,marker", [  # what the object's own metadata shows, hence the marker
    (2, "instruction-file"),  # v2: every envelope field in the file; the object keeps the plaintext length
    (3, "v3"),                # v3: x-amz-c/d/i stay on the object (client-side-formats.md §1)
])
def test_instruction_file_envelope_comes_back_byte_identical(proxied, as_endpoint, proxy_kms_key, pbucket, version,
                                                             marker):
    s3 = proxied.client()
    wire = Wire(s3)
    data = os.urandom(3000)
    CseClient(s3, KmsKeyring(proxied.client("kms"), proxy_kms_key), format_version=version,
              envelope_location="instruction-file").put_object(pbucket, "obj", io.BytesIO(data), context=CONTEXT)
    assert_passed_through(proxied, pbucket, "obj", wire.objects["obj"], marker)
    instruction = wire.objects["obj.instruction"]
    raw = proxied.client().get_object(Bucket=pbucket, Key="obj.instruction")
    assert (raw["Body"].read(), raw["Metadata"]) == (instruction.body, instruction.meta)
    reader = official(as_endpoint, proxy_kms_key)
    assert reader.get_object(Bucket=pbucket, Key="obj", EncryptionContext=CONTEXT)["Body"].read() == data


def test_plain_object_carries_no_client_side_marker(proxied, pbucket):
    s3 = proxied.client()
    s3.put_object(Bucket=pbucket, Key="plain", Body=b"plain", Metadata={"x-amz-keyish": "not an envelope"})
    headers = s3.head_object(Bucket=pbucket, Key="plain")["ResponseMetadata"]["HTTPHeaders"]
    assert CSE_HEADER not in headers


# --- suffix ranges over an S3EC object -------------------------------------------------------------------------


@pytest.mark.parametrize("size", [  # plaintext size, and why
    0,                # the stored object is the 16-byte tag alone: bytes=-16 is the whole object
    1000,             # within the proxy's first 64 KiB chunk
    200_000,          # the tag sits in the proxy's fourth chunk, after three full ones
])
def test_suffix_ranges_return_the_tail_of_the_ciphertext(proxied, pbucket, size):
    s3 = proxied.client()
    wire = Wire(s3)
    client = CseClient(s3, AesGcmKeyring(os.urandom(32)), format_version=2)
    client.put_object(pbucket, "obj", io.BytesIO(os.urandom(size)))
    stored = wire.objects["obj"].body
    n = len(stored)
    # the tag; one byte more; across a proxy chunk boundary (longer than small objects: RFC 9110 §14.1.2
    # "if the selected representation is shorter than the specified suffix-length, the entire
    # representation is used"); exactly the whole object
    for suffix in (GCM_TAG, 17, 64 * 1024 + 1, n):
        want = stored[-suffix:]
        got = s3.get_object(Bucket=pbucket, Key="obj", Range=f"bytes=-{suffix}")
        assert got["ResponseMetadata"]["HTTPStatusCode"] == 206  # RFC 9110 §14.1.2, S3 GetObject "Range"
        assert got["Body"].read() == want
        assert got["ContentRange"] == f"bytes {n - len(want)}-{n - 1}/{n}"
        assert got["ContentLength"] == len(want)


# --- the Ruby client (Debian ruby-aws-sdk-s3): its own key never reaches the proxy --------------------------


@pytest.fixture(scope="module")
def ruby(as_endpoint, ruby_tool) -> Iterator[Ruby]:
    proc = Ruby(as_endpoint)
    yield proc
    proc.close()


@pytest.mark.parametrize("location,marker", [
    ("metadata", "v2"),
    ("instruction_file", "instruction-file"),  # the object keeps only x-amz-unencrypted-content-length
])
def test_ruby_aes_gcm_object_passes_through_without_its_key(proxied, pbucket, ruby, tmp_path, location, marker):
    """The proxy never has the AES key; the stored bytes still authenticate under it, so they are the client's."""
    data = os.urandom(5000)
    src = tmp_path / "in"
    src.write_bytes(data)
    aes = os.urandom(32)
    assert ruby(op="put", wrap="aes", aes_key_hex=aes.hex(), bucket=pbucket, key="obj", path=str(src),
                    location=location) == "ok"
    s3 = proxied.client()
    head = s3.head_object(Bucket=pbucket, Key="obj")
    assert head["ContentLength"] == len(data) + GCM_TAG
    assert head["ResponseMetadata"]["HTTPHeaders"].get(CSE_HEADER) == marker
    expected_meta = {"x-amz-unencrypted-content-length", "x-amz-key-v2", "x-amz-iv", "x-amz-cek-alg",
                     "x-amz-tag-len", "x-amz-wrap-alg", "x-amz-matdesc"}  # client-side-formats.md §3, §5
    if location == "instruction_file":
        expected_meta = {"x-amz-unencrypted-content-length"}
    assert set(head["Metadata"]) == expected_meta
    assert head["Metadata"]["x-amz-unencrypted-content-length"] == str(len(data))
    # GCM authenticates IV, ciphertext and tag under a key only the client holds
    assert CseClient(s3, AesGcmKeyring(aes)).get_bytes(pbucket, "obj") == data
    assert_only_ciphertext_at_rest(proxied, pbucket, "obj", s3.get_object(Bucket=pbucket, Key="obj")["Body"].read())
    # and Ruby reads it back through the proxy: full GET, then the tag with Range: bytes=-16
    out = tmp_path / "out"
    assert ruby(op="get", wrap="aes", aes_key_hex=aes.hex(), bucket=pbucket, key="obj", path=str(out),
                    location=location) == "ok"
    assert out.read_bytes() == data
