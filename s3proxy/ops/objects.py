"""Object operations: PutObject, GetObject, HeadObject, DeleteObject, DeleteObjects, CopyObject, tagging."""

from __future__ import annotations

import base64
import binascii
import dataclasses
import urllib.parse
from collections.abc import Iterable, Mapping

from multidict import CIMultiDict

from .. import errors
from ..format.ranges import ByteRange
from ..modes.base import ObjectRef
from ..store import Catalog, ObjectView, Written
from ..store.objects import part_span
from . import xml
from .call import Call
from .common import Services, bucket_of, key_of, precondition, quote_etag, ref_of
from .headers import RESPONSE_OVERRIDES, check_conditions, http_date, meta_headers, object_meta, parse_range, storage_class
from .reply import Reply, empty_reply, xml_reply

MAX_DELETE_KEYS = 1000
MAX_TAGS = 10


def view_headers(view: ObjectView) -> CIMultiDict[str]:
    """The headers GET and HEAD answer with for an object (names compared case-insensitively, so a
    stored Content-Type replaces S3's default instead of joining it)."""
    headers: CIMultiDict[str] = CIMultiDict(
        {
            "ETag": quote_etag(view.etag),
            "Last-Modified": http_date(view.last_modified),
            "Accept-Ranges": "bytes",
            "Content-Type": "binary/octet-stream",
        }
    )
    headers.update(meta_headers(view.meta))
    if view.version_id:
        headers["x-amz-version-id"] = view.version_id
    if view.storage_class and view.storage_class != "STANDARD":
        headers["x-amz-storage-class"] = view.storage_class
    headers.update(view.headers)
    return headers


def _written_headers(written: Written) -> dict[str, str]:
    headers = {"ETag": quote_etag(written.etag)}
    if written.version_id:
        headers["x-amz-version-id"] = written.version_id
    headers.update(written.headers)
    return headers


async def put_object(s: Services, call: Call) -> Reply:
    ref = ref_of(call)
    meta = object_meta(call.headers)
    pre = precondition(call)
    condition = await s.store.condition("put", ref, pre)  # a false condition costs no upload
    mode = await s.store.mode_for_write(ref.bucket, s.modes(call))
    declared = declared_md5(call.headers)
    body = call.body(want_md5=s.store.md5_wanted(mode, declared))
    written = await s.store.put_object(ref, body, mode, meta, declared_md5=declared, precondition=pre, condition=condition)
    return empty_reply(headers=_written_headers(written))


def declared_md5(headers: Mapping[str, str]) -> str | None:
    """Content-MD5 as hex when it is well formed (the body decoder rejects it otherwise)."""
    value = headers.get("content-md5")
    if value is None:
        return None
    try:
        digest = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None
    return digest.hex() if len(digest) == 16 else None


def check_read(call: Call, view: ObjectView) -> None:
    """GET and HEAD: a delete marker is NoSuchKey; then If-Match, If-None-Match, If-(Un)Modified-Since."""
    if view.delete_marker:
        raise errors.NoSuchKey(headers={"x-amz-delete-marker": "true"})
    check_conditions(call.headers, view.etag, view.last_modified)


def _version_id(call: Call) -> str | None:
    version = call.query.get("versionId")
    if version is not None and not 0 < len(version) <= 1024:
        raise errors.InvalidArgument("Invalid version id specified", ArgumentName="versionId", ArgumentValue=version)
    return version


def _part_number(call: Call) -> int | None:
    """?partNumber=N (S3 reads it as a ranged GET of part N), checked; None when absent."""
    raw = call.query.get("partNumber")
    if raw is None:
        return None
    if "range" in call.headers:
        raise errors.InvalidRequest("Cannot specify both Range header and partNumber query parameter")
    if not (raw.isascii() and raw.isdigit() and 1 <= int(raw) <= 10000):
        raise errors.InvalidArgument(
            "Part number must be an integer between 1 and 10000, inclusive", ArgumentName="partNumber", ArgumentValue=raw
        )
    return int(raw)


