"""What a stored object is before any key is used: its envelope fields and the client's view of it.

Both halves of the store read objects this way: single objects (objects.py) and multipart uploads
(multipart.py, for an UploadPartCopy source). Version 2 (docs/FORMAT.md §14 steps 1-2): the
metadata MAC is verified first, under IK_meta and without any key service call, so HEAD and
listings of SSE-KMS objects stay KMS-free and every field shown (content headers, user metadata,
ETag, size, encryption fields) is the one the proxy wrote under this name. A multipart object's
size, part list and MAC live in its sealed record `parts/<id>` (§7), merged in here, so every
reader sees one envelope. Version 1 (§19.1) is read as it always was, unauthenticated, while the
setting `read_format_v1` allows it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from .. import errors
from ..backends.base import ObjectInfo, ObjectMeta
from ..format import envelope as fmt
from ..format.envelope import KEY_CHECKSUMS, KEY_ETAG, KEY_MODE, KEY_MPU
from ..format.errors import IntegrityError
from ..format.keys import IntegrityKeys
from ..format.metadata import (
    BOUND_HEADERS,
    DEFAULT_CONTENT_TYPE,
    ETAG_SEALED,
    ETAG_TRAILER,
    etag_source,
    metadata_etag,
    object_arn,
    open_metadata,
    seal_metadata,
)
from ..format.records import SHARED
from ..format.trailer import TrailerValues
from ..internal import InternalRecords
from ..modes.base import EncryptionMode
from .views import (
    CSE_HEADER,
    ObjectView,
    Stored,
    client_side_format,
    open_checksums,
    split_backend_metadata,
    to_backend_metadata,
)

# on objects still in at-rest format version 1 only: what `s3proxy rewrap --upgrade` looks for (FORMAT.md §19)
FORMAT_HEADER = "x-s3proxy-format-version"


def bound_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The content headers the metadata MAC binds, as the backend holds them (§12)."""
    return {k: v for k, v in headers.items() if k in BOUND_HEADERS}


def record_name(mpu: str) -> str:
    return f"parts/{mpu}"


class Catalog:
    def __init__(self, records: InternalRecords, keys: IntegrityKeys, *, read_v1: bool = True) -> None:
        self.records = records
        self.keys = keys
        self.read_v1 = read_v1

    # writes: what the backend will hold -----------------------------------------------------------
    def sealed_meta(self, bucket: str, key: str, meta: ObjectMeta, fields: Mapping[str, str]) -> ObjectMeta:
        """`meta` (the client's own metadata and content headers) with the envelope `fields` added and
        the metadata MAC over all of it for this name: what a version-2 write stores (§12). A missing
        Content-Type is stored as S3 would serve it, so the backend returns exactly what was bound."""
        headers = bound_headers(meta.headers)
        headers.setdefault("content-type", DEFAULT_CONTENT_TYPE)
        stored = seal_metadata(self.keys.meta, object_arn(bucket, key), to_backend_metadata(meta.metadata, fields), headers)
        return replace(meta, metadata=stored, headers=headers)

    # reads -------------------------------------------------------------------------------------------
    async def stored(self, bucket: str, info: ObjectInfo) -> Stored:
        """The object `info` describes, in bucket `bucket`: metadata authenticated (version 2), part
        list merged in, ETag found (None while it is in the trailer); nothing decrypted."""
        arn = object_arn(bucket, info.key)
        version = open_metadata(self.keys.meta, arn, info.meta.metadata, bound_headers(info.meta.headers),
                                accept_v1=self.read_v1)
        user, fields = split_backend_metadata(info.meta.metadata)
        if version == 0:
            return Stored(info, fields, user, info.size, info.etag)
        if version == 2:
            where = etag_source(fields)
            etag = metadata_etag(self.keys.meta, arn, fields)
            md5 = where in (ETAG_SEALED, ETAG_TRAILER)
        else:
            where, etag = "", fields.get(KEY_ETAG)
            md5 = etag is not None and fields.get(KEY_MODE) == "AES256" and KEY_MPU not in fields
        if KEY_MPU in fields:
            name = record_name(fields[KEY_MPU])
            found = await self.records.get(name, SHARED, legacy=version == 1, immutable=True)
            if found is None:
                raise IntegrityError(f"record:{name}")
            try:
                merged = {k: found.value[r] for k, r in ((fmt.KEY_SIZE, "size"), (fmt.KEY_PARTS, "parts"), (fmt.KEY_MAC, "mac"))}
                record_etag = found.value.get("etag")
            except (KeyError, TypeError, AttributeError):
                raise IntegrityError(f"record:{name}") from None
            if not all(isinstance(v, str) for v in merged.values()):
                raise IntegrityError(f"record:{name}")
            fields.update(merged)
            if etag is None and where != ETAG_TRAILER:
                if not isinstance(record_etag, str) or not record_etag:
                    raise IntegrityError(f"record:{name}")
                etag = record_etag
        if version == 1 and etag is None:
            etag = info.etag  # an SSE-S3 object whose late MD5 was never recorded (§19.1)
        size = fields.get(fmt.KEY_SIZE, "")
        if not (size.isascii() and size.isdigit()) or (len(size) > 1 and size[0] == "0"):
            raise IntegrityError(fmt.KEY_SIZE)
        return Stored(info, fields, user, int(size), etag, version, md5)

    def view(self, stored: Stored, mode: EncryptionMode | None, *, extra: Mapping[str, str] | None = None) -> ObjectView:
        """The object as the client sees it; `mode` None shows no encryption headers."""
        info = stored.info
        headers = dict(mode.response_headers(stored.fields, on_write=False)) if mode is not None else {}
        cse = client_side_format(stored.user)
        if cse is not None:
            headers[CSE_HEADER] = cse
        if stored.version == fmt.VERSION_1:
            headers[FORMAT_HEADER] = str(stored.version)
        headers.update(extra or {})
        return ObjectView(
            key=info.key, size=stored.size, etag=stored.client_etag, last_modified=info.last_modified,
            meta=replace(info.meta, metadata=stored.user), version_id=info.version_id, storage_class=info.storage_class,
            delete_marker=info.delete_marker, is_latest=info.is_latest, headers=headers,
        )

    @staticmethod
    def require_encrypted(stored: Stored) -> None:
        if not stored.encrypted:
            raise errors.InvalidObjectState(
                "This object was not written through s3proxy and is not encrypted; encrypt it in place before reading it."
            )

    @staticmethod
    def envelope(stored: Stored, data_key: bytes) -> fmt.Envelope:
        """The format envelope, authenticated with the data key (IntegrityError if anything was changed,
        or if the backend's object is not exactly the size the envelope says, §5)."""
        envelope = fmt.open_envelope(stored.fields, data_key)
        if envelope.version != stored.version:
            raise IntegrityError(fmt.KEY_VERSION)
        if stored.info.size != envelope.stored_size:  # bytes appended or cut at rest: refuse before any byte
            raise IntegrityError("size")
        return envelope

    @staticmethod
    def checksum_headers(stored: Stored, data_key: bytes, trailer: TrailerValues | None = None) -> dict[str, str]:
        """The flexible checksum as S3 answers it with ChecksumMode ENABLED: from s3proxy-cks, or
        from the trailer's values (the caller read them)."""
        sums = open_checksums(data_key, stored.fields.get(KEY_CHECKSUMS))
        out = {f"x-amz-checksum-{k}": v for k, v in sums.items() if k != "md5"}
        if out:
            out["x-amz-checksum-type"] = "FULL_OBJECT"
        if trailer is not None:
            out.update(trailer.checksum_headers())
        return out
