"""The S3 backend's XML: parse S3 response documents into base dataclasses, build request documents.

Keys in listings are requested with `encoding-type=url` (so any key survives XML 1.0) and decoded
here. ListObjectVersions interleaves <Version> and <DeleteMarker> in an order that matters, which
xmltodict cannot keep, so that one document is read with ElementTree.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import urllib.parse
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from typing import Any

import xmltodict

from s3proxy import errors
from s3proxy.backends.base import (
    CONTENT_HEADERS,
    BucketInfo,
    ListResult,
    ObjectInfo,
    ObjectMeta,
    PartInfo,
    UploadInfo,
    VersionListResult,
)

META_PREFIX = "x-amz-meta-"
_NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"


def parse(body: bytes) -> dict[str, Any]:
    """An S3 XML document as nested dicts, namespaces dropped; MalformedXML-free: bad XML is InternalError."""
    try:
        return xmltodict.parse(body, process_namespaces=False, disable_entities=True) or {}
    except Exception as exc:  # expat raises several types
        raise errors.InternalError("The storage backend sent unreadable XML.") from exc


def root(body: bytes) -> dict[str, Any]:
    """The content of a response document's root element, whatever its name (moto renames some)."""
    doc = parse(body)
    if "Error" in doc:  # CopyObject and CompleteMultipartUpload can fail inside a 200
        raise error_of(500, body, errors.InternalError)
    value = next(iter(doc.values()), None)
    return value if isinstance(value, dict) else {}


def as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def text(node: Any, name: str, default: str = "") -> str:
    value = node.get(name) if isinstance(node, dict) else None
    if isinstance(value, dict):
        value = value.get("#text")
    return default if value is None else str(value)


def truthy(node: Any, name: str) -> bool:
    return text(node, name).lower() == "true"


def etag(value: str) -> str:
    return value.strip().strip('"')


