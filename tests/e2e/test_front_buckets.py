"""Bucket operations through the front door, in front of both backends: ListBuckets, CreateBucket,
DeleteBucket, HeadBucket, GetBucketLocation, and the awscli's `s3 mb / ls / rb` and `s3api` forms.

Facts: S3 API reference (CreateBucket, DeleteBucket, HeadBucket, GetBucketLocation, error codes) and
the S3 user guide's "Bucket naming rules"."""

from __future__ import annotations

import uuid

import pytest

from .front_helpers import expect_error


def _name(tag: str = "b") -> str:
    return f"{tag}-{uuid.uuid4().hex[:16]}"


def test_bucket_lifecycle(s3):
    name = _name()
    assert s3.create_bucket(Bucket=name)["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert name in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    head = s3.head_bucket(Bucket=name)
    assert head["ResponseMetadata"]["HTTPHeaders"]["x-amz-bucket-region"] == "us-east-1"
    # us-east-1 is reported as a null LocationConstraint (S3 GetBucketLocation)
    assert s3.get_bucket_location(Bucket=name)["LocationConstraint"] is None
    # creating it again: the caller already owns it; S3 API reference, CreateBucket: "For legacy
    # compatibility, if you re-create an existing bucket that you already own in the North Virginia
    # Region, Amazon S3 returns 200 OK" (other regions: 409 BucketAlreadyOwnedByYou, test_front_answers)
    assert s3.create_bucket(Bucket=name)["ResponseMetadata"]["HTTPStatusCode"] == 200
    s3.put_object(Bucket=name, Key="x", Body=b"x")
    expect_error("BucketNotEmpty", 409, s3.delete_bucket, Bucket=name)
    s3.delete_object(Bucket=name, Key="x")
    assert s3.delete_bucket(Bucket=name)["ResponseMetadata"]["HTTPStatusCode"] == 204
    expect_error("404", 404, s3.head_bucket, Bucket=name)
    expect_error("NoSuchBucket", 404, s3.delete_bucket, Bucket=name)
    expect_error("NoSuchBucket", 404, s3.list_objects_v2, Bucket=name)
    assert name not in [b["Name"] for b in s3.list_buckets()["Buckets"]]


# General-purpose bucket naming rules (S3 user guide): 3-63 chars, lower-case letters, digits, dots,
# hyphens; start and end with a letter or digit; no "..", not an IP address, reserved prefixes/suffixes.
@pytest.mark.parametrize(
    "name",
    [
        "ab",  # too short (< 3)
        "a" * 64,  # too long (> 63)
        "UpperCase",  # upper-case letters
        "under_score",  # underscore
        "-leading-hyphen",  # must start with a letter or digit
        "trailing-hyphen-",  # must end with a letter or digit
        "double..dot",  # two adjacent periods
        "192.168.5.4",  # formatted as an IP address
        "xn--punycode",  # reserved prefix xn--
        "sthree-reserved",  # reserved prefix sthree-
        "name-s3alias",  # reserved suffix -s3alias
    ],
)
def test_invalid_bucket_names_are_rejected(s3, name):
    expect_error("InvalidBucketName", 400, s3.create_bucket, Bucket=name)


# (the fixed-length names get a random body so reruns against a shared backend never collide)
@pytest.mark.parametrize(
    "make_name",
    [
        lambda: uuid.uuid4().hex[:3],  # minimum length, 3
        lambda: (uuid.uuid4().hex * 2)[:63],  # maximum length, 63
        lambda: f"with.dots-{uuid.uuid4().hex[:8]}-1",  # dots, hyphens and digits are allowed
    ],
    ids=["3-chars", "63-chars", "dots-hyphens-digits"],
)
def test_valid_bucket_name_boundaries_are_accepted(s3, make_name):
    name = make_name()
    s3.create_bucket(Bucket=name)
    s3.head_bucket(Bucket=name)
    s3.delete_bucket(Bucket=name)


def test_proxy_internal_bucket_is_neither_listed_nor_reachable(s3, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")  # gives the proxy reason to keep internal records
    assert "s3proxy-internal" not in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    expect_error("AccessDenied", 403, s3.list_objects_v2, Bucket="s3proxy-internal")


@pytest.mark.slow
def test_awscli_mb_ls_rb(proxy):
    name = _name("cli")
    assert f"make_bucket: {name}" in proxy.aws("s3", "mb", f"s3://{name}").stdout.decode()
    again = proxy.aws("s3api", "create-bucket", "--bucket", name, check=False)
    assert again.returncode == 0, again.stderr  # us-east-1: re-creating one's own bucket is 200
    assert f"remove_bucket: {name}" in proxy.aws("s3", "rb", f"s3://{name}").stdout.decode()
    expect_error("404", 404, proxy.client().head_bucket, Bucket=name)
