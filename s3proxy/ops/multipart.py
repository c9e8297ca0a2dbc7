"""Multipart upload operations: Create, UploadPart, UploadPartCopy, Complete, Abort, ListParts."""

from __future__ import annotations

from .. import errors
from ..format.ranges import ByteRange
from ..modes.base import ObjectRef
from . import xml
from .call import Call
from .common import Services, int_param, precondition, quote_etag, ref_of, url_encoder
from .headers import object_meta, parse_range
from .objects import copy_source_check, parse_copy_source
from .reply import Reply, empty_reply, xml_reply

MIN_PART_SIZE = 5 * 1024 * 1024
MAX_PART_NUMBER = 10000


def _part_number(call: Call) -> int:
    raw = call.query.get("partNumber", "")
    try:
        number = int(raw)
    except ValueError:
        number = 0
    if not 1 <= number <= MAX_PART_NUMBER:
        raise errors.InvalidArgument(
            "Part number must be an integer between 1 and 10000, inclusive", ArgumentName="partNumber", ArgumentValue=raw
        )
    return number


def _upload_id(call: Call) -> str:
    upload_id = call.query.get("uploadId", "")
    if not upload_id:
        raise errors.NoSuchUpload(UploadId=upload_id)
    return upload_id


async def create_multipart_upload(s: Services, call: Call) -> Reply:
    ref = ref_of(call)
    upload_id, headers = await s.uploads.create(ref, object_meta(call.headers), s.modes(call))
    return xml_reply(
        "InitiateMultipartUploadResult", {"Bucket": ref.bucket, "Key": ref.key, "UploadId": upload_id}, headers=headers
    )


async def upload_part(s: Services, call: Call) -> Reply:
    ref = ref_of(call)
    number, upload_id = _part_number(call), _upload_id(call)
    upload = await s.uploads.open(ref, upload_id, s.modes(call))
    body = call.body(want_md5=upload.wants_md5)
    etag, headers = await s.uploads.upload_part(upload, number, body)
    headers.update({f"x-amz-checksum-{k}": v for k, v in body.checksums.items()})
    return empty_reply(headers={"ETag": quote_etag(etag), **headers})


async def upload_part_copy(s: Services, call: Call) -> Reply:
    ref = ref_of(call)
    number, upload_id = _part_number(call), _upload_id(call)
    src_bucket, src_key, src_version = parse_copy_source(call.headers["x-amz-copy-source"])
    range_header = call.headers.get("x-amz-copy-source-range")
    byte_range = parse_range(range_header) if range_header else None
    if range_header and (byte_range is None or byte_range.first is None or byte_range.last is None):
        raise errors.InvalidArgument(
            "The x-amz-copy-source-range value must be of the form bytes=first-last where first and last are the "
            "zero-based offsets of the first and last bytes to copy",
            ArgumentName="x-amz-copy-source-range",
            ArgumentValue=range_header,
        )

    modes = s.modes(call)
    upload = await s.uploads.open(ref, upload_id, modes)
    src = await s.store.open(ObjectRef(src_bucket, src_key), modes, version_id=src_version, copy_source=True,
                             byte_range=byte_range or ByteRange(0, None))
    try:
        copy_source_check(call, src.view)  # only after an SSE-C source's key was checked
        if byte_range is not None and byte_range.last is not None and byte_range.last >= src.view.size:
            raise errors.InvalidArgument(
                f"Range specified is not valid for source object of size: {src.view.size}",
                ArgumentName="x-amz-copy-source-range",
                ArgumentValue=range_header or "",
            )
    except BaseException:
        await src.close()
        raise
    if src.view.size == 0:
        download = await s.store.read(src)
        size = 0
    else:
        download = await s.store.read(src, byte_range=byte_range or ByteRange(0, src.view.size - 1))
        assert download.range is not None
        size = download.range[1] - download.range[0] + 1
    etag, headers = await s.uploads.upload_part_copy(upload, number, download.body, size)
    src_view = src.view
    if src_view.version_id:
        headers["x-amz-copy-source-version-id"] = src_view.version_id
    return xml_reply("CopyPartResult", {"LastModified": src_view.last_modified, "ETag": quote_etag(etag)}, headers=headers)


async def complete_multipart_upload(s: Services, call: Call) -> Reply:
    ref = ref_of(call)
    bucket, key = ref.bucket, ref.key
    upload_id = _upload_id(call)
    doc = await call.read_xml("CompleteMultipartUpload")
    requested: list[tuple[int, str]] = []
    for part in xml.as_list(doc.get("Part")):
        if not isinstance(part, dict):
            raise errors.MalformedXML()
        try:
            number = int(xml.text(part.get("PartNumber")))
        except ValueError:
            raise errors.MalformedXML() from None
        requested.append((number, xml.text(part.get("ETag")).strip().strip('"')))
    if not requested:
        raise errors.MalformedXML()
    numbers = [n for n, _ in requested]
    if numbers != sorted(numbers) or len(set(numbers)) != len(numbers):
        raise errors.InvalidPartOrder(UploadId=upload_id)
    written = await s.uploads.complete(ref, upload_id, requested, s.modes(call), min_part_size=MIN_PART_SIZE,
                                       precondition=precondition(call))
    headers = {"x-amz-version-id": written.version_id} if written.version_id else {}
    headers.update(written.headers)
    return xml_reply(
        "CompleteMultipartUploadResult",
        {"Location": f"/{bucket}/{key}", "Bucket": bucket, "Key": key, "ETag": quote_etag(written.etag)},
        headers=headers,
    )


async def abort_multipart_upload(s: Services, call: Call) -> Reply:
    await s.uploads.abort(ref_of(call), _upload_id(call))
    return empty_reply(204)


async def list_parts(s: Services, call: Call) -> Reply:
    ref = ref_of(call)
    bucket, key = ref.bucket, ref.key
    upload_id = _upload_id(call)
    enc = url_encoder(call)
    marker = int_param(call, "part-number-marker", 0)
    max_parts = int_param(call, "max-parts", 1000, high=1000)
    parts = [p for p in sorted(await s.uploads.list_parts(ref, upload_id), key=lambda p: p.part_number) if p.part_number > marker]
    page = parts[:max_parts]
    truncated = len(parts) > len(page)
    owner = s.owner(call)
    return xml_reply(
        "ListPartsResult",
        {
            "Bucket": bucket,
            "Key": enc(key),
            "UploadId": upload_id,
            "PartNumberMarker": marker,
            "NextPartNumberMarker": page[-1].part_number if page else marker,
            "MaxParts": max_parts,
            "IsTruncated": truncated,
            "EncodingType": call.query.get("encoding-type"),
            "Part": [
                {"PartNumber": p.part_number, "LastModified": p.last_modified, "ETag": quote_etag(p.etag), "Size": p.size}
                for p in page
            ],
            "Initiator": owner,
            "Owner": owner,
            "StorageClass": "STANDARD",
        },
    )