def iso_time(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


_MONTHS = {name: number for number, name in enumerate(
    ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1)}


def http_time(value: str | None) -> dt.datetime:
    if not value:
        return dt.datetime.now(dt.UTC)
    parts = value.split()
    if len(parts) == 6 and parts[5] == "GMT" and parts[2] in _MONTHS:  # what S3 sends: Wed, 02 Dec 2026 10:00:00 GMT
        try:
            hour, minute, second = parts[4].split(":")
            return dt.datetime(int(parts[3]), _MONTHS[parts[2]], int(parts[1]), int(hour), int(minute), int(second),
                               tzinfo=dt.UTC)
        except ValueError:
            pass
    return email.utils.parsedate_to_datetime(value).astimezone(dt.UTC)


def key(value: str, encoded: bool) -> str:
    return urllib.parse.unquote_plus(value) if encoded else value


def error_of(status: int, body: bytes, default: type[errors.S3Error]) -> errors.S3Error:
    """The S3Error an error response carries (HEAD responses have no body: `default` then)."""
    try:
        doc = parse(body).get("Error") if body.strip() else None
    except errors.S3Error:  # an HTML error page from a proxy or a crashed server
        doc = None
    if not isinstance(doc, dict) or not text(doc, "Code"):
        if default.status == status:
            return default()
        return errors.from_code(_code_for_status(status), status)
    return errors.from_code(text(doc, "Code"), status, text(doc, "Message") or None)


def _code_for_status(status: int) -> str:
    return {400: "InvalidRequest", 403: "AccessDenied", 404: "NoSuchKey", 405: "MethodNotAllowed",
            412: "PreconditionFailed", 416: "InvalidRange", 503: "SlowDown"}.get(status, "InternalError")


# headers <-> ObjectMeta / ObjectInfo


def meta_headers(meta: ObjectMeta) -> dict[str, str]:
    headers = {f"{META_PREFIX}{k}": v for k, v in meta.metadata.items()}
    headers.update({k: v for k, v in meta.headers.items() if k in CONTENT_HEADERS})
    if meta.tagging:
        headers["x-amz-tagging"] = meta.tagging
    if meta.storage_class:
        headers["x-amz-storage-class"] = meta.storage_class
    return headers


def object_info(key_: str, headers: Mapping[str, str], size: int) -> ObjectInfo:
    lower = {k.lower(): v for k, v in headers.items()}
    meta = ObjectMeta(
        {k[len(META_PREFIX):]: v for k, v in lower.items() if k.startswith(META_PREFIX)},
        {k: lower[k] for k in CONTENT_HEADERS if k in lower},
        None,
        lower.get("x-amz-storage-class"),
    )
    return ObjectInfo(key_, size, etag(lower.get("etag", "")), http_time(lower.get("last-modified")), meta,
                      lower.get("x-amz-version-id"), lower.get("x-amz-storage-class", "STANDARD"),
                      True, lower.get("x-amz-delete-marker") == "true")


# response documents


def buckets(body: bytes) -> list[BucketInfo]:
    doc = root(body)
    found = as_list((doc.get("Buckets") or {}).get("Bucket"))
    return [BucketInfo(text(b, "Name"), iso_time(text(b, "CreationDate"))) for b in found]


def list_objects(body: bytes) -> ListResult:
    doc = root(body)
    encoded = text(doc, "EncodingType") == "url"
    objects = [
        ObjectInfo(key(text(c, "Key"), encoded), int(text(c, "Size", "0")), etag(text(c, "ETag")),
                   iso_time(text(c, "LastModified")), storage_class=text(c, "StorageClass", "STANDARD"))
        for c in as_list(doc.get("Contents"))
    ]
    prefixes = [key(text(p, "Prefix"), encoded) for p in as_list(doc.get("CommonPrefixes"))]
    truncated = truthy(doc, "IsTruncated")
    nxt = None
    if truncated:
        nxt = key(text(doc, "NextMarker"), encoded) or max([o.key for o in objects] + prefixes, default="") or None
    return ListResult(objects, prefixes, truncated, nxt)


def list_versions(body: bytes) -> VersionListResult:
    try:
        root = ET.fromstring(body)
    except ET.ParseError as exc:
        raise errors.InternalError("The storage backend sent unreadable XML.") from exc

    def get(node: ET.Element, name: str, default: str = "") -> str:
        return node.findtext(_NS + name) or node.findtext(name) or default

    encoded = get(root, "EncodingType") == "url"
    versions: list[ObjectInfo] = []
    prefixes: list[str] = []
    for child in root:
        tag = child.tag.removeprefix(_NS)
        if tag in ("Version", "DeleteMarker"):
            versions.append(ObjectInfo(
                key(get(child, "Key"), encoded), int(get(child, "Size", "0")), etag(get(child, "ETag")),
                iso_time(get(child, "LastModified")), version_id=get(child, "VersionId"),
                storage_class=get(child, "StorageClass", "STANDARD"), is_latest=get(child, "IsLatest") == "true",
                delete_marker=tag == "DeleteMarker"))
        elif tag == "CommonPrefixes":
            prefixes.append(key(get(child, "Prefix"), encoded))
    truncated = get(root, "IsTruncated") == "true"
    next_key = key(get(root, "NextKeyMarker"), encoded) or None if truncated else None
    next_vid = (get(root, "NextVersionIdMarker") or None) if truncated else None
    return VersionListResult(versions, prefixes, truncated, next_key, next_vid)


def upload_id(body: bytes) -> str:
    return text(root(body), "UploadId")


def parts(body: bytes) -> tuple[list[PartInfo], str | None]:
    """One page of ListParts and the next part-number marker (None when done)."""
    doc = root(body)
    found = [PartInfo(int(text(p, "PartNumber")), etag(text(p, "ETag")), int(text(p, "Size", "0")),
                      iso_time(text(p, "LastModified"))) for p in as_list(doc.get("Part"))]
    return found, (text(doc, "NextPartNumberMarker") or None) if truthy(doc, "IsTruncated") else None


def uploads(body: bytes) -> tuple[list[UploadInfo], tuple[str, str] | None]:
    """One page of ListMultipartUploads and the next (key, upload id) markers (None when done)."""
    doc = root(body)
    encoded = text(doc, "EncodingType") == "url"
    found = [UploadInfo(key(text(u, "Key"), encoded), text(u, "UploadId"), iso_time(text(u, "Initiated")))
             for u in as_list(doc.get("Upload"))]
    if not truthy(doc, "IsTruncated"):
        return found, None
    return found, (key(text(doc, "NextKeyMarker"), encoded), text(doc, "NextUploadIdMarker"))


def result_etag(body: bytes) -> str:
    """The ETag of a CopyObjectResult / CompleteMultipartUploadResult (which may be a 200 error)."""
    return etag(text(root(body), "ETag"))


def versioning(body: bytes) -> str | None:
    return text(root(body), "Status") or None


def tags(body: bytes) -> list[tuple[str, str]]:
    doc = root(body)
    return [(text(t, "Key"), text(t, "Value")) for t in as_list((doc.get("TagSet") or {}).get("Tag"))]


# request documents


def _document(root: str, content: dict[str, Any]) -> bytes:
    doc = {root: {"@xmlns": "http://s3.amazonaws.com/doc/2006-03-01/", **content}}
    text: str = xmltodict.unparse(doc)
    return text.encode()


def complete_document(parts_: Sequence[tuple[int, str]]) -> bytes:
    return _document("CompleteMultipartUpload",
                     {"Part": [{"PartNumber": str(n), "ETag": f'"{etag(e)}"'} for n, e in parts_]})


def versioning_document(status: str) -> bytes:
    return _document("VersioningConfiguration", {"Status": status})


def tagging_document(tag_set: Sequence[tuple[str, str]]) -> bytes:
    return _document("Tagging", {"TagSet": {"Tag": [{"Key": k, "Value": v} for k, v in tag_set]}})


def bucket_document(region: str) -> bytes:
    return _document("CreateBucketConfiguration", {"LocationConstraint": region})
