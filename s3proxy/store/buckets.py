"""Buckets as the operations see them: the backend's bucket calls, and what the proxy keeps per bucket.

The operations reach the backend only through the store; for buckets the calls are plain
pass-throughs (list, create, head, versioning) plus the configuration the proxy keeps in its own
records, today the default encryption (`bucket-encryption/<bucket>`): sealed, generation-numbered
and anchored (internal.py), so a record edited, rolled back or deleted in the backend fails the
request instead of reading as "no default". Deleting a configuration or a bucket leaves a tombstone.
"""

from __future__ import annotations

from ..backends.base import Backend, BucketInfo, Capabilities
from ..internal import BUCKET_ENCRYPTION, InternalRecords
from ..modes.resolve import BucketEncryption


class Buckets:
    def __init__(self, backend: Backend, records: InternalRecords) -> None:
        self.backend = backend
        self.records = records

    @property
    def capabilities(self) -> Capabilities:
        return self.backend.capabilities

    # pass-throughs ---------------------------------------------------------------------------------
    async def list(self) -> list[BucketInfo]:
        return list(await self.backend.list_buckets())

    async def create(self, name: str) -> None:
        await self.backend.create_bucket(name)

    async def delete(self, name: str) -> None:
        await self.backend.delete_bucket(name)
        await self.records.forget_bucket_record(BUCKET_ENCRYPTION, name)

    async def head(self, name: str) -> None:
        await self.backend.head_bucket(name)

    async def versioning(self, name: str) -> str | None:
        return await self.backend.get_bucket_versioning(name)

    async def put_versioning(self, name: str, status: str) -> None:
        await self.backend.put_bucket_versioning(name, status)

    # default encryption ------------------------------------------------------------------------------
    async def encryption(self, bucket: str) -> BucketEncryption | None:
        """The bucket's PutBucketEncryption configuration, None when it has none."""
        value = await self.records.bucket_record(BUCKET_ENCRYPTION, bucket)
        if value is None:
            return None
        return BucketEncryption(value["algorithm"], value.get("kms_key_id"), bool(value.get("bucket_key")),
                                tuple(value.get("blocked", ())))

    async def default_encryption(self, bucket: str) -> BucketEncryption:
        """What a write without SSE headers gets: the configuration, else S3's own default (SSE-S3)."""
        return await self.encryption(bucket) or BucketEncryption()

    async def put_encryption(self, bucket: str, config: BucketEncryption) -> None:
        await self.backend.head_bucket(bucket)
        await self.records.put_bucket_record(
            BUCKET_ENCRYPTION, bucket,
            {"algorithm": config.algorithm, "kms_key_id": config.kms_key_id, "bucket_key": config.bucket_key,
             "blocked": list(config.blocked)},
        )

    async def delete_encryption(self, bucket: str) -> None:
        await self.backend.head_bucket(bucket)
        await self.records.put_bucket_record(BUCKET_ENCRYPTION, bucket, None)
