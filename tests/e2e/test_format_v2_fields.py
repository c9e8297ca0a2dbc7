"""Issue 17: no field the proxy returns can be changed in the backend without the read failing.

Over a real S3 backend (moto), each stored field of an object is edited directly in the backend,
with the backend's own credentials: every bound content header (Content-Type to text/html, ...),
each user-metadata key (edited, added, removed), the ETag, the checksum, the size, the encryption
fields. GET, HEAD, a listing by a proxy that has not seen the object, and a copy must all refuse
it with the one integrity answer (500 InternalError, FORMAT.md §17), in every mode. A spliced or
relabelled object answers the same, never a KMS.* error; and the failure is one loud log line.
"""

from __future__ import annotations

import datetime as dt
import logging
import os

import pytest

from .v2_helpers import COPY_SOURCE_KEY, MODES, Raw, fetch, make_rig, new_bucket, once, refused, rewrite, store

HEADERS = dict(ContentType="text/plain", ContentEncoding="identity", ContentDisposition="inline", ContentLanguage="en",
               CacheControl="max-age=60", Expires=dt.datetime(2031, 5, 6, tzinfo=dt.UTC))
METADATA = {"colour": "blue", "shape": "round"}


def _etag_field(raw: Raw) -> str:
    return "s3proxy-setag" if "s3proxy-setag" in raw.metadata else "s3proxy-etag"


def _other(raw: Raw, other: Raw, field: str) -> Raw:
    return raw.edited(metadata={field: other.metadata[field]})


# name -> how the backend holder edits the stored object (`other`: another object of the same mode)
EDITS = {
    "content-type to text/html": lambda raw, other: raw.edited(headers={"ContentType": "text/html"}),
    "content-type removed": lambda raw, other: raw.edited(headers={"ContentType": None}),
    "content-encoding": lambda raw, other: raw.edited(headers={"ContentEncoding": "gzip"}),
    "content-disposition": lambda raw, other: raw.edited(headers={"ContentDisposition": 'attachment; filename="x.html"'}),
    "content-language": lambda raw, other: raw.edited(headers={"ContentLanguage": "de"}),
    "cache-control": lambda raw, other: raw.edited(headers={"CacheControl": "public, max-age=31536000"}),
    "expires": lambda raw, other: raw.edited(headers={"Expires": "Sat, 01 Jan 2050 00:00:00 GMT"}),
    "user metadata edited": lambda raw, other: raw.edited(metadata={"colour": "red"}),
    "user metadata added": lambda raw, other: raw.edited(metadata={"admin": "true"}),
    "user metadata removed": lambda raw, other: raw.edited(metadata={"shape": None}),
    "etag from another object": lambda raw, other: _other(raw, other, _etag_field(raw)),
    "etag removed": lambda raw, other: raw.edited(metadata={_etag_field(raw): None}),
    "checksum from another object": lambda raw, other: _other(raw, other, "s3proxy-cks"),
    "checksum removed": lambda raw, other: raw.edited(metadata={"s3proxy-cks": None}),
    "size": lambda raw, other: raw.edited(metadata={"s3proxy-size": str(int(raw.metadata["s3proxy-size"]) - 1)}),
    "wrapped key from another object": lambda raw, other: _other(raw, other, "s3proxy-key"),
    "metadata MAC removed": lambda raw, other: raw.edited(metadata={"s3proxy-mm": None}),
    "whole metadata of another object": lambda raw, other: raw.edited(metadata=dict(other.metadata)),
}


@pytest.fixture(scope="module")
def rig(tmp_path_factory, moto_server):
    yield from make_rig(tmp_path_factory, moto_server, "format-v2-fields")


@pytest.mark.parametrize("mode", list(MODES))
def test_every_returned_field_edited_in_the_backend_is_refused_by_get_head_listing_and_copy(rig, mode):
    put_args, read_args = MODES[mode]
    copy_args = COPY_SOURCE_KEY if mode == "sse-c" else {}
    s3, backend = rig.client(), rig.backend()
    bucket = new_bucket(s3)
    body = os.urandom(1000)
    for name in [*EDITS, "other"]:
        s3.put_object(Bucket=bucket, Key=name, Body=body, Metadata=METADATA, ChecksumAlgorithm="SHA256", **HEADERS, **put_args)
    other = fetch(backend, bucket, "other")
    for name, edit in EDITS.items():
        rewrite(backend, bucket, name, lambda raw, edit=edit: edit(raw, other))
    s3.put_object(Bucket=bucket, Key="untouched", Body=body, **put_args)
    for name in EDITS:
        refused(lambda name=name: s3.get_object(Bucket=bucket, Key=name, **read_args))
        refused(lambda name=name: s3.head_object(Bucket=bucket, Key=name, **read_args))
        refused(lambda name=name: s3.copy_object(Bucket=bucket, Key=f"copy-of/{name}", CopySource={"Bucket": bucket, "Key": name},
                                       **copy_args, **put_args))
    with rig.fresh() as another:  # a proxy that never saw these objects lists them from the backend
        s3b = once(another)
        for name in EDITS:
            refused(lambda name=name: s3b.list_objects_v2(Bucket=bucket, Prefix=name))
        assert [o["Key"] for o in s3b.list_objects_v2(Bucket=bucket, Prefix="untouched")["Contents"]] == ["untouched"]
        assert s3b.get_object(Bucket=bucket, Key="other", **read_args)["Body"].read() == body


