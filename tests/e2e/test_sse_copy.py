"""CopyObject between any two encryption modes, and in place (re-encryption, SSE-C key rotation).

Contract: reference s3-sse-and-kms.md §1.7 (SSE headers apply to the target only; an SSE-C source
needs the copy-source key; no target SSE → bucket default; key rotation = in-place copy),
§1.3 (Copy with SSE-S3 → ETag = MD5 of the content), §1.2 (in-place copy that changes nothing)."""

from __future__ import annotations

import hashlib

import pytest

from .sse_helpers import CustomerKey, assert_sealed, body_of, expect_error, kms_client, unique

SRC_KEY, DST_KEY = CustomerKey.new(), CustomerKey.new()

# (name, args on PUT / as copy target, args to read, stored mode, copy-source args)
MODES = {
    "sse-s3": ({"ServerSideEncryption": "AES256"}, {}, "AES256", {}),
    "sse-kms": ({"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": "alias/aws/s3"}, {}, "aws:kms", {}),
    "sse-c": (SRC_KEY.args(), SRC_KEY.args(), "SSE-C", SRC_KEY.copy_source_args()),
}
TARGETS = {
    # no SSE on the copy: the bucket default, SSE-S3 ([L] an SSE-C source copied without target SSE-C came back AES256)
    "default": ({}, {}, "AES256"),
    "sse-s3": ({"ServerSideEncryption": "AES256"}, {}, "AES256"),
    "sse-kms": ({"ServerSideEncryption": "aws:kms"}, {}, "aws:kms"),
    "sse-c": (DST_KEY.args(), DST_KEY.args(), "SSE-C"),
}


@pytest.fixture(scope="module")
def copy_bucket(proxy):
    name = unique("copy")
    proxy.client().create_bucket(Bucket=name)
    return name


@pytest.mark.parametrize("target", list(TARGETS))
@pytest.mark.parametrize("source", list(MODES))
def test_copy_between_modes(proxy, copy_bucket, source, target):
    s3 = proxy.client()
    put_args, read_args, _, cpsrc = MODES[source]
    dst_args, dst_read, dst_mode = TARGETS[target]
    src, dst = unique(f"src-{source}"), unique(f"dst-{target}")
    data = body_of(3 * 65536 + 11, src)  # several chunks: the data key is re-wrapped, the chunks stay valid
    s3.put_object(Bucket=copy_bucket, Key=src, Body=data, **put_args)

    copied = s3.copy_object(Bucket=copy_bucket, Key=dst, CopySource={"Bucket": copy_bucket, "Key": src}, **cpsrc, **dst_args)
    if dst_mode == "SSE-C":
        assert copied["SSECustomerKeyMD5"] == DST_KEY.md5 and "ServerSideEncryption" not in copied
    else:
        assert copied["ServerSideEncryption"] == dst_mode
    got = s3.get_object(Bucket=copy_bucket, Key=dst, **dst_read)
    assert got["Body"].read() == data
    assert got["ETag"] == copied["CopyObjectResult"]["ETag"]
    secrets = (SRC_KEY.raw, DST_KEY.raw)
    assert_sealed(proxy, copy_bucket, dst, data, dst_mode, secrets=secrets)
    assert s3.get_object(Bucket=copy_bucket, Key=src, **read_args)["Body"].read() == data  # the source is untouched
    if dst_mode == "SSE-C":  # the target needs its own key: none is 400, the source's key is 403 (§1.2)
        expect_error(lambda: s3.get_object(Bucket=copy_bucket, Key=dst), 400, "InvalidRequest")
        expect_error(lambda: s3.get_object(Bucket=copy_bucket, Key=dst, **SRC_KEY.args()), 403, "AccessDenied")


