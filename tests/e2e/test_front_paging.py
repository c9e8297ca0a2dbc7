"""Paging while deleting, in front of both backends: a listing marker is a position in key order
(and version order within a key), not a reference to an entry that must still exist.

Tools empty a bucket page by page: list a page, delete everything on it, ask for the next page
with the markers of the first (boto3's `bucket.object_versions.delete()`, rclone, s3cmd, minio-py
all do). The markers then name deleted entries. Issue 20: over moto the second page came back
empty with IsTruncated=false and 873 of 1,001 objects stayed; over the fs backend 6 of 900
versions stayed in a versioned bucket. Here 1,001+ keys and versions, 128 per page.
"""

from __future__ import annotations

import concurrent.futures

import boto3
import pytest
from botocore.config import Config

from .conftest import REGION
from .front_helpers import expect_error

PAGE = 128
KEYS = 1001


def _fill(s3, bucket: str, keys: list[str], copies: int = 1) -> None:
    def put(key: str) -> None:
        for n in range(copies):
            s3.put_object(Bucket=bucket, Key=key, Body=f"{key}:{n}".encode())

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(put, keys))


def _names(n: int) -> list[str]:
    # names whose order is not their number's, and some that share prefixes with others
    return [f"key-{i}" for i in range(n)]


def _all_versions(s3, bucket: str) -> list[tuple[str, str]]:
    found, markers = [], {}
    while True:
        page = s3.list_object_versions(Bucket=bucket, **markers)
        found += [(v["Key"], v["VersionId"]) for v in page.get("Versions", []) + page.get("DeleteMarkers", [])]
        if not page["IsTruncated"]:
            return found
        markers = {"KeyMarker": page["NextKeyMarker"], "VersionIdMarker": page["NextVersionIdMarker"]}


def _empty_page_by_page(s3, bucket: str) -> int:
    """Delete each page of ListObjectVersions before asking for the next; the pages it took."""
    markers: dict[str, str] = {}
    pages = 0
    while True:
        page = s3.list_object_versions(Bucket=bucket, MaxKeys=PAGE, **markers)
        pages += 1
        entries = page.get("Versions", []) + page.get("DeleteMarkers", [])
        assert len(entries) <= PAGE
        if entries:
            doomed = [{"Key": e["Key"], "VersionId": e["VersionId"]} for e in entries]
            result = s3.delete_objects(Bucket=bucket, Delete={"Objects": doomed, "Quiet": True})
            assert not result.get("Errors"), result["Errors"]
        if not page["IsTruncated"]:
            return pages
        markers = {"KeyMarker": page["NextKeyMarker"]}
        if page.get("NextVersionIdMarker"):
            markers["VersionIdMarker"] = page["NextVersionIdMarker"]
        assert pages < 100, "the listing does not end"


def test_emptying_an_unversioned_bucket_page_by_page_leaves_nothing(s3, bucket):
    _fill(s3, bucket, _names(KEYS))
    pages = _empty_page_by_page(s3, bucket)
    assert pages >= KEYS // PAGE
    assert _all_versions(s3, bucket) == []
    assert s3.delete_bucket(Bucket=bucket)["ResponseMetadata"]["HTTPStatusCode"] == 204


def test_emptying_a_versioned_bucket_page_by_page_leaves_nothing(s3, bucket):
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    names = _names(350)
    _fill(s3, bucket, names, copies=3)  # 1,050 versions
    for name in names[::7]:  # and delete markers on top of some keys
        s3.delete_object(Bucket=bucket, Key=name)
    before = _all_versions(s3, bucket)
    assert len(before) == 1050 + len(names[::7]) and len(set(before)) == len(before)
    _empty_page_by_page(s3, bucket)
    assert _all_versions(s3, bucket) == []
    assert s3.delete_bucket(Bucket=bucket)["ResponseMetadata"]["HTTPStatusCode"] == 204