def _checksum_mode(call: Call) -> bool:
    return call.headers.get("x-amz-checksum-mode", "").upper() == "ENABLED"


def _overrides(call: Call) -> dict[str, str]:
    return {header: call.query[param] for param, header in RESPONSE_OVERRIDES.items() if param in call.query}


async def get_object(s: Services, call: Call) -> Reply:
    part_number = _part_number(call)
    byte_range = parse_range(call.headers.get("range")) if part_number is None else None
    whole = byte_range is None and part_number is None
    opened = await s.store.open(ref_of(call), s.modes(call), version_id=_version_id(call), whole=whole,
                                byte_range=byte_range)
    try:
        check_read(call, opened.view)  # only after an SSE-C object's key was checked (store.open)
    except BaseException:
        await opened.close()
        raise
    download = await s.store.read(opened, byte_range=byte_range, part_number=part_number,
                                  checksums=whole and _checksum_mode(call))
    view = download.view
    headers = view_headers(view)
    headers.update(_overrides(call))
    if download.range is None:
        status, length = 200, view.size
    else:
        first, last = download.range
        status, length = 206, last - first + 1
        headers["Content-Range"] = f"bytes {first}-{last}/{view.size}"
    if download.parts_count is not None:
        headers["x-amz-mp-parts-count"] = str(download.parts_count)
    return Reply(status, headers, download.body, length)


async def head_object(s: Services, call: Call) -> Reply:
    opened = await s.store.open(ref_of(call), s.modes(call), version_id=_version_id(call), plaintext=True)
    check_read(call, opened.view)  # only after an SSE-C object's key was checked (store.open)
    view = await s.store.with_checksums(opened) if _checksum_mode(call) else opened.view
    headers = view_headers(view)
    headers.update(_overrides(call))
    part_number = _part_number(call)
    byte_range = parse_range(call.headers.get("range"))  # no Range beside partNumber (_part_number)
    if part_number is not None:
        Catalog.require_encrypted(opened.stored)
        first, last, parts_count = part_span(opened.stored, part_number)
        byte_range = ByteRange(first, last)
        if parts_count is not None:
            headers["x-amz-mp-parts-count"] = str(parts_count)
    status, length = 200, view.size
    if byte_range is not None:
        first, last = byte_range.resolve(view.size)
        headers["Content-Range"] = f"bytes {first}-{last}/{view.size}"
        status, length = 206, last - first + 1
    return Reply(status, headers, None, length)  # HEAD: the length of what GET would send, and no body


# S3's conditional deletes: refused rather than ignored (deleting what the client meant to keep)
DELETE_CONDITIONS = ("If-Match", "x-amz-if-match-last-modified-time", "x-amz-if-match-size")
DELETE_ELEMENTS = ("ETag", "LastModifiedTime", "Size")


def _unconditional(names: Iterable[str]) -> None:
    """A delete that names a condition (header, or DeleteObjects element) is refused: 501."""
    name = next(iter(names), None)
    if name is not None:
        raise errors.NotImplemented(f"Conditional deletes ({name}) are not supported by s3proxy.", Header=name)


async def delete_object(s: Services, call: Call) -> Reply:
    _unconditional(h for h in DELETE_CONDITIONS if h in call.headers)
    result = await s.store.delete_object(ref_of(call), _version_id(call))
    headers = {}
    if result.version_id:
        headers["x-amz-version-id"] = result.version_id
    if result.delete_marker:
        headers["x-amz-delete-marker"] = "true"
    return empty_reply(204, headers)


# DeleteObjects needs one of these: Content-MD5 or a flexible checksum (named, or announced for the trailer)
_DELETE_INTEGRITY_HEADERS = (
    "content-md5", "x-amz-checksum-crc32", "x-amz-checksum-crc32c", "x-amz-checksum-sha1", "x-amz-checksum-sha256",
    "x-amz-checksum-crc64nvme", "x-amz-sdk-checksum-algorithm", "x-amz-trailer",
)


