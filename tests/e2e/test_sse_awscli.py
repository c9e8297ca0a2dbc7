"""The real awscli through the proxy: `aws s3 cp` with --sse, --sse-kms-key-id, --sse-c (single PUT
and a multipart upload past the CLI's 8 MiB threshold), copies with --sse-c-copy-source, and
`aws s3api head-object` / `get-object --range` with an SSE-C key; every object checked at rest."""

from __future__ import annotations

import json
import uuid

import pytest

from .sse_helpers import MIB, CustomerKey, assert_sealed, aws_cli, body_of, kms_client


@pytest.fixture
def files(tmp_path):
    data = body_of(200_000, "cli")
    big = body_of(8 * MIB + 1000, "cli-big")  # above awscli's multipart_threshold (8 MiB): CreateMultipartUpload + parts
    (tmp_path / "small").write_bytes(data)
    (tmp_path / "big").write_bytes(big)
    key, other = CustomerKey.new(), CustomerKey.new()
    (tmp_path / "key").write_bytes(key.raw)
    (tmp_path / "other").write_bytes(other.raw)
    return tmp_path, data, big, key, other


def _json(proc) -> dict:
    return json.loads(proc.stdout)


def test_cli_sse_s3_and_sse_kms_by_alias(proxy, bucket, files):
    tmp, data, _, _, _ = files
    alias = f"alias/cli-{uuid.uuid4().hex[:8]}"
    key_arn = kms_client(proxy).create_key()["KeyMetadata"]["Arn"]
    kms_client(proxy).create_alias(AliasName=alias, TargetKeyId=key_arn)

    aws_cli(proxy, "s3", "cp", str(tmp / "small"), f"s3://{bucket}/sse-s3", "--sse", "AES256")
    aws_cli(proxy, "s3", "cp", str(tmp / "small"), f"s3://{bucket}/sse-kms", "--sse", "aws:kms", "--sse-kms-key-id", alias)
    head = _json(aws_cli(proxy, "s3api", "head-object", "--bucket", bucket, "--key", "sse-s3"))
    assert head["ServerSideEncryption"] == "AES256" and head["ContentLength"] == len(data)
    head = _json(aws_cli(proxy, "s3api", "head-object", "--bucket", bucket, "--key", "sse-kms"))
    assert head["ServerSideEncryption"] == "aws:kms" and head["SSEKMSKeyId"] == key_arn
    s3 = proxy.client()
    for name, mode in (("sse-s3", "AES256"), ("sse-kms", "aws:kms")):
        assert s3.get_object(Bucket=bucket, Key=name)["Body"].read() == data  # CLI downloads: test_cli_sse_c_*
        assert_sealed(proxy, bucket, name, data, mode)


def test_cli_sse_c_put_get_multipart_head_and_range(proxy, bucket, files):
    tmp, data, big, key, other = files
    ssec = ["--sse-c", "AES256", "--sse-c-key", f"fileb://{tmp / 'key'}"]
    aws_cli(proxy, "s3", "cp", str(tmp / "small"), f"s3://{bucket}/small", *ssec)
    aws_cli(proxy, "s3", "cp", str(tmp / "big"), f"s3://{bucket}/big", *ssec)
    aws_cli(proxy, "s3", "cp", f"s3://{bucket}/big", str(tmp / "big.out"), *ssec)
    assert (tmp / "big.out").read_bytes() == big
    assert proxy.client().get_object(Bucket=bucket, Key="small", **key.args())["Body"].read() == data
    for name, content in (("small", data), ("big", big)):
        assert_sealed(proxy, bucket, name, content, "SSE-C", secrets=(key.raw,), multipart=name == "big")
    # with another key the download fails: 403 (without a key: the head-object below)
    wrong = aws_cli(proxy, "s3", "cp", f"s3://{bucket}/small", str(tmp / "wrong.out"), "--sse-c", "AES256",
                      "--sse-c-key", f"fileb://{tmp / 'other'}", check=False)
    assert wrong.returncode != 0 and b"403" in wrong.stderr

    s3api_key = ["--sse-customer-algorithm", "AES256", "--sse-customer-key", f"fileb://{tmp / 'key'}"]
    head = _json(aws_cli(proxy, "s3api", "head-object", "--bucket", bucket, "--key", "big", *s3api_key))
    assert head["ContentLength"] == len(big) and head["SSECustomerKeyMD5"] == key.md5
    assert head["ETag"].strip('"').endswith("-2")  # 8 MiB + the rest
    got = _json(aws_cli(proxy, "s3api", "get-object", "--bucket", bucket, "--key", "big", "--range", "bytes=8388600-8388700",
                          *s3api_key, str(tmp / "range.out")))
    assert got["ContentRange"] == f"bytes 8388600-8388700/{len(big)}"
    assert (tmp / "range.out").read_bytes() == big[8388600:8388701]  # across the CLI's part boundary
    missing = aws_cli(proxy, "s3api", "head-object", "--bucket", bucket, "--key", "big", check=False)
    assert missing.returncode != 0 and b"400" in missing.stderr


def test_cli_copy_with_sse_c_copy_source(proxy, bucket, files):
    tmp, data, _, key, other = files
    s3 = proxy.client()
    s3.put_object(Bucket=bucket, Key="src", Body=data, **key.args())  # CLI uploads: test_cli_sse_c_*
    source = ["--sse-c-copy-source", "AES256", "--sse-c-copy-source-key", f"fileb://{tmp / 'key'}"]
    # SSE-C -> SSE-C under another key, and SSE-C -> SSE-KMS
    aws_cli(proxy, "s3", "cp", f"s3://{bucket}/src", f"s3://{bucket}/to-ssec", *source, "--sse-c", "AES256",
              "--sse-c-key", f"fileb://{tmp / 'other'}")
    aws_cli(proxy, "s3", "cp", f"s3://{bucket}/src", f"s3://{bucket}/to-kms", *source, "--sse", "aws:kms")
    aws_cli(
        proxy,
        "s3",
        "cp",
        f"s3://{bucket}/to-ssec",
        str(tmp / "a.out"),
        "--sse-c",
        "AES256",
        "--sse-c-key",
        f"fileb://{tmp / 'other'}",
    )
    assert (tmp / "a.out").read_bytes() == data == s3.get_object(Bucket=bucket, Key="to-kms")["Body"].read()
    assert_sealed(proxy, bucket, "to-ssec", data, "SSE-C", secrets=(key.raw, other.raw))
    assert_sealed(proxy, bucket, "to-kms", data, "aws:kms", secrets=(key.raw,))
    # the copy source needs its key
    failed = aws_cli(proxy, "s3", "cp", f"s3://{bucket}/src", f"s3://{bucket}/nokey", check=False)
    assert failed.returncode != 0
    listed = s3.list_objects_v2(Bucket=bucket)
    assert sorted((o["Key"], o["Size"]) for o in listed["Contents"]) == sorted(
        (k, len(data)) for k in ("src", "to-ssec", "to-kms"))


