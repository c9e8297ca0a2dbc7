"""Buckets as the operations see them: the backend's bucket calls, and what the proxy keeps per bucket.

The operations reach the backend only through the store; for buckets the calls are plain
pass-throughs (list, head, versioning) plus the configuration the proxy keeps in its own records:
the default encryption (`bucket-encryption/<bucket>`) and who may reach the bucket (`access`: its
owner, bucket policy and Block Public Access, bucket_access.py). Every such record is sealed,
generation-numbered and anchored (internal.py), so a record edited, rolled back or deleted in the
backend fails the request instead of reading as "no default" or "no owner". Creating a bucket
records its owner; deleting a configuration or a bucket leaves a tombstone.
"""

from __future__ import annotations

from .. import errors
from ..auth.credentials import DEFAULT_ACCOUNT
from ..backends.base import Backend, BucketInfo, Capabilities
from ..internal import BUCKET_ENCRYPTION, InternalRecords
from ..modes.resolve import BucketEncryption
from .bucket_access import BucketAccess


class Buckets:
    def __init__(self, backend: Backend, records: InternalRecords, *, default_account: str = DEFAULT_ACCOUNT) -> None:
        self.backend = backend
        self.records = records
        self.access = BucketAccess(backend, records, default_account)

    @property
    def capabilities(self) -> Capabilities:
        return self.backend.capabilities

    # pass-throughs ---------------------------------------------------------------------------------
    async def list(self) -> list[BucketInfo]:
        return list(await self.backend.list_buckets())

    async def create(self, name: str, account: str) -> None:
        """A new bucket owned by `account`: BucketAlreadyExists when another account owns one of that
        name, BucketAlreadyOwnedByYou when `account` does. No one can use it before its owner is recorded."""
        access = self.access
        owner = await access.owner(name)
        if owner is not None:
            if owner != account:
                raise errors.BucketAlreadyExists()
            raise errors.BucketAlreadyOwnedByYou()
        with access.creating(name):
            await self.backend.create_bucket(name)
            try:
                await access.set_owner(name, account)
            except BaseException:
                await self.backend.delete_bucket(name)
                raise

    async def delete(self, name: str) -> None:
        await self.backend.delete_bucket(name)
        await self.records.forget_bucket_record(BUCKET_ENCRYPTION, name)
        await self.access.forget(name)

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