def test_an_unedited_object_shows_exactly_what_was_written(rig):
    """The counterpart: every bound header, the metadata and the checksum come back as written,
    also through a proxy that did not write them."""
    s3 = rig.client()
    bucket = new_bucket(s3)
    put = s3.put_object(Bucket=bucket, Key="k", Body=b"payload", Metadata=METADATA, ChecksumAlgorithm="SHA256", **HEADERS)
    with rig.fresh() as another:
        head = once(another).head_object(Bucket=bucket, Key="k", ChecksumMode="ENABLED")
    assert head["ETag"] == put["ETag"] and head["Metadata"] == METADATA and head["ChecksumSHA256"] == put["ChecksumSHA256"]
    assert (head["ContentType"], head["ContentEncoding"], head["ContentDisposition"], head["ContentLanguage"],
            head["CacheControl"]) == ("text/plain", "identity", "inline", "en", "max-age=60")
    assert head["ResponseMetadata"]["HTTPHeaders"]["expires"] == "Tue, 06 May 2031 00:00:00 GMT"


@pytest.mark.parametrize("mode", list(MODES))
def test_spliced_moved_or_relabelled_objects_answer_internal_error_never_a_kms_error(rig, mode):
    """Today a wrap moved to another name or another mode surfaces as 400 KMS.InvalidCiphertextException,
    KMS.NotFoundException or AccessDenied; SECURITY.md promises InternalError."""
    put_args, read_args = MODES[mode]
    s3, backend = rig.client(), rig.backend()
    bucket, elsewhere = new_bucket(s3), new_bucket(s3)
    s3.put_object(Bucket=bucket, Key="original", Body=b"original data", **put_args)
    raw = fetch(backend, bucket, "original")
    store(backend, bucket, "moved", raw)  # ciphertext and metadata under another key
    store(backend, elsewhere, "original", raw)  # ... and in another bucket
    relabelled = "AES256" if mode != "sse-s3" else "aws:kms"
    store(backend, bucket, "relabelled", raw.edited(metadata={"s3proxy-mode": relabelled}))
    for bucket_name, key in ((bucket, "moved"), (elsewhere, "original"), (bucket, "relabelled")):
        for args in ({}, read_args):
            refused(lambda b=bucket_name, k=key, a=args: s3.get_object(Bucket=b, Key=k, **a))
            refused(lambda b=bucket_name, k=key, a=args: s3.head_object(Bucket=b, Key=k, **a))
    assert s3.get_object(Bucket=bucket, Key="original", **read_args)["Body"].read() == b"original data"


def test_sse_kms_wrap_spliced_from_another_key_is_internal_error(rig):
    """The wrapped key of an object under KMS key A put beside another object's metadata: the
    metadata MAC refuses it before any KMS call (today: KMS.InvalidCiphertextException)."""
    s3, kms, backend = rig.client(), rig.client("kms"), rig.backend()
    bucket = new_bucket(s3)
    key_a, key_b = (kms.create_key()["KeyMetadata"]["Arn"] for _ in range(2))
    s3.put_object(Bucket=bucket, Key="a", Body=b"aaa", ServerSideEncryption="aws:kms", SSEKMSKeyId=key_a)
    s3.put_object(Bucket=bucket, Key="b", Body=b"bbb", ServerSideEncryption="aws:kms", SSEKMSKeyId=key_b)
    a = fetch(backend, bucket, "a")
    rewrite(backend, bucket, "b", lambda raw: raw.edited(metadata={"s3proxy-key": a.metadata["s3proxy-key"],
                                                                     "s3proxy-kid": a.metadata["s3proxy-kid"]}))
    refused(lambda: s3.get_object(Bucket=bucket, Key="b"))
    refused(lambda: s3.head_object(Bucket=bucket, Key="b"))


def test_the_failure_is_one_loud_log_line_with_the_request_id_object_and_check(rig, caplog):
    s3, backend = rig.client(), rig.backend()
    bucket = new_bucket(s3)
    s3.put_object(Bucket=bucket, Key="logged", Body=b"x", ContentType="text/plain")
    rewrite(backend, bucket, "logged", lambda raw: raw.edited(headers={"ContentType": "text/html"}))
    caplog.set_level(logging.ERROR, logger="s3proxy.integrity")
    with pytest.raises(Exception) as caught:
        s3.get_object(Bucket=bucket, Key="logged")
    request_id = caught.value.response["ResponseMetadata"]["RequestId"]
    lines = [r.getMessage() for r in caplog.records if r.name == "s3proxy.integrity"]
    assert len(lines) == 1, lines
    assert request_id in lines[0] and f"/{bucket}/logged" in lines[0] and "s3proxy-mm" in lines[0]
    assert "s3proxy-mm" not in str(caught.value.response)  # the check's name is for the log only


def test_head_and_listing_of_sse_kms_objects_make_no_kms_call(rig):
    """The metadata MAC is keyed by the proxy's integrity key, not the data key: HEAD and listings of
    SSE-KMS objects verify every field without kms:Decrypt, as AWS's HeadObject needs none."""
    s3 = rig.client()
    bucket = new_bucket(s3)
    s3.put_object(Bucket=bucket, Key="k", Body=b"x", ServerSideEncryption="aws:kms", Metadata=METADATA)
    with rig.fresh() as another:  # nothing cached: HEAD reads and verifies the metadata from the backend
        log = another.data_dir / "kms" / "audit.log"  # the other proxy's own audit chain
        before = log.read_bytes().count(b"\n") if log.exists() else 0
        s3b = once(another)
        assert s3b.head_object(Bucket=bucket, Key="k")["Metadata"] == METADATA
        assert [o["Key"] for o in s3b.list_objects_v2(Bucket=bucket)["Contents"]] == ["k"]
        calls = log.read_bytes().count(b"\n") - before
        assert calls == 0, log.read_text().splitlines()[before:]
        s3b.get_object(Bucket=bucket, Key="k")["Body"].read()
        assert log.read_bytes().count(b"\n") - before == 1  # GET: one Decrypt
