"""Who may reach a bucket, as the proxy records it: its owner, its bucket policy, its Block Public Access.

Three records per bucket in the proxy's internal records (read through InternalRecords, which
caches them briefly and forgets a record locally the moment it changes):

    bucket-owner/<bucket>                 {"account": "<12 digits>"}, written when the bucket is created
    bucket-policy/<bucket>                {"policy": "<the document as put>"}
    bucket-public-access-block/<bucket>   the four flags, and whether the bucket has a configuration at all

A bucket with no owner record that the backend has (made before accounts existed, or on the
backend directly) belongs to the proxy's default account (`account_id`). A bucket with no
Block Public Access record blocks everything public (new buckets, as on AWS since April 2023, and
older ones alike); DeletePublicAccessBlock records a configuration of four false flags marked
absent, which GetPublicAccessBlock answers as S3 does for a bucket without one.

An anonymous request can be granted only by a bucket policy (ACLs are BucketOwnerEnforced), so
`may_be_public` answers from the set of buckets that have a policy record, listed from the hidden
bucket at most once per record lifetime (5 s) whatever the number of anonymous requests: a
request naming any other bucket is refused before any record, keystore anchor or backend is
read, and leaves nothing cached (issue 14: anonymous requests cost O(1) and leave no state).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from .. import errors
from ..backends.base import Backend
from ..format.errors import IntegrityError
from ..internal import InternalRecords

log = logging.getLogger("s3proxy.access")
integrity_log = logging.getLogger("s3proxy.integrity")

FLAGS = ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets")


@dataclass(frozen=True)
class PublicAccessBlock:
    block_public_acls: bool = True
    ignore_public_acls: bool = True
    block_public_policy: bool = True
    restrict_public_buckets: bool = True
    configured: bool = True  # False: the bucket has no configuration (after DeletePublicAccessBlock)

    @property
    def flags(self) -> dict[str, bool]:
        return dict(zip(FLAGS, (self.block_public_acls, self.ignore_public_acls, self.block_public_policy,
                                self.restrict_public_buckets), strict=True))


NO_CONFIGURATION = PublicAccessBlock(False, False, False, False, configured=False)


# the kinds of bucket record (internal.py: sealed, generation-numbered, anchored in the keystore)
OWNER, POLICY, PUBLIC_ACCESS_BLOCK = "bucket-owner", "bucket-policy", "bucket-public-access-block"


class BucketAccess:
    """The access records of every bucket: owner, policy, public access block."""

    def __init__(self, backend: Backend, records: InternalRecords, default_account: str) -> None:
        self.backend = backend
        self.records = records
        self.default_account = default_account
        self._creating: set[str] = set()  # buckets this proxy is creating: no owner yet, and no one may use them
        self._with_policy: set[str] = set()  # buckets with a policy record (or a tombstone): see may_be_public
        self._listed_at: float | None = None
        self._listing = asyncio.Lock()

    async def owner(self, bucket: str) -> str | None:
        """The account that owns `bucket`; None when no such bucket exists (or it is being created here)."""
        if bucket in self._creating:
            return None
        found = await self.records.bucket_record(OWNER, bucket)
        if found:
            return str(found["account"])
        try:
            await self.backend.head_bucket(bucket)
        except errors.NoSuchBucket:
            return None
        return self.default_account  # older than accounts: the default account's

    async def owners(self, buckets: list[str]) -> dict[str, str | None]:
        """The owners of buckets the backend listed (so each exists: no record means the default account;
        None for one being created here, or whose owner record fails its integrity check: such a
        bucket is listed to no one, and one damaged record does not break every listing), 16 records
        read at a time."""
        gate = asyncio.Semaphore(16)

        async def one(bucket: str) -> str | None:
            if bucket in self._creating:
                return None
            async with gate:
                try:
                    found = await self.records.bucket_record(OWNER, bucket)
                except IntegrityError as e:
                    integrity_log.error("bucket %r left out of ListBuckets: its owner record failed its integrity "
                                        "check (%s)", bucket, e)
                    return None
            return str(found["account"]) if found else self.default_account

        return dict(zip(buckets, await asyncio.gather(*(one(b) for b in buckets)), strict=True))

    def creating(self, bucket: str) -> _Creating:
        """While a bucket is being created here, it has no owner (see `owner`)."""
        return _Creating(self._creating, bucket)

    async def set_owner(self, bucket: str, account: str) -> None:
        await self.records.put_bucket_record(OWNER, bucket, {"account": account})

    async def may_be_public(self, bucket: str) -> bool:
        """False when `bucket` has no bucket policy, so nothing can grant an anonymous request on it.
        The buckets with one are listed at most once per record lifetime (single-flight); a policy put
        on another proxy counts here within that lifetime, as every bucket record does. A listing that
        fails leaves the last answer in place until the next lifetime (anonymous requests are refused,
        not retried against a failing backend)."""
        records = self.records
        if self._listed_at is None or records.clock() - self._listed_at >= records.ttl:
            async with self._listing:
                if self._listed_at is None or records.clock() - self._listed_at >= records.ttl:
                    try:
                        self._with_policy |= await records.buckets_with(POLICY)
                    except (errors.S3Error, OSError) as exc:  # TimeoutError is an OSError
                        log.warning("listing the buckets with a policy failed (%s); anonymous requests are "
                                    "refused on buckets not yet known to have one", type(exc).__name__)
                    self._listed_at = records.clock()
        return bucket in self._with_policy

    async def policy(self, bucket: str) -> str | None:
        found = await self.records.bucket_record(POLICY, bucket)
        return str(found["policy"]) if found else None

    async def put_policy(self, bucket: str, text: str) -> None:
        await self.records.put_bucket_record(POLICY, bucket, {"policy": text})
        self._with_policy.add(bucket)

    async def delete_policy(self, bucket: str) -> None:
        await self.records.put_bucket_record(POLICY, bucket, None)  # a tombstone

    async def public_access_block(self, bucket: str) -> PublicAccessBlock:
        found = await self.records.bucket_record(PUBLIC_ACCESS_BLOCK, bucket)
        if not found:
            return PublicAccessBlock()
        block_acls, ignore_acls, block_policy, restrict_buckets = (bool(found.get(flag, True)) for flag in FLAGS)
        return PublicAccessBlock(block_acls, ignore_acls, block_policy, restrict_buckets,
                                 configured=bool(found.get("configured", True)))

    async def put_public_access_block(self, bucket: str, config: PublicAccessBlock) -> None:
        await self.records.put_bucket_record(PUBLIC_ACCESS_BLOCK, bucket, {**config.flags, "configured": config.configured})

    async def forget(self, bucket: str) -> None:
        """A deleted bucket's records (the owner last: until then the name stays taken)."""
        for kind in (POLICY, PUBLIC_ACCESS_BLOCK, OWNER):
            await self.records.forget_bucket_record(kind, bucket)


class _Creating:
    def __init__(self, names: set[str], bucket: str) -> None:
        self.names, self.bucket = names, bucket

    def __enter__(self) -> None:
        if self.bucket in self.names:
            raise errors.OperationAborted()
        self.names.add(self.bucket)

    def __exit__(self, *exc: object) -> None:
        self.names.discard(self.bucket)
