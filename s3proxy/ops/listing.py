"""Listing operations: ListObjects (v1), ListObjectsV2, ListObjectVersions, ListMultipartUploads."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .. import errors
from ..store import ObjectView
from .call import Call
from .common import Services, bucket_of, int_param, quote_etag, url_encoder
from .reply import Reply, xml_reply

MAX_KEYS = 1000


def _contents(views: Sequence[ObjectView], enc: Callable[[str | None], str | None],
              owner: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
    out = []
    for v in views:
        item: dict[str, Any] = {
            "Key": enc(v.key),
            "LastModified": v.last_modified,
            "ETag": quote_etag(v.etag),
            "Size": v.size,
            "StorageClass": v.storage_class,
        }
        if owner is not None:
            item["Owner"] = owner
        out.append(item)
    return out


async def list_objects(s: Services, call: Call) -> Reply:
    bucket = bucket_of(call)
    enc = url_encoder(call)
    prefix = call.query.get("prefix", "")
    delimiter = call.query.get("delimiter", "")
    marker = call.query.get("marker", "")
    max_keys = int_param(call, "max-keys", MAX_KEYS, high=MAX_KEYS)
    views, result = await s.store.list_objects(bucket, prefix=prefix, delimiter=delimiter, after=marker, max_keys=max_keys)
    next_marker = result.next_marker if result.is_truncated and delimiter else None
    return xml_reply(
        "ListBucketResult",
        {
            "Name": bucket,
            "Prefix": enc(prefix),
            "Marker": enc(marker),
            "NextMarker": enc(next_marker),
            "MaxKeys": max_keys,
            "Delimiter": enc(delimiter) or None,
            "IsTruncated": result.is_truncated,
            "EncodingType": call.query.get("encoding-type"),
            "Contents": _contents(views, enc, s.owner(call)),
            "CommonPrefixes": [{"Prefix": enc(p)} for p in result.common_prefixes],
        },
    )


def _token(key: str) -> str:
    return base64.urlsafe_b64encode(key.encode("utf-8")).decode()


def _untoken(token: str) -> str:
    """The key a continuation token names; strict base64url, so no junk is read as an empty token
    (which would restart the listing from its first key)."""
    try:
        return base64.b64decode(token.encode("ascii"), altchars=b"-_", validate=True).decode("utf-8")
    except (binascii.Error, UnicodeError, ValueError):
        raise errors.InvalidArgument("The continuation token provided is incorrect", ArgumentName="continuation-token") from None


async def list_objects_v2(s: Services, call: Call) -> Reply:
    bucket = bucket_of(call)
    enc = url_encoder(call)
    prefix = call.query.get("prefix", "")
    delimiter = call.query.get("delimiter", "")
    token = call.query.get("continuation-token")
    start_after = call.query.get("start-after", "")
    if token is not None and token == "":
        raise errors.InvalidArgument("The continuation token provided is incorrect", ArgumentName="continuation-token")
    after = max(_untoken(token), start_after) if token else start_after
    max_keys = int_param(call, "max-keys", MAX_KEYS, high=MAX_KEYS)
    views, result = await s.store.list_objects(bucket, prefix=prefix, delimiter=delimiter, after=after, max_keys=max_keys)
    fetch_owner = call.query.get("fetch-owner") == "true"
    return xml_reply(
        "ListBucketResult",
        {
            "Name": bucket,
            "Prefix": enc(prefix),
            "Delimiter": enc(delimiter) or None,
            "MaxKeys": max_keys,
            "EncodingType": call.query.get("encoding-type"),
            "KeyCount": len(views) + len(result.common_prefixes),
            "IsTruncated": result.is_truncated,
            "ContinuationToken": token,
            "NextContinuationToken": _token(result.next_marker) if result.is_truncated and result.next_marker else None,
            "StartAfter": enc(start_after) or None,
            "Contents": _contents(views, enc, s.owner(call) if fetch_owner else None),
            "CommonPrefixes": [{"Prefix": enc(p)} for p in result.common_prefixes],
        },
    )


async def list_object_versions(s: Services, call: Call) -> Reply:
    bucket = bucket_of(call)
    if not s.buckets.capabilities.versioning:
        raise errors.NotImplemented("Versioning is not supported by this backend")
    enc = url_encoder(call)
    prefix = call.query.get("prefix", "")
    delimiter = call.query.get("delimiter", "")
    key_marker = call.query.get("key-marker", "")
    version_marker = call.query.get("version-id-marker", "")
    if "version-id-marker" in call.query and not key_marker:
        raise errors.InvalidArgument("A version-id marker cannot be specified without a key marker.",
                                     ArgumentName="version-id-marker", ArgumentValue=version_marker)
    if "version-id-marker" in call.query and not version_marker:
        raise errors.InvalidArgument("A version-id marker cannot be empty.", ArgumentName="version-id-marker", ArgumentValue="")
    max_keys = int_param(call, "max-keys", MAX_KEYS, high=MAX_KEYS)
    views, result = await s.store.list_object_versions(
        bucket, prefix=prefix, delimiter=delimiter, key_marker=key_marker, version_id_marker=version_marker, max_keys=max_keys
    )
    owner = s.owner(call)
    versions, markers = [], []
    for v in views:
        common = {
            "Key": enc(v.key),
            "VersionId": v.version_id or "null",
            "IsLatest": v.is_latest,
            "LastModified": v.last_modified,
            "Owner": owner,
        }
        if v.delete_marker:
            markers.append(common)
        else:
            versions.append({**common, "ETag": quote_etag(v.etag), "Size": v.size, "StorageClass": v.storage_class})
    return xml_reply(
        "ListVersionsResult",
        {
            "Name": bucket,
            "Prefix": enc(prefix),
            "KeyMarker": enc(key_marker),
            "VersionIdMarker": version_marker,
            "NextKeyMarker": enc(result.next_key_marker) if result.is_truncated else None,
            "NextVersionIdMarker": result.next_version_id_marker if result.is_truncated else None,
            "MaxKeys": max_keys,
            "Delimiter": enc(delimiter) or None,
            "IsTruncated": result.is_truncated,
            "EncodingType": call.query.get("encoding-type"),
            "Version": versions,
            "DeleteMarker": markers,
            "CommonPrefixes": [{"Prefix": enc(p)} for p in result.common_prefixes],
        },
    )


async def list_multipart_uploads(s: Services, call: Call) -> Reply:
    bucket = bucket_of(call)
    enc = url_encoder(call)
    prefix = call.query.get("prefix", "")
    delimiter = call.query.get("delimiter", "")
    key_marker = call.query.get("key-marker", "")
    upload_marker = call.query.get("upload-id-marker", "")
    max_uploads = int_param(call, "max-uploads", 1000, high=1000)
    uploads = sorted(await s.uploads.list_uploads(bucket, prefix), key=lambda u: (u.key, u.initiated, u.upload_id))
    if key_marker:
        uploads = [
            u for u in uploads if u.key > key_marker or (u.key == key_marker and upload_marker and u.upload_id > upload_marker)
        ]
    prefixes: list[str] = []
    chosen = []
    for u in uploads:
        if delimiter:
            cut = u.key.find(delimiter, len(prefix))
            if cut >= 0:
                p = u.key[: cut + len(delimiter)]
                if p not in prefixes:
                    prefixes.append(p)
                continue
        chosen.append(u)
    page = chosen[:max_uploads]
    truncated = len(chosen) > len(page)
    owner = s.owner(call)
    return xml_reply(
        "ListMultipartUploadsResult",
        {
            "Bucket": bucket,
            "KeyMarker": enc(key_marker),
            "UploadIdMarker": upload_marker,
            "NextKeyMarker": enc(page[-1].key) if truncated else None,
            "NextUploadIdMarker": page[-1].upload_id if truncated else None,
            "Prefix": enc(prefix),
            "Delimiter": enc(delimiter) or None,
            "MaxUploads": max_uploads,
            "IsTruncated": truncated,
            "EncodingType": call.query.get("encoding-type"),
            "Upload": [
                {
                    "Key": enc(u.key),
                    "UploadId": u.upload_id,
                    "Initiator": owner,
                    "Owner": owner,
                    "StorageClass": "STANDARD",
                    "Initiated": u.initiated,
                }
                for u in page
            ],
            "CommonPrefixes": [{"Prefix": enc(p)} for p in prefixes],
        },
    )