def test_boto3_object_versions_delete_empties_the_bucket(proxy, s3, bucket):
    """The real tool path: boto3's resource collection pages ListObjectVersions and batch-deletes each page."""
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    names = _names(300)
    _fill(s3, bucket, names, copies=2)
    resource = boto3.resource("s3", endpoint_url=proxy.url, aws_access_key_id=proxy.access_key,
                              aws_secret_access_key=proxy.secret_key, region_name=REGION,
                              config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}))
    resource.Bucket(bucket).object_versions.page_size(PAGE).delete()
    assert _all_versions(s3, bucket) == []
    resource.Bucket(bucket).delete()


def test_listing_pages_see_every_version_once_without_deletes(s3, bucket):
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    names = _names(40)
    _fill(s3, bucket, names, copies=3)
    everything = _all_versions(s3, bucket)
    assert len(everything) == 120
    for size in (1, 2, 7, 128):
        seen, markers = [], {}
        while True:
            page = s3.list_object_versions(Bucket=bucket, MaxKeys=size, **markers)
            seen += [(v["Key"], v["VersionId"]) for v in page.get("Versions", [])]
            if not page["IsTruncated"]:
                break
            markers = {"KeyMarker": page["NextKeyMarker"], "VersionIdMarker": page["NextVersionIdMarker"]}
        assert seen == everything, size


def test_a_deleted_marker_version_in_the_middle_of_a_key_resumes_at_its_older_versions(s3, bucket):
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    ids = [s3.put_object(Bucket=bucket, Key="k", Body=bytes([n]))["VersionId"] for n in range(5)]
    s3.put_object(Bucket=bucket, Key="later", Body=b"x")
    newest_first = list(reversed(ids))
    page = s3.list_object_versions(Bucket=bucket, MaxKeys=2)
    assert [v["VersionId"] for v in page["Versions"]] == newest_first[:2] and page["IsTruncated"]
    s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "k", "VersionId": v} for v in newest_first[:2]]})
    rest = s3.list_object_versions(Bucket=bucket, KeyMarker=page["NextKeyMarker"], VersionIdMarker=page["NextVersionIdMarker"])
    listed = [(v["Key"], v["VersionId"]) for v in rest["Versions"]]
    assert listed[:3] == [("k", v) for v in newest_first[2:]]
    assert [k for k, _ in listed[3:]] == ["later"] and not rest["IsTruncated"]


@pytest.mark.parametrize("listing", ["v1", "v2"])
def test_emptying_with_list_objects_pages(s3, bucket, listing):
    """ListObjects markers and ListObjectsV2 continuation tokens are positions too."""
    _fill(s3, bucket, _names(400))
    token: dict[str, str] = {}
    while True:
        if listing == "v2":
            page = s3.list_objects_v2(Bucket=bucket, MaxKeys=PAGE, **token)
        else:
            page = s3.list_objects(Bucket=bucket, MaxKeys=PAGE, **token)
        keys = [o["Key"] for o in page.get("Contents", [])]
        if keys:
            s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in keys], "Quiet": True})
        if not page["IsTruncated"]:
            break
        token = {"ContinuationToken": page["NextContinuationToken"]} if listing == "v2" else {"Marker": keys[-1]}
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0


def test_delimited_version_pages_resume_after_a_common_prefix(s3, bucket):
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    for key in ("a", "b/1", "b/2", "c", "d/1", "e"):
        s3.put_object(Bucket=bucket, Key=key, Body=b"x")
    seen, prefixes, markers = [], [], {}
    while True:
        page = s3.list_object_versions(Bucket=bucket, Delimiter="/", MaxKeys=1, **markers)
        seen += [v["Key"] for v in page.get("Versions", [])]
        prefixes += [p["Prefix"] for p in page.get("CommonPrefixes", [])]
        if not page["IsTruncated"]:
            break
        markers = {"KeyMarker": page["NextKeyMarker"]}
        if page.get("NextVersionIdMarker"):
            markers["VersionIdMarker"] = page["NextVersionIdMarker"]
    assert (seen, prefixes) == (["a", "c", "e"], ["b/", "d/"])


def test_version_id_marker_needs_a_key_marker(s3, bucket):
    err = expect_error("InvalidArgument", 400, s3.list_object_versions, Bucket=bucket, VersionIdMarker="abc")
    assert err.response["Error"]["Message"] == "A version-id marker cannot be specified without a key marker."

