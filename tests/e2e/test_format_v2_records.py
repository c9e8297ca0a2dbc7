"""Issue 17: the proxy's internal records resist edit, swap between buckets, deletion and replay.

The records live in the backend's hidden bucket, so a backend holder can rewrite them: today they
are bare JSON, and rewriting a bucket's default from a customer KMS key to AES256, or the ETag in a
part list, goes unnoticed. Now each is sealed under IK_records and bound to its name and bucket,
and a bucket's record is anchored by generation in the keystore (FORMAT.md §15). Each attack is
played against a proxy that has not cached the record (a fresh one on the same keystore): the
request fails with the one integrity answer and never falls back to a weaker default.
"""

from __future__ import annotations

import json
import os

import pytest
from botocore.exceptions import ClientError

from .v2_helpers import INTERNAL_BUCKET, fetch, make_rig, new_bucket, once, refused

MB = 1024 * 1024


@pytest.fixture(scope="module")
def rig(tmp_path_factory, moto_server):
    yield from make_rig(tmp_path_factory, moto_server, "format-v2-records")


def _record(backend, name: str) -> bytes:
    return backend.get_object(Bucket=INTERNAL_BUCKET, Key=name)["Body"].read()


def _put_record(backend, name: str, data: bytes) -> None:
    backend.put_object(Bucket=INTERNAL_BUCKET, Key=name, Body=data)


def _flip(data: bytes, at: int = -5) -> bytes:
    return data[:at] + bytes([data[at] ^ 1]) + (data[at + 1:] if at != -1 else b"")


