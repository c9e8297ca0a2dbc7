"""GetObjectAttributes: an object's ETag, checksums, parts, storage class and size in one XML answer.

Facts: S3 API reference, GetObjectAttributes (attributes named in x-amz-object-attributes; parts
paged by x-amz-max-parts and x-amz-part-number-marker; the ETag unquoted; Last-Modified and
x-amz-version-id as headers) and GetObjectAttributesParts (a part is listed only when it was
uploaded with a flexible checksum; TotalPartsCount always). SSE-C objects need their key, as GET.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .. import errors
from ..auth.checksums import DISPLAY_NAMES
from .call import Call
from .common import Services, ref_of
from .headers import http_date
from .objects import _version_id
from .reply import Reply, xml_reply

ATTRIBUTES = ("ETag", "Checksum", "ObjectParts", "StorageClass", "ObjectSize")  # also the answer's element order
MAX_PARTS = 1000
_CHECKSUM = "x-amz-checksum-"


def _wanted(headers: Mapping[str, str]) -> set[str]:
    names = [n.strip() for n in headers.get("x-amz-object-attributes", "").split(",") if n.strip()]
    unknown = [n for n in names if n not in ATTRIBUTES]
    if not names or unknown:
        raise errors.InvalidArgument("Invalid attribute name specified.", ArgumentName="x-amz-object-attributes",
                                     ArgumentValue=(unknown or [""])[0])
    return set(names)


def _int_header(headers: Mapping[str, str], name: str, default: int) -> int:
    raw = headers.get(name)
    if raw is None:
        return default
    raw = raw.strip()
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 10 or int(raw) > 2**31 - 1:
        raise errors.InvalidArgument(
            f"Provided {name} not an integer or within integer range", ArgumentName=name, ArgumentValue=raw
        )
    return int(raw)


def _checksums(sums: Mapping[str, str]) -> dict[str, str]:
    return {"Checksum" + DISPLAY_NAMES[alg]: value for alg, value in sorted(sums.items()) if alg in DISPLAY_NAMES}


async def get_object_attributes(s: Services, call: Call) -> Reply:
    ref = ref_of(call)
    wanted = _wanted(call.headers)
    max_parts = min(_int_header(call.headers, "x-amz-max-parts", MAX_PARTS), MAX_PARTS)
    marker = _int_header(call.headers, "x-amz-part-number-marker", 0)
    opened = await s.store.open(ref, s.modes(call), version_id=_version_id(call), plaintext=True)  # SSE-C: as GET
    if opened.view.delete_marker:
        raise errors.NoSuchKey(headers={"x-amz-delete-marker": "true"})
    view = await s.store.with_checksums(opened) if "Checksum" in wanted else opened.view
    parts = await s.store.parts(opened) if "ObjectParts" in wanted else None
    found: dict[str, Any] = {
        "ETag": view.etag,
        "Checksum": None,
        "ObjectParts": None,
        "StorageClass": view.storage_class or "STANDARD",
        "ObjectSize": view.size,
    }
    sums = {k[len(_CHECKSUM):].lower(): v for k, v in view.headers.items()
            if k.lower().startswith(_CHECKSUM) and k.lower() != _CHECKSUM + "type"}
    if sums:
        found["Checksum"] = {**_checksums(sums), "ChecksumType": view.headers.get(_CHECKSUM + "type", "FULL_OBJECT")}
    if parts is not None:
        after = [p for p in parts if p.number > marker]
        page = after[:max_parts]
        listed = any(p.checksums for p in parts)  # S3 lists parts only when they carry checksums
        found["ObjectParts"] = {
            "PartsCount": len(parts),  # boto3's TotalPartsCount
            "PartNumberMarker": marker,
            "NextPartNumberMarker": page[-1].number if page else marker,
            "MaxParts": max_parts,
            "IsTruncated": len(after) > len(page),
            "Part": [{**_checksums(p.checksums), "PartNumber": p.number, "Size": p.size} for p in page] if listed else None,
        }
    body = {name: found[name] for name in ATTRIBUTES if name in wanted and found[name] is not None}
    headers = {"Last-Modified": http_date(view.last_modified)}
    if view.version_id:
        headers["x-amz-version-id"] = view.version_id
    return xml_reply("GetObjectAttributesResponse", body, headers=headers)
