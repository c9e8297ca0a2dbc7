"""What the SSE tests share: SSE-C key headers, the size boundary table, KMS helpers and the at-rest
inspection (what the backend really holds, read around the proxy: moto via boto3, fs via its index
and blob files)."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import sqlite3
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from s3proxy.format.chunks import DEFAULT_CHUNK_SIZE
from s3proxy.format.sizes import ciphertext_size
from s3proxy.format.trailer import TRAILER_SIZE
from s3proxy.store import SMALL_BODY

from .conftest import OTHER_ACCESS_KEY, OTHER_SECRET_KEY

C = DEFAULT_CHUNK_SIZE
MIB = 1024 * 1024
PART = 5 * MIB  # S3's minimum size of every part but the last

# Plaintext sizes at the format's boundaries (docs/FORMAT.md §5: a part of n bytes has floor(n/C)+1 chunks).
SIZES = [
    0,  # empty: one empty final chunk, the tag alone
    1,  # the smallest non-empty body
    C - 1,  # one short final chunk
    C,  # exactly one full chunk, then an empty final chunk
    C + 1,  # a full chunk and a one-byte final chunk
    3 * C + 7,  # several chunks plus a few bytes
    SMALL_BODY + 1,  # past SMALL_BODY: the streamed write path (envelope fields recorded after the upload)
]

ENVELOPE_KEYS = ("s3proxy-v", "s3proxy-cs", "s3proxy-mode", "s3proxy-key")


def body_of(size: int, seed: str = "") -> bytes:
    """Deterministic, incompressible-looking plaintext of `size` bytes."""
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(f"{seed}:{counter}".encode()).digest()
        counter += 1
    return bytes(out[:size])


def unique(prefix: str = "k") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


# SSE-C -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CustomerKey:
    raw: bytes

    @classmethod
    def new(cls) -> CustomerKey:
        return cls(os.urandom(32))

    @property
    def b64(self) -> str:
        return base64.b64encode(self.raw).decode()

    @property
    def md5(self) -> str:
        return base64.b64encode(hashlib.md5(self.raw).digest()).decode()

    def args(self) -> dict[str, str]:
        """boto3 parameters for PUT/GET/HEAD/Create/UploadPart (boto3 base64-encodes and adds the MD5)."""
        return {"SSECustomerAlgorithm": "AES256", "SSECustomerKey": self.raw}

    def copy_source_args(self) -> dict[str, str]:
        return {"CopySourceSSECustomerAlgorithm": "AES256", "CopySourceSSECustomerKey": self.raw}

    def headers(self, prefix: str = "x-amz-server-side-encryption-customer-") -> dict[str, str]:
        return {prefix + "algorithm": "AES256", prefix + "key": self.b64, prefix + "key-MD5": self.md5}


def add_headers(client, event: str, headers: dict[str, str]) -> None:
    """Send raw headers on every request of `event` (e.g. 'before-sign.s3.GetObject'): for rows boto3
    would otherwise fix up (it computes a missing key-MD5, and refuses some combinations)."""

    def hook(request, **_):
        for k, v in headers.items():
            if k in request.headers:  # an email.message-style mapping: assignment would append a duplicate
                del request.headers[k]
            if v is not None:
                request.headers[k] = v

    client.meta.events.register(event, hook)


def error_of(excinfo) -> tuple[int, str, str]:
    err: ClientError = excinfo.value
    return (
        err.response["ResponseMetadata"]["HTTPStatusCode"],
        err.response["Error"].get("Code", ""),
        err.response["Error"].get("Message", ""),
    )


def expect_error(fn, status: int, code: str | None, message: str | None = None, **kwargs) -> str:
    """Call fn(**kwargs), which must fail with this status/code (and message fragment); its message."""
    with pytest.raises(ClientError) as excinfo:
        fn(**kwargs)
    got_status, got_code, got_message = error_of(excinfo)
    assert got_status == status, (got_status, got_code, got_message)
    if code is not None:
        assert got_code == code, (got_status, got_code, got_message)
    if message is not None:
        assert message in got_message, got_message
    return got_message


def single_attempt_client(proxy, **kwargs):
    """A client that never retries (Endpoint.client's legacy `max_attempts: 1` still retries a 500 once,
    after a back-off): for reads expected to fail."""
    import boto3
    from botocore.config import Config

    from .conftest import REGION

    return boto3.client(
        "s3", endpoint_url=proxy.url, region_name=REGION,
        aws_access_key_id=kwargs.get("access_key", proxy.access_key),
        aws_secret_access_key=kwargs.get("secret_key", proxy.secret_key),
        config=Config(s3={"addressing_style": "path"}, retries={"total_max_attempts": 1, "mode": "standard"}),
    )


# KMS ---------------------------------------------------------------------------------------------


def kms_client(proxy, *, bob: bool = False):
    if bob:
        return proxy.client("kms", access_key=OTHER_ACCESS_KEY, secret_key=OTHER_SECRET_KEY)
    return proxy.client("kms")


def account_wide_policy(deny_user_arn: str | None = None) -> str:
    """Every user of the account may use the key; optionally one user is explicitly denied."""
    statements = [{"Sid": "account", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::000000000000:root"},
                   "Action": "kms:*", "Resource": "*"}]
    if deny_user_arn:
        statements.append({"Sid": "deny", "Effect": "Deny", "Principal": {"AWS": deny_user_arn},
                           "Action": "kms:*", "Resource": "*"})
    return json.dumps({"Version": "2012-10-17", "Statement": statements})


def bob_arn() -> str:
    return "arn:aws:iam::000000000000:user/bob"


# at rest -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AtRest:
    """One object as the backend holds it."""

    body: bytes
    metadata: dict[str, str]  # user metadata names without x-amz-meta-, lower case
    etag: str | None  # the backend's ETag when it derives from the ciphertext (moto: MD5); None for fs's random tokens


def at_rest(proxy, bucket: str, key: str) -> AtRest:
    """Read the stored object around the proxy."""
    backend = proxy.backend_client()
    if backend is not None:
        got = backend.get_object(Bucket=bucket, Key=key)
        return AtRest(got["Body"].read(), {k.lower(): v for k, v in got["Metadata"].items()}, got["ETag"].strip('"'))
    root = Path(proxy.data_dir) / "objects"
    db = sqlite3.connect(f"file:{root / 'index.sqlite3'}?mode=ro", uri=True)
    try:
        row = db.execute(
            "SELECT meta, blobs, etag FROM objects WHERE bucket=? AND key=? AND latest=1 AND marker=0", (bucket, key)
        ).fetchone()
    finally:
        db.close()
    assert row is not None, f"{bucket}/{key} is not in the fs index"
    meta, blobs, _ = row
    data = b"".join((root / "blobs" / name[:2] / name).read_bytes() for name, _ in json.loads(blobs))
    return AtRest(data, {k.lower(): v for k, v in json.loads(meta)["metadata"].items()}, None)


def fs_blob_paths(proxy, bucket: str, key: str) -> list[Path]:
    root = Path(proxy.data_dir) / "objects"
    db = sqlite3.connect(f"file:{root / 'index.sqlite3'}?mode=ro", uri=True)
    try:
        (blobs,) = db.execute("SELECT blobs FROM objects WHERE bucket=? AND key=? AND latest=1", (bucket, key)).fetchone()
    finally:
        db.close()
    return [root / "blobs" / name[:2] / name for name, _ in json.loads(blobs)]


def assert_sealed(proxy, bucket: str, key: str, plaintext: bytes, mode: str, *, secrets: tuple[bytes, ...] = (),
                  multipart: bool = False) -> AtRest:
    """What is at rest is ciphertext of the right length, carries the envelope, and no key material."""
    stored = at_rest(proxy, bucket, key)
    if not multipart:
        # FORMAT.md §5: stored length is a pure function of the plaintext length (and a trailer decided before the write)
        trailer = TRAILER_SIZE if "s3proxy-tr" in stored.metadata else 0
        assert len(stored.body) == ciphertext_size(len(plaintext)) + trailer, (len(stored.body), len(plaintext))
    if len(plaintext) >= 16:
        assert plaintext[:16] not in stored.body and plaintext[-16:] not in stored.body
    for k in ENVELOPE_KEYS:
        assert k in stored.metadata, (k, sorted(stored.metadata))
    assert stored.metadata["s3proxy-mode"] == mode
    blob = json.dumps(stored.metadata).encode() + stored.body
    for secret in secrets:  # the SSE-C key in any encoding, never stored
        for form in (secret, base64.b64encode(secret), secret.hex().encode()):
            assert form not in blob
    assert not any("customer-key" in k or k.startswith("x-amz-server-side") for k in stored.metadata)
    return stored


def assert_no_leak(headers: dict[str, str]) -> None:
    """No envelope field reaches the client (the backend ETag has its own test: test_sse_leaks.py)."""
    lowered = {k.lower(): v for k, v in headers.items()}
    assert not any("s3proxy" in k or "s3proxy" in v for k, v in lowered.items() if k not in ("server",)), lowered


# the awscli, in process -----------------------------------------------------------------------


def aws_cli(proxy, *args: str, check: bool = True):
    """Run the real awscli (v1) driver in this process: the same code as `Endpoint.aws`, without its
    ~1.5 s interpreter start per call. Returns a CompletedProcess-like (returncode, stdout, stderr)."""
    import contextlib
    import io
    import subprocess

    from awscli.clidriver import create_clidriver

    from .conftest import REGION

    env = {"AWS_ACCESS_KEY_ID": proxy.access_key, "AWS_SECRET_ACCESS_KEY": proxy.secret_key, "AWS_DEFAULT_REGION": REGION,
           "AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull}
    saved = {k: os.environ.get(k) for k in env}
    out, err = io.StringIO(), io.StringIO()
    os.environ.update(env)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = create_clidriver().main(["--endpoint-url", proxy.url, *args])
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    proc = subprocess.CompletedProcess(["aws", *args], code, out.getvalue().encode(), err.getvalue().encode())
    if check and code != 0:
        raise AssertionError(f"aws {' '.join(args)} failed ({code}):\n{err.getvalue()}")
    return proc