def _default_kms(s3, kms, bucket: str) -> str:
    key = kms.create_key()["KeyMetadata"]["Arn"]
    s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration={"Rules": [
        {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": key}}]})
    return key


def _no_object_written(backend, bucket: str) -> None:
    assert backend.list_objects_v2(Bucket=bucket).get("KeyCount", 0) == 0


# --- bucket-encryption/<bucket>: sealed, bound, anchored -----------------------------------------


def _attack_bucket_record(rig, attack) -> None:  # type: ignore[no-untyped-def]
    s3, kms, backend = rig.client(), rig.client("kms"), rig.backend()
    bucket, other = new_bucket(s3), new_bucket(s3)
    _default_kms(s3, kms, bucket)
    _default_kms(s3, kms, other)
    attack(backend, bucket, other, s3, kms)
    with rig.fresh() as another:
        s3b = once(another)
        refused(lambda: s3b.put_object(Bucket=bucket, Key="k", Body=b"must not be written under a weaker default"))
        refused(lambda: s3b.get_bucket_encryption(Bucket=bucket))
    _no_object_written(backend, bucket)


def test_bucket_default_rewritten_from_kms_to_aes256_as_bare_json_is_refused(rig):
    """The issue's attack: the record rewritten to SSE-S3 (as version 1 stored it)."""
    def attack(backend, bucket, other, s3, kms):  # type: ignore[no-untyped-def]
        _put_record(backend, f"bucket-encryption/{bucket}",
                    json.dumps({"algorithm": "AES256", "kms_key_id": None, "bucket_key": False, "blocked": []}).encode())
    _attack_bucket_record(rig, attack)


def test_bucket_record_edited_is_refused(rig):
    _attack_bucket_record(rig, lambda backend, bucket, *_: _put_record(
        backend, f"bucket-encryption/{bucket}", _flip(_record(backend, f"bucket-encryption/{bucket}"))))


def test_bucket_record_swapped_from_another_bucket_is_refused(rig):
    _attack_bucket_record(rig, lambda backend, bucket, other, *_: _put_record(
        backend, f"bucket-encryption/{bucket}", _record(backend, f"bucket-encryption/{other}")))


def test_bucket_record_deleted_while_anchored_is_refused(rig):
    _attack_bucket_record(rig, lambda backend, bucket, *_: backend.delete_object(
        Bucket=INTERNAL_BUCKET, Key=f"bucket-encryption/{bucket}"))


def test_bucket_record_replayed_from_an_older_generation_is_refused(rig):
    def attack(backend, bucket, other, s3, kms):  # type: ignore[no-untyped-def]
        old = _record(backend, f"bucket-encryption/{bucket}")
        s3.delete_bucket_encryption(Bucket=bucket)  # a newer generation: the tombstone
        _put_record(backend, f"bucket-encryption/{bucket}", old)
    _attack_bucket_record(rig, attack)


def test_bucket_record_sealed_for_a_never_configured_bucket_is_refused(rig):
    """A record moved onto a bucket that never had one (no anchor): the seal binds the bucket."""
    s3, kms, backend = rig.client(), rig.client("kms"), rig.backend()
    configured, plain = new_bucket(s3), new_bucket(s3)
    _default_kms(s3, kms, configured)
    _put_record(backend, f"bucket-encryption/{plain}", _record(backend, f"bucket-encryption/{configured}"))
    with rig.fresh() as another:
        refused(lambda: once(another).put_object(Bucket=plain, Key="k", Body=b"x"))


def test_bucket_configuration_survives_changes_deletion_and_a_deleted_bucket(rig):
    """The counterpart: generations advance, a tombstone means "none", a re-created bucket starts clean."""
    s3, kms = rig.client(), rig.client("kms")
    bucket = new_bucket(s3)
    key = _default_kms(s3, kms, bucket)
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    with rig.fresh() as another:
        assert once(another).head_object(Bucket=bucket, Key="k")["SSEKMSKeyId"] == key
    s3.delete_bucket_encryption(Bucket=bucket)
    with rig.fresh() as another:
        assert once(another).put_object(Bucket=bucket, Key="k2", Body=b"y")["ServerSideEncryption"] == "AES256"
    s3.delete_object(Bucket=bucket, Key="k")
    s3.delete_object(Bucket=bucket, Key="k2")
    s3.delete_bucket(Bucket=bucket)
    s3.create_bucket(Bucket=bucket)
    with rig.fresh() as another:
        assert once(another).put_object(Bucket=bucket, Key="k", Body=b"z")["ServerSideEncryption"] == "AES256"


# --- parts/<mpu id>: a completed multipart object's part list, MAC and ETag --------------------------


def _multipart(s3, bucket: str, key: str, data: bytes) -> str:
    up = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    half = len(data) // 2
    etags = [s3.upload_part(Bucket=bucket, Key=key, UploadId=up, PartNumber=n, Body=piece)["ETag"]
             for n, piece in ((1, data[:half]), (2, data[half:]))]
    return s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=up, MultipartUpload={
        "Parts": [{"PartNumber": n, "ETag": e} for n, e in ((1, etags[0]), (2, etags[1]))]})["ETag"]


def _parts_name(backend, bucket: str, key: str) -> str:
    return f"parts/{fetch(backend, bucket, key).metadata['s3proxy-mpu']}"


@pytest.mark.parametrize("attack", ["edited", "etag rewritten as bare JSON", "swapped", "deleted"])
def test_part_list_record_attacks_are_refused(rig, attack):
    s3, backend = rig.client(), rig.backend()
    bucket = new_bucket(s3)
    data = os.urandom(11 * MB)
    _multipart(s3, bucket, "a", data)
    _multipart(s3, bucket, "b", data)
    name, other = _parts_name(backend, bucket, "a"), _parts_name(backend, bucket, "b")
    if attack == "edited":
        _put_record(backend, name, _flip(_record(backend, name)))
    elif attack == "etag rewritten as bare JSON":  # the issue's attack on version 1's bare records
        _put_record(backend, name, json.dumps({"size": str(len(data)), "parts": f"{len(data) // 2}*2",
                                               "mac": "A" * 43, "etag": "0" * 32 + "-2"}).encode())
    elif attack == "swapped":  # b's record (same sizes, another data key's MAC and ETag) under a's name
        _put_record(backend, name, _record(backend, other))
    else:
        backend.delete_object(Bucket=INTERNAL_BUCKET, Key=name)
    with rig.fresh() as another:
        s3b = once(another)
        refused(lambda: s3b.head_object(Bucket=bucket, Key="a"))
        refused(lambda: s3b.get_object(Bucket=bucket, Key="a"))
        refused(lambda: s3b.get_object(Bucket=bucket, Key="a", Range="bytes=0-9"))
        refused(lambda: s3b.list_objects_v2(Bucket=bucket, Prefix="a"))
        assert s3b.get_object(Bucket=bucket, Key="b")["Body"].read() == data


# --- uploads/<id> and uploads/<id>/<n>: an open upload's mode and its parts --------------------------


def test_upload_record_edited_or_swapped_between_buckets_is_refused_and_deleted_is_no_such_upload(rig):
    s3, backend = rig.client(), rig.backend()
    first, second = new_bucket(s3), new_bucket(s3)
    ups = {b: s3.create_multipart_upload(Bucket=b, Key="k", ServerSideEncryption="aws:kms")["UploadId"] for b in (first, second)}
    edited = s3.create_multipart_upload(Bucket=first, Key="e")["UploadId"]
    gone = s3.create_multipart_upload(Bucket=first, Key="g")["UploadId"]
    _put_record(backend, f"uploads/{edited}", _flip(_record(backend, f"uploads/{edited}")))
    _put_record(backend, f"uploads/{ups[second]}", _record(backend, f"uploads/{ups[first]}"))  # first's mode and key in second
    backend.delete_object(Bucket=INTERNAL_BUCKET, Key=f"uploads/{gone}")
    with rig.fresh() as another:
        s3b = once(another)
        refused(lambda: s3b.upload_part(Bucket=first, Key="e", UploadId=edited, PartNumber=1, Body=b"x"))
        refused(lambda: s3b.upload_part(Bucket=second, Key="k", UploadId=ups[second], PartNumber=1, Body=b"x"))
        with pytest.raises(ClientError) as caught:
            s3b.upload_part(Bucket=first, Key="g", UploadId=gone, PartNumber=1, Body=b"x")
        assert caught.value.response["Error"]["Code"] == "NoSuchUpload"
        with pytest.raises(ClientError) as caught:  # a client naming another bucket's upload: its mistake, not tampering
            s3b.upload_part(Bucket=second, Key="k", UploadId=ups[first], PartNumber=1, Body=b"x")
        assert caught.value.response["Error"]["Code"] == "NoSuchUpload"
        s3b.upload_part(Bucket=first, Key="k", UploadId=ups[first], PartNumber=1, Body=b"untouched upload")


def test_part_record_edited_is_refused_and_replayed_is_not_accepted(rig):
    s3, backend = rig.client(), rig.backend()
    bucket = new_bucket(s3)
    up = s3.create_multipart_upload(Bucket=bucket, Key="k")["UploadId"]
    part = os.urandom(5 * MB)
    first = s3.upload_part(Bucket=bucket, Key="k", UploadId=up, PartNumber=1, Body=part)["ETag"]
    old = _record(backend, f"uploads/{up}/1")
    again = s3.upload_part(Bucket=bucket, Key="k", UploadId=up, PartNumber=1, Body=os.urandom(5 * MB))["ETag"]
    last = s3.upload_part(Bucket=bucket, Key="k", UploadId=up, PartNumber=2, Body=b"tail")["ETag"]
    _put_record(backend, f"uploads/{up}/2", _flip(_record(backend, f"uploads/{up}/2")))
    with rig.fresh() as another:
        refused(lambda: once(another).list_parts(Bucket=bucket, Key="k", UploadId=up))
    s3.upload_part(Bucket=bucket, Key="k", UploadId=up, PartNumber=2, Body=b"tail")  # a good record again
    _put_record(backend, f"uploads/{up}/1", old)  # the first upload's record, beside the second upload's data
    with rig.fresh() as another:
        s3b = once(another)
        with pytest.raises(ClientError) as caught:  # the record names another backend part: not this one
            s3b.complete_multipart_upload(Bucket=bucket, Key="k", UploadId=up, MultipartUpload={
                "Parts": [{"PartNumber": 1, "ETag": first}, {"PartNumber": 2, "ETag": last}]})
        assert caught.value.response["Error"]["Code"] in ("InternalError", "InvalidPart")
        with pytest.raises(ClientError) as caught:
            s3b.complete_multipart_upload(Bucket=bucket, Key="k", UploadId=up, MultipartUpload={
                "Parts": [{"PartNumber": 1, "ETag": again}, {"PartNumber": 2, "ETag": last}]})
        assert caught.value.response["Error"]["Code"] in ("InternalError", "InvalidPart")


def test_records_are_sealed_not_json(rig):
    """What the backend holds: 0x02 and sealed bytes (no bucket name, mode or ETag in clear)."""
    s3, kms, backend = rig.client(), rig.client("kms"), rig.backend()
    bucket = new_bucket(s3)
    key = _default_kms(s3, kms, bucket)
    etag = _multipart(s3, bucket, "mp", os.urandom(11 * MB))
    for name in (f"bucket-encryption/{bucket}", _parts_name(backend, bucket, "mp")):
        data = _record(backend, name)
        assert data[:1] == b"\x02" and key.encode() not in data and etag.strip('"').encode() not in data


def test_bucket_owner_record_edited_refuses_the_bucket_and_leaves_it_out_of_every_listing(rig):
    """bucket-owner/<bucket> decides who may use a bucket: edited, the bucket is refused to everyone,
    and ListBuckets leaves it out (attributed to no one) while still listing the caller's others."""
    s3, backend = rig.client(), rig.backend()
    damaged, intact = new_bucket(s3, "own"), new_bucket(s3, "own")
    name = f"bucket-owner/{damaged}"
    _put_record(backend, name, _flip(_record(backend, name)))
    with rig.fresh() as another:
        s3b = once(another)
        refused(lambda: s3b.put_object(Bucket=damaged, Key="k", Body=b"x"))
        refused(lambda: s3b.list_objects_v2(Bucket=damaged))
        listed = {b["Name"] for b in s3b.list_buckets()["Buckets"]}
    assert intact in listed and damaged not in listed