async def delete_objects(s: Services, call: Call) -> Reply:
    bucket = bucket_of(call)
    if not any(h in call.headers for h in _DELETE_INTEGRITY_HEADERS):
        raise errors.InvalidRequest("Missing required header for this request: Content-MD5")
    doc = await call.read_xml("Delete")
    objects = xml.as_list(doc.get("Object"))
    if not objects or len(objects) > MAX_DELETE_KEYS:
        raise errors.MalformedXML()
    quiet = xml.text(doc.get("Quiet")).lower() == "true"
    _unconditional(e for obj in objects if isinstance(obj, dict) for e in DELETE_ELEMENTS if e in obj)
    deleted, failed = [], []
    for obj in objects:
        if not isinstance(obj, dict) or "Key" not in obj:
            raise errors.MalformedXML()
        key = xml.verbatim(obj.get("Key"))  # " a" is not "a"
        version = xml.text(obj.get("VersionId")) or None
        try:
            if call.authorize_key is not None:  # each key is authorized on its own (http/authorize.py)
                await call.authorize_key("s3:DeleteObjectVersion" if version else "s3:DeleteObject", key)
            result = await s.store.delete_object(ObjectRef(bucket, key), version)
        except errors.NoSuchKey:
            result = None
        except errors.S3Error as exc:
            failed.append({"Key": key, "VersionId": version, "Code": exc.code, "Message": exc.text})
            continue
        if quiet:
            continue
        entry: dict[str, str | bool | None] = {"Key": key, "VersionId": version}
        if result is not None and result.delete_marker:
            entry.update({"DeleteMarker": True, "DeleteMarkerVersionId": result.version_id})
        deleted.append(entry)
    return xml_reply("DeleteResult", {"Deleted": deleted, "Error": failed})


def parse_copy_source(value: str) -> tuple[str, str, str | None]:
    """`x-amz-copy-source`: [/]bucket/key[?versionId=v], URL-encoded."""
    path, _, query = value.partition("?")
    try:
        path = urllib.parse.unquote(path, errors="strict")
    except UnicodeDecodeError:
        raise errors.InvalidArgument("Invalid copy source encoding", ArgumentName="x-amz-copy-source") from None
    path = path.removeprefix("/")
    bucket, sep, key = path.partition("/")
    if not bucket or not sep or not key:
        raise errors.InvalidArgument(
            "Copy Source must mention the source bucket and key: sourcebucket/sourcekey",
            ArgumentName="x-amz-copy-source",
            ArgumentValue=value,
        )
    version = urllib.parse.parse_qs(query).get("versionId", [None])[0] if query else None
    return bucket, key, version


def copy_source_check(call: Call, view: ObjectView) -> None:
    """A copy's source: a delete marker is NoSuchKey; then the x-amz-copy-source-if-* conditions."""
    if view.delete_marker:
        raise errors.NoSuchKey()
    check_conditions(call.headers, view.etag, view.last_modified, prefix="x-amz-copy-source-")


