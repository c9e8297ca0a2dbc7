"""What a stored object is before any key is used: its envelope fields and the client's view of it.

Both halves of the store read objects this way: single objects (objects.py) and multipart uploads
(multipart.py, for an UploadPartCopy source). A multipart object's size, part list and MAC live in
its record `parts/<id>` (docs/FORMAT.md §7), merged in here, so every reader sees one envelope.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Mapping

from .. import errors
from ..backends.base import ObjectInfo
from ..format import envelope as fmt
from ..format.envelope import KEY_CHECKSUMS, KEY_ETAG, KEY_MPU
from ..format.errors import IntegrityError
from ..internal import InternalRecords
from ..modes.base import EncryptionMode
from .views import CSE_HEADER, ObjectView, Stored, client_side_format, open_checksums, split_backend_metadata


class Catalog:
    def __init__(self, records: InternalRecords) -> None:
        self.records = records

    async def stored(self, info: ObjectInfo) -> Stored:
        """The envelope of the object `info` describes, its part list merged in; nothing decrypted."""
        user, fields = split_backend_metadata(info.meta.metadata)
        if KEY_MPU in fields:
            record = await self.records.get(f"parts/{fields[KEY_MPU]}", immutable=True)
            if not isinstance(record, dict):
                raise IntegrityError()
            fields.update({fmt.KEY_SIZE: record["size"], fmt.KEY_PARTS: record["parts"], fmt.KEY_MAC: record["mac"]})
            if KEY_ETAG not in fields and record.get("etag"):  # a copy has its own ETag in its metadata
                fields[KEY_ETAG] = record["etag"]
        if fmt.KEY_VERSION not in fields:
            return Stored(info, fields, user, info.size, info.etag)
        try:
            size = int(fields.get(fmt.KEY_SIZE, ""))
        except ValueError:
            raise IntegrityError() from None
        return Stored(info, fields, user, size, fields.get(KEY_ETAG, info.etag))

    @staticmethod
    def view(stored: Stored, mode: EncryptionMode | None, *, extra: Mapping[str, str] | None = None) -> ObjectView:
        """The object as the client sees it; `mode` None shows no encryption headers."""
        info = stored.info
        headers = dict(mode.response_headers(stored.fields, on_write=False)) if mode is not None else {}
        cse = client_side_format(stored.user)
        if cse is not None:
            headers[CSE_HEADER] = cse
        headers.update(extra or {})
        return ObjectView(
            key=info.key, size=stored.size, etag=stored.etag, last_modified=info.last_modified,
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
        """The format envelope, authenticated with the data key (IntegrityError if anything was changed)."""
        return fmt.open_envelope(stored.fields, data_key)

    @staticmethod
    def checksum_headers(stored: Stored, data_key: bytes) -> dict[str, str]:
        """The sealed flexible checksums as S3 answers them with ChecksumMode ENABLED."""
        sums = open_checksums(data_key, stored.fields.get(KEY_CHECKSUMS))
        out = {f"x-amz-checksum-{k}": v for k, v in sums.items() if k != "md5"}
        if out:
            out["x-amz-checksum-type"] = "FULL_OBJECT"
        return out
