"""Request and response header rules shared by the S3 operations: ranges, dates, conditions, metadata.

The Range header parses here into format.ranges.ByteRange, which the object store resolves against
an object's size (it lives below the store, with the rest of the range arithmetic)."""

from __future__ import annotations

import datetime as dt
import email.utils
import re
from collections.abc import Mapping

from .. import errors
from ..backends.base import CONTENT_HEADERS, ObjectMeta
from ..format.ranges import ByteRange

META_PREFIX = "x-amz-meta-"
MAX_METADATA_BYTES = 2048  # S3: user-defined metadata is limited to 2 KB (names and values, UTF-8)

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$", re.ASCII)  # HTTP digits are ASCII (RFC 9110 §14.1.1)


def parse_range(value: str | None) -> ByteRange | None:
    """S3 honours one byte range; anything it cannot parse is ignored, as RFC 9110 says."""
    if not value:
        return None
    m = _RANGE.match(value.strip())
    if not m or (not m.group(1) and not m.group(2)):
        return None
    first = int(m.group(1)) if m.group(1) else None
    last = int(m.group(2)) if m.group(2) else None
    if first is not None and last is not None and last < first:
        return None
    return ByteRange(first, last)


def http_date(when: dt.datetime) -> str:
    return email.utils.format_datetime(when.astimezone(dt.UTC), usegmt=True)


def parse_http_date(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed


def _etag_matches(header: str, etag: str) -> bool:
    tags = [t.strip() for t in header.split(",")]
    return any(t == "*" or t.removeprefix("W/").strip('"') == etag for t in tags)


def check_conditions(
    headers: Mapping[str, str], etag: str, last_modified: dt.datetime, *, prefix: str = ""
) -> None:
    """If-Match / If-None-Match / If-(Un)Modified-Since as S3 evaluates them (RFC 9110 §13.2.2).

    `prefix` is "x-amz-copy-source-" for the copy-source variants, which all fail with 412.
    """
    modified = last_modified.replace(microsecond=0)
    if_match = headers.get(prefix + "if-match")
    if_none_match = headers.get(prefix + "if-none-match")
    if_unmodified = parse_http_date(headers.get(prefix + "if-unmodified-since"))
    if_modified = parse_http_date(headers.get(prefix + "if-modified-since"))
    if if_match is not None:
        if not _etag_matches(if_match, etag):
            raise errors.PreconditionFailed(Condition="If-Match")
    elif if_unmodified is not None and modified > if_unmodified:
        raise errors.PreconditionFailed(Condition="If-Unmodified-Since")
    if if_none_match is not None:
        if _etag_matches(if_none_match, etag):
            raise _not_modified("If-None-Match", prefix, etag, last_modified)
    elif if_modified is not None and modified <= if_modified:
        raise _not_modified("If-Modified-Since", prefix, etag, last_modified)


def _not_modified(condition: str, prefix: str, etag: str, last_modified: dt.datetime) -> errors.S3Error:
    """A copy source's failed condition is 412; a GET/HEAD's is 304, which carries the validators
    a 200 would have sent (RFC 9110 §15.4.5), as S3 does: ETag and Last-Modified."""
    if prefix:
        return errors.PreconditionFailed(Condition=condition)
    return errors.NotModified(headers={"ETag": f'"{etag}"', "Last-Modified": http_date(last_modified)})


def object_meta(headers: Mapping[str, str]) -> ObjectMeta:
    """User metadata, content headers, tagging and storage class from a PUT/POST/copy request."""
    metadata: dict[str, str] = {}
    size = 0
    for name, value in headers.items():
        lower = name.lower()
        if lower.startswith(META_PREFIX):
            key = lower[len(META_PREFIX):]
            metadata[key] = f"{metadata[key]},{value}" if key in metadata else value
            size += len(key.encode()) + len(value.encode())
    if size > MAX_METADATA_BYTES:
        raise errors.MetadataTooLarge(Size=str(size), MaxSizeAllowed=str(MAX_METADATA_BYTES))
    content = {h: headers[h] for h in CONTENT_HEADERS if h in headers}
    if "content-encoding" in content:  # aws-chunked names the transfer framing, not the object's encoding
        kept = [e.strip() for e in content["content-encoding"].split(",") if e.strip() and e.strip().lower() != "aws-chunked"]
        content["content-encoding"] = ",".join(kept)
        if not kept:
            del content["content-encoding"]
    return ObjectMeta(metadata=metadata, headers=content, tagging=headers.get("x-amz-tagging"),
                      storage_class=storage_class(headers))


def storage_class(headers: Mapping[str, str]) -> str | None:
    """x-amz-storage-class, checked; None when the request names none (S3 then stores STANDARD)."""
    value = headers.get("x-amz-storage-class")
    if value is not None and value not in STORAGE_CLASSES:
        raise errors.InvalidStorageClass(StorageClassRequested=value)
    return value


STORAGE_CLASSES = frozenset(
    "STANDARD REDUCED_REDUNDANCY STANDARD_IA ONEZONE_IA INTELLIGENT_TIERING GLACIER DEEP_ARCHIVE "
    "OUTPOSTS GLACIER_IR SNOW EXPRESS_ONEZONE FSX_OPENZFS FSX_ONTAP".split()
)


def meta_headers(meta: ObjectMeta) -> dict[str, str]:
    """Response headers for stored metadata: x-amz-meta-* and the content headers."""
    out = {META_PREFIX + k: v for k, v in meta.metadata.items()}
    out.update(meta.headers)
    return out


# GetObject's response-* query parameters and the header each overrides
RESPONSE_OVERRIDES = {
    "response-content-type": "Content-Type",
    "response-content-language": "Content-Language",
    "response-expires": "Expires",
    "response-cache-control": "Cache-Control",
    "response-content-disposition": "Content-Disposition",
    "response-content-encoding": "Content-Encoding",
}
