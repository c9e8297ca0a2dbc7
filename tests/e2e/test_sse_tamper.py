"""Tampering at rest: a flipped byte, a truncation, swapped chunks, edited envelope metadata, or an
object's ciphertext and metadata copied under another name directly in the backend. The GET fails
(an S3 error or a broken transfer), never returns wrong bytes (DESIGN.md principle 2; FORMAT.md).

Body edits run on both backends (fs: the blob file in place; moto: rewritten through boto3);
metadata edits and splices need the backend's metadata API, so they run on moto."""

from __future__ import annotations

import http.client

import pytest
import urllib3
from botocore.exceptions import BotoCoreError, ClientError

from s3proxy.format.chunks import TAG_SIZE

from .sse_helpers import C, CustomerKey, at_rest, body_of, fs_blob_paths, single_attempt_client, unique

KEY = CustomerKey.new()
MODES = {
    "sse-s3": ({"ServerSideEncryption": "AES256"}, {}),
    "sse-kms": ({"ServerSideEncryption": "aws:kms"}, {}),
    "sse-c": (KEY.args(), KEY.args()),
}
SIZE = 3 * C + 7
STORED_CHUNK = C + TAG_SIZE


def read_fails(fn, expected: bytes | None = None) -> None:
    """fn() is a GET: it must raise, or (when `expected` is given) return exactly `expected`."""
    try:
        data = fn()["Body"].read()
    except (ClientError, BotoCoreError, urllib3.exceptions.HTTPError, http.client.HTTPException, ConnectionError):
        return
    if expected is not None and data == expected:
        return
    raise AssertionError(f"a tampered object was read back ({len(data)} bytes)")


def _rewrite(proxy, bucket: str, key: str, edit) -> None:
    """Replace the stored bytes of bucket/key with edit(bytes), keeping its metadata."""
    backend = proxy.backend_client()
    if backend is None:
        paths = fs_blob_paths(proxy, bucket, key)
        assert len(paths) == 1
        paths[0].write_bytes(edit(paths[0].read_bytes()))  # the index still names the same blob
        return
    stored = at_rest(proxy, bucket, key)
    backend.put_object(Bucket=bucket, Key=key, Body=edit(stored.body), Metadata=stored.metadata)


def _flip(offset: int):
    return lambda b: b[:offset] + bytes([b[offset] ^ 0x01]) + b[offset + 1 :]


def _swap_chunks(b: bytes) -> bytes:
    return b[STORED_CHUNK : 2 * STORED_CHUNK] + b[:STORED_CHUNK] + b[2 * STORED_CHUNK :]


EDITS = {
    "flip-first-chunk": _flip(10),  # caught before any byte is sent: an S3 error
    "flip-third-chunk": _flip(2 * STORED_CHUNK + 5),  # caught mid-stream: the transfer breaks
    "flip-final-tag": _flip(-1),
    "truncate-inside-chunk": lambda b: b[:-20],
    "truncate-at-chunk-boundary": lambda b: b[: 2 * STORED_CHUNK],  # whole chunks, final one dropped
    "swap-chunks": _swap_chunks,
}


# The chunk format is the same in every mode: every edit under SSE-S3, two representative ones
# (mid-stream failure, whole chunks dropped) under the modes whose keys come from elsewhere.
CASES = [("sse-s3", e) for e in EDITS] + [
    (m, e) for m in ("sse-kms", "sse-c") for e in ("flip-third-chunk", "truncate-at-chunk-boundary")
]


@pytest.mark.parametrize("mode,edit", CASES, ids=[f"{m}-{e}" for m, e in CASES])
def test_tampered_body_is_never_returned(proxy, s3, bucket, mode, edit):
    put_args, read_args = MODES[mode]
    data = body_of(SIZE, edit)
    s3.put_object(Bucket=bucket, Key="obj", Body=data, **put_args)
    _rewrite(proxy, bucket, "obj", EDITS[edit])
    read_fails(lambda: s3.get_object(Bucket=bucket, Key="obj", **read_args))
    # a ranged GET reads only its chunks: it is refused, or (away from the damage) exactly right
    for first, last in ((0, 99), (2 * C - 5, 2 * C + 5), (SIZE - 3, SIZE - 1)):
        read_fails(
            lambda first=first, last=last: s3.get_object(Bucket=bucket, Key="obj", Range=f"bytes={first}-{last}", **read_args),
            expected=data[first : last + 1],
        )


@pytest.fixture
def s3(proxy):
    return single_attempt_client(proxy)


# metadata edits and splices need the backend's metadata API: these run in front of moto only
moto_only = pytest.mark.parametrize("proxy", ["s3"], indirect=True, ids=["moto-backend"])