async def copy_object(s: Services, call: Call) -> Reply:
    bucket, key = bucket_of(call), key_of(call)
    src_bucket, src_key, src_version = parse_copy_source(call.headers["x-amz-copy-source"])
    directive = call.headers.get("x-amz-metadata-directive", "COPY").upper()
    if directive not in ("COPY", "REPLACE"):
        raise errors.InvalidArgument(
            "Unknown metadata directive.", ArgumentName="x-amz-metadata-directive", ArgumentValue=directive
        )
    tagging_directive = call.headers.get("x-amz-tagging-directive", "COPY").upper()
    if tagging_directive not in ("COPY", "REPLACE"):
        raise errors.InvalidArgument(
            "Unknown tagging directive.", ArgumentName="x-amz-tagging-directive", ArgumentValue=tagging_directive
        )
    meta = object_meta(call.headers) if directive == "REPLACE" else None
    target_class = storage_class(call.headers)
    if (
        (src_bucket, src_key) == (bucket, key)
        and src_version is None
        and directive == "COPY"
        and not _changes_object(call.headers)
    ):
        raise errors.InvalidRequest(
            "This copy request is illegal because it is trying to copy an object to itself without changing the "
            "object's metadata, storage class, website redirect location or encryption attributes."
        )
    modes = s.modes(call)
    pre = precondition(call)
    src = await s.store.open(ObjectRef(src_bucket, src_key), modes, version_id=src_version, copy_source=True, plaintext=True)
    try:
        copy_source_check(call, src.view)  # only after an SSE-C source's key was checked (store.open)
        # COPY keeps metadata and content headers; the storage class is the request's (S3: STANDARD unless named)
        if meta is None:
            meta = dataclasses.replace(src.view.meta, storage_class=target_class, tagging=None)
        written = await s.store.copy(
            src, ObjectRef(bucket, key), modes, meta=meta,
            tagging=call.headers.get("x-amz-tagging", "") if tagging_directive == "REPLACE" else None, precondition=pre,
        )
    finally:
        await src.close()
    src_view = src.view
    headers = dict(written.headers)
    if src_view.version_id:
        headers["x-amz-copy-source-version-id"] = src_view.version_id
    if written.version_id:
        headers["x-amz-version-id"] = written.version_id
    return xml_reply(
        "CopyObjectResult", {"LastModified": written.last_modified, "ETag": quote_etag(written.etag)}, headers=headers
    )


def _changes_object(headers: Mapping[str, str]) -> bool:
    return any(
        h in headers
        for h in (
            "x-amz-storage-class",
            "x-amz-website-redirect-location",
            "x-amz-server-side-encryption",
            "x-amz-server-side-encryption-customer-algorithm",
            "x-amz-server-side-encryption-aws-kms-key-id",
        )
    )


# tagging -------------------------------------------------------------------------------------------------


def parse_tag_set(data: bytes) -> list[tuple[str, str]]:
    doc = xml.parse(data, "Tagging")
    tag_set = doc.get("TagSet")
    if tag_set is None:
        raise errors.MalformedXML()
    tags = []
    for tag in xml.as_list(tag_set.get("Tag") if isinstance(tag_set, dict) else None):
        if not isinstance(tag, dict) or "Key" not in tag:
            raise errors.MalformedXML()
        tags.append((xml.text(tag.get("Key")), xml.text(tag.get("Value"))))
    validate_tags(tags)
    return tags


def validate_tags(tags: list[tuple[str, str]]) -> None:
    if len(tags) > MAX_TAGS:
        raise errors.InvalidTag("Object tags cannot be greater than 10")
    keys = [k for k, _ in tags]
    if len(set(keys)) != len(keys):
        raise errors.InvalidTag("Cannot provide multiple Tags with the same key")
    for k, v in tags:
        if not 1 <= len(k) <= 128:
            raise errors.InvalidTag("The TagKey you have provided is invalid")
        if len(v) > 256:
            raise errors.InvalidTag("The TagValue you have provided is invalid")


async def get_object_tagging(s: Services, call: Call) -> Reply:
    version = _version_id(call)
    tags = await s.store.tags(ref_of(call), version)
    headers = {"x-amz-version-id": version} if version else {}
    return xml_reply("Tagging", {"TagSet": {"Tag": [{"Key": k, "Value": v} for k, v in tags]}}, headers=headers)


async def put_object_tagging(s: Services, call: Call) -> Reply:
    ref = ref_of(call)
    tags = parse_tag_set(await call.read_small())
    version = _version_id(call)
    await s.store.put_tags(ref, tags, version)
    return empty_reply(headers={"x-amz-version-id": version} if version else {})


async def delete_object_tagging(s: Services, call: Call) -> Reply:
    version = _version_id(call)
    await s.store.delete_tags(ref_of(call), version)
    return empty_reply(204, {"x-amz-version-id": version} if version else {})