@pytest.mark.parametrize("source", list(MODES))
def test_copy_to_sse_s3_target_has_md5_etag_even_from_kms_or_ssec_source(proxy, copy_bucket, source):
    """§1.3: "PUT, POST or Copy with plaintext or SSE-S3 → ETag = MD5(content)", whatever the source's mode."""
    s3 = proxy.client()
    put_args, _, _, cpsrc = MODES[source]
    src, dst = unique("md5-src"), unique("md5-dst")
    data = body_of(1000, src)
    s3.put_object(Bucket=copy_bucket, Key=src, Body=data, **put_args)
    copied = s3.copy_object(Bucket=copy_bucket, Key=dst, CopySource={"Bucket": copy_bucket, "Key": src},
                            ServerSideEncryption="AES256", **cpsrc)
    assert copied["CopyObjectResult"]["ETag"].strip('"') == hashlib.md5(data).hexdigest()
    assert s3.head_object(Bucket=copy_bucket, Key=dst)["ETag"].strip('"') == hashlib.md5(data).hexdigest()


def test_ssec_key_rotation_by_in_place_copy(proxy, copy_bucket):
    """§1.7: rotate an SSE-C key by copying the object onto itself with the old key as copy source and
    the new key as target; afterwards only the new key opens it."""
    s3 = proxy.client()
    old, new = CustomerKey.new(), CustomerKey.new()
    key, data = unique("rotate"), body_of(70000, "rotate")
    s3.put_object(Bucket=copy_bucket, Key=key, Body=data, **old.args())
    s3.copy_object(
        Bucket=copy_bucket, Key=key, CopySource={"Bucket": copy_bucket, "Key": key}, **old.copy_source_args(), **new.args()
    )
    assert s3.get_object(Bucket=copy_bucket, Key=key, **new.args())["Body"].read() == data
    expect_error(lambda: s3.get_object(Bucket=copy_bucket, Key=key, **old.args()), 403, "AccessDenied")
    assert_sealed(proxy, copy_bucket, key, data, "SSE-C", secrets=(old.raw, new.raw))


def test_sse_s3_to_sse_kms_in_place(proxy, copy_bucket):
    """Changing the encryption makes an in-place copy legal (§1.2 row's message names encryption attributes)."""
    s3, kms = proxy.client(), kms_client(proxy)
    key_arn = kms.create_key()["KeyMetadata"]["Arn"]
    key, data = unique("inplace"), body_of(5000, "inplace")
    s3.put_object(Bucket=copy_bucket, Key=key, Body=data)
    out = s3.copy_object(Bucket=copy_bucket, Key=key, CopySource={"Bucket": copy_bucket, "Key": key},
                         ServerSideEncryption="aws:kms", SSEKMSKeyId=key_arn)
    assert out["ServerSideEncryption"] == "aws:kms" and out["SSEKMSKeyId"] == key_arn
    head = s3.head_object(Bucket=copy_bucket, Key=key)
    assert head["ServerSideEncryption"] == "aws:kms" and head["SSEKMSKeyId"] == key_arn
    assert s3.get_object(Bucket=copy_bucket, Key=key)["Body"].read() == data
    assert assert_sealed(proxy, copy_bucket, key, data, "aws:kms").metadata["s3proxy-kid"] == key_arn


def test_in_place_copy_with_new_metadata_is_legal_and_keeps_mode(proxy, copy_bucket):
    """REPLACE metadata changes the object, so the in-place copy is allowed; without SSE headers the
    object gets the bucket default (SSE-S3), as §1.7 says for any copy target."""
    s3 = proxy.client()
    key = unique("meta")
    s3.put_object(Bucket=copy_bucket, Key=key, Body=b"abc", ServerSideEncryption="AES256")
    expect_error(lambda: s3.copy_object(Bucket=copy_bucket, Key=key, CopySource={"Bucket": copy_bucket, "Key": key}),
                 400, "InvalidRequest", "copy an object to itself")
    s3.copy_object(Bucket=copy_bucket, Key=key, CopySource={"Bucket": copy_bucket, "Key": key},
                   MetadataDirective="REPLACE", Metadata={"colour": "red"})
    head = s3.head_object(Bucket=copy_bucket, Key=key)
    assert head["Metadata"] == {"colour": "red"} and head["ServerSideEncryption"] == "AES256"
    assert s3.get_object(Bucket=copy_bucket, Key=key)["Body"].read() == b"abc"
