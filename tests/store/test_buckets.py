"""Buckets over the in-memory twins: the backend's bucket calls, and the default encryption the proxy
keeps in its own records (what a write without SSE headers gets)."""

from __future__ import annotations

import pytest

from s3proxy import errors
from s3proxy.modes.base import ObjectRef
from s3proxy.modes.resolve import BucketEncryption
from tests.twins import INTERNAL_BUCKET, World

from .helpers import put


async def test_default_encryption_is_kept_applied_and_forgotten(world: World) -> None:
    await world.buckets.create("b", "000000000000")
    assert await world.buckets.encryption("b") is None
    assert await world.buckets.default_encryption("b") == BucketEncryption()  # S3's own default: SSE-S3
    key_arn = world.create_key()
    config = BucketEncryption("aws:kms", key_arn, bucket_key=True, blocked=("SSE-C",))
    await world.buckets.put_encryption("b", config)
    assert await world.buckets.encryption("b") == config
    written = await put(world, ObjectRef("b", "k"), b"defaulted")
    assert written.headers["x-amz-server-side-encryption-aws-kms-key-id"] == key_arn
    assert written.headers["x-amz-server-side-encryption-bucket-key-enabled"] == "true"
    await world.buckets.delete_encryption("b")
    assert await world.buckets.encryption("b") is None
    assert (await put(world, ObjectRef("b", "k"), b"x")).headers == {"x-amz-server-side-encryption": "AES256"}


async def test_a_deleted_bucket_forgets_its_configuration(world: World) -> None:
    """A bucket created again under the same name starts without the old one's default."""
    await world.buckets.create("b", "000000000000")
    await world.buckets.put_encryption("b", BucketEncryption(blocked=("SSE-C",)))
    await world.buckets.delete("b")
    await world.buckets.create("b", "000000000000")
    assert await world.buckets.encryption("b") is None


async def test_configuration_calls_on_a_missing_bucket_are_no_such_bucket(world: World) -> None:
    with pytest.raises(errors.NoSuchBucket):
        await world.buckets.put_encryption("none", BucketEncryption())
    with pytest.raises(errors.NoSuchBucket):
        await world.buckets.delete_encryption("none")
    with pytest.raises(errors.NoSuchBucket):
        await world.buckets.head("none")


async def test_pass_throughs_reach_the_backend(world: World) -> None:
    await world.buckets.create("b", "000000000000")
    with pytest.raises(errors.BucketAlreadyOwnedByYou):
        await world.buckets.create("b", "000000000000")
    assert [b.name for b in await world.buckets.list() if b.name != INTERNAL_BUCKET] == ["b"]
    assert await world.buckets.versioning("b") is None
    await world.buckets.put_versioning("b", "Enabled")
    assert await world.buckets.versioning("b") == "Enabled"
