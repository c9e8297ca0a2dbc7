"""Routing: method + bucket/key + query subresources -> the name of the S3 operation that serves it."""

from __future__ import annotations

from collections.abc import Mapping

from .. import errors

# Subresources S3 has that s3proxy does not serve: they answer 501 NotImplemented, never a wrong success.
UNSUPPORTED = frozenset(
    "accelerate analytics cors intelligent-tiering inventory legal-hold lifecycle logging metadataTable "
    "metrics notification object-lock replication requestPayment restore retention select session torrent "
    "website renameObject".split()
)
# (method, subresource) -> operation, on a bucket and on an object; the same subresource any other way is 501
BUCKET_ACCESS = {
    ("GET", "acl"): "GetBucketAcl", ("PUT", "acl"): "PutBucketAcl",
    ("GET", "policy"): "GetBucketPolicy", ("PUT", "policy"): "PutBucketPolicy", ("DELETE", "policy"): "DeleteBucketPolicy",
    ("GET", "policyStatus"): "GetBucketPolicyStatus",
    ("GET", "publicAccessBlock"): "GetPublicAccessBlock", ("PUT", "publicAccessBlock"): "PutPublicAccessBlock",
    ("DELETE", "publicAccessBlock"): "DeletePublicAccessBlock",
    ("GET", "ownershipControls"): "GetBucketOwnershipControls",
}
OBJECT_ACCESS = {("GET", "acl"): "GetObjectAcl", ("PUT", "acl"): "PutObjectAcl"}
ACCESS_SUBRESOURCES = frozenset(sub for _, sub in BUCKET_ACCESS)


# Every query name `route` reads to choose an operation. SigV2 signs only some of them (auth/sigv2.py).
ROUTED_SUBRESOURCES = UNSUPPORTED | ACCESS_SUBRESOURCES | frozenset(
    "location versioning versions uploads encryption tagging list-type delete uploadId partNumber attributes".split()
)


def route(method: str, bucket: str | None, key: str | None, query: Mapping[str, str], headers: Mapping[str, str]) -> str:
    unsupported = UNSUPPORTED.intersection(query)
    if unsupported:
        return "NotImplemented"
    if bucket is None:
        if method == "GET":
            return "ListBuckets"
        raise errors.MethodNotAllowed()
    access = ACCESS_SUBRESOURCES.intersection(query)
    if access:
        table = BUCKET_ACCESS if key is None else OBJECT_ACCESS
        found = [table.get((method, sub)) for sub in access]
        return found[0] if len(found) == 1 and found[0] else "NotImplemented"
    if key is None:
        return _bucket_route(method, query)
    return _object_route(method, query, headers)


def _bucket_route(method: str, q: Mapping[str, str]) -> str:
    if method == "GET":
        for sub, op in (
            ("location", "GetBucketLocation"),
            ("versioning", "GetBucketVersioning"),
            ("versions", "ListObjectVersions"),
            ("uploads", "ListMultipartUploads"),
            ("encryption", "GetBucketEncryption"),
            ("tagging", "GetBucketTagging"),
        ):
            if sub in q:
                return op
        return "ListObjectsV2" if q.get("list-type") == "2" else "ListObjects"
    if method == "PUT":
        for sub, op in (
            ("versioning", "PutBucketVersioning"),
            ("encryption", "PutBucketEncryption"),
            ("tagging", "PutBucketTagging"),
        ):
            if sub in q:
                return op
        return "CreateBucket"
    if method == "HEAD":
        return "HeadBucket"
    if method == "DELETE":
        for sub, op in (("encryption", "DeleteBucketEncryption"), ("tagging", "DeleteBucketTagging")):
            if sub in q:
                return op
        return "DeleteBucket"
    if method == "POST" and "delete" in q:
        return "DeleteObjects"
    raise errors.MethodNotAllowed()


def _object_route(method: str, q: Mapping[str, str], headers: Mapping[str, str]) -> str:
    if method == "GET":
        if "uploadId" in q:
            return "ListParts"
        if "tagging" in q:
            return "GetObjectTagging"
        if "attributes" in q:
            return "GetObjectAttributes"
        return "GetObject"
    if method == "HEAD":
        return "HeadObject"
    if method == "PUT":
        if "partNumber" in q or "uploadId" in q:
            return "UploadPartCopy" if "x-amz-copy-source" in headers else "UploadPart"
        if "tagging" in q:
            return "PutObjectTagging"
        if "encryption" in q:
            return "UpdateObjectEncryption"
        return "CopyObject" if "x-amz-copy-source" in headers else "PutObject"
    if method == "DELETE":
        if "uploadId" in q:
            return "AbortMultipartUpload"
        if "tagging" in q:
            return "DeleteObjectTagging"
        return "DeleteObject"
    if method == "POST":
        if "uploads" in q:
            return "CreateMultipartUpload"
        if "uploadId" in q:
            return "CompleteMultipartUpload"
    raise errors.MethodNotAllowed()