@moto_only
@pytest.mark.parametrize("mode", list(MODES))
def test_ciphertext_copied_under_another_name_fails(proxy, s3, bucket, mode):
    """The wrapped key is bound to the object's ARN: moving ciphertext and envelope elsewhere breaks it."""
    put_args, read_args = MODES[mode]
    s3.put_object(Bucket=bucket, Key="original", Body=body_of(SIZE, mode), **put_args)
    proxy.backend_client().copy_object(Bucket=bucket, Key="moved", CopySource={"Bucket": bucket, "Key": "original"})
    other = unique("other-bucket")
    s3.create_bucket(Bucket=other)
    proxy.backend_client().copy_object(Bucket=other, Key="original", CopySource={"Bucket": bucket, "Key": "original"})
    read_fails(lambda: s3.get_object(Bucket=bucket, Key="moved", **read_args))
    read_fails(lambda: s3.get_object(Bucket=other, Key="original", **read_args))
    assert s3.get_object(Bucket=bucket, Key="original", **read_args)["Body"].read() == body_of(SIZE, mode)


@pytest.mark.parametrize("field,value", [
    ("s3proxy-size", str(SIZE - 1)),  # the plaintext size is MAC'd
    ("s3proxy-cs", str(2 * C)),  # so is the chunk size
    ("s3proxy-mac", "A" * 43),  # the MAC itself
    ("s3proxy-key", "AAAA"),  # the wrapped key
])
@moto_only
def test_edited_envelope_fails(proxy, s3, bucket, field, value):
    s3.put_object(Bucket=bucket, Key="obj", Body=body_of(SIZE), ServerSideEncryption="aws:kms")
    stored = at_rest(proxy, bucket, "obj")
    proxy.backend_client().put_object(Bucket=bucket, Key="obj", Body=stored.body, Metadata={**stored.metadata, field: value})
    read_fails(lambda: s3.get_object(Bucket=bucket, Key="obj"))


@moto_only
def test_swapped_envelopes_between_two_objects_fail(proxy, s3, bucket):
    """Ciphertext of one object under the metadata of another of the same size (same bucket and key)."""
    s3.put_object(Bucket=bucket, Key="obj", Body=body_of(SIZE, "a"))
    first = at_rest(proxy, bucket, "obj")
    s3.put_object(Bucket=bucket, Key="obj", Body=body_of(SIZE, "b"))
    second = at_rest(proxy, bucket, "obj")
    proxy.backend_client().put_object(Bucket=bucket, Key="obj", Body=first.body, Metadata=second.metadata)
    read_fails(lambda: s3.get_object(Bucket=bucket, Key="obj"))


@pytest.mark.parametrize("mode", list(MODES))
def test_appended_bytes_at_rest_fail_the_get_instead_of_a_complete_200(proxy, s3, bucket, mode):
    """FORMAT.md §3: "bytes after the short chunk are trailing garbage ... fail". Today the proxy notices
    only after it has sent every plaintext byte (Content-Length satisfied), so the client sees a complete,
    successful GET of a tampered object. The stored length is known before the headers go out (HEAD /
    GET info.size vs the envelope's ciphertext size): the GET should be refused there."""
    put_args, read_args = MODES[mode]
    s3.put_object(Bucket=bucket, Key="obj", Body=body_of(SIZE), **put_args)
    _rewrite(proxy, bucket, "obj", lambda b: b + b"\x00" * TAG_SIZE)
    read_fails(lambda: s3.get_object(Bucket=bucket, Key="obj", **read_args))


@moto_only
def test_kms_object_relabelled_as_sse_s3_at_rest_does_not_bypass_the_key_policy(proxy, bucket):
    """An SSE-KMS object whose stored mode is edited to AES256 must not open: SSE-S3 unwraps with the
    proxy's service caller, which skips key policies, so today anyone (here bob, whom the key policy
    denies) reads it, and the audit log shows the proxy, not bob, using alice's key."""
    from .conftest import OTHER_ACCESS_KEY, OTHER_SECRET_KEY
    from .sse_helpers import account_wide_policy, bob_arn, expect_error, kms_client

    kms = kms_client(proxy)
    key_id = kms.create_key()["KeyMetadata"]["KeyId"]
    kms.put_key_policy(KeyId=key_id, PolicyName="default", Policy=account_wide_policy(deny_user_arn=bob_arn()))
    alice, bob = proxy.client(), single_attempt_client(proxy, access_key=OTHER_ACCESS_KEY, secret_key=OTHER_SECRET_KEY)
    alice.put_object(Bucket=bucket, Key="obj", Body=b"alice only", ServerSideEncryption="aws:kms", SSEKMSKeyId=key_id)
    expect_error(lambda: bob.get_object(Bucket=bucket, Key="obj"), 403, "AccessDenied")
    stored = at_rest(proxy, bucket, "obj")
    proxy.backend_client().put_object(
        Bucket=bucket, Key="obj", Body=stored.body, Metadata={**stored.metadata, "s3proxy-mode": "AES256"}
    )
    read_fails(lambda: bob.get_object(Bucket=bucket, Key="obj"))
