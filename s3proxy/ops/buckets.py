"""Bucket operations: ListBuckets, CreateBucket, DeleteBucket, HeadBucket, GetBucketLocation, versioning."""

from __future__ import annotations

from .. import errors
from . import xml
from .call import Call
from .common import Services, bucket_of, check_new_bucket_name, int_param
from .reply import Reply, empty_reply, xml_reply


async def list_buckets(s: Services, call: Call) -> Reply:
    prefix = call.query.get("prefix", "")
    max_buckets = int_param(call, "max-buckets", 10000, low=1, high=10000)
    after = call.query.get("continuation-token", "")
    buckets = sorted(await s.buckets.list(), key=lambda b: b.name)
    chosen = [b for b in buckets if b.name.startswith(prefix) and b.name > after and b.name != s.internal_bucket]
    page = chosen[:max_buckets]
    truncated = len(chosen) > len(page)
    return xml_reply(
        "ListAllMyBucketsResult",
        {
            "Owner": s.owner(call),
            "Buckets": {"Bucket": [{"Name": b.name, "CreationDate": b.created, "BucketRegion": s.region} for b in page]},
            "ContinuationToken": page[-1].name if truncated else None,
            "Prefix": prefix or None,
        },
    )


async def create_bucket(s: Services, call: Call) -> Reply:
    name = call.bucket or ""
    check_new_bucket_name(name)
    if name == s.internal_bucket:
        raise errors.BucketAlreadyExists()
    data = await call.read_small()
    if data.strip():
        config = xml.parse(data, "CreateBucketConfiguration")
        location = xml.text(config.get("LocationConstraint"))
        if location and location != s.region:
            raise errors.IllegalLocationConstraint(
                f"The {location} location constraint is incompatible for the region specific endpoint this request was sent to."
            )
    try:
        await s.buckets.create(name)
    except errors.BucketAlreadyOwnedByYou:
        # S3's legacy rule: in us-east-1 re-creating a bucket you own succeeds; elsewhere it is 409
        if s.region != "us-east-1":
            raise
    return empty_reply(headers={"Location": f"/{name}"})


async def delete_bucket(s: Services, call: Call) -> Reply:
    bucket = bucket_of(call)
    await s.buckets.delete(bucket)
    return empty_reply(204)


async def head_bucket(s: Services, call: Call) -> Reply:
    await s.buckets.head(bucket_of(call))
    return empty_reply(headers={"x-amz-bucket-region": s.region})


async def get_bucket_location(s: Services, call: Call) -> Reply:
    await s.buckets.head(bucket_of(call))
    # us-east-1 is reported as an empty LocationConstraint, as S3 does
    return xml_reply("LocationConstraint", {"#text": "" if s.region == "us-east-1" else s.region})


def _require_versioning(s: Services) -> None:
    if not s.buckets.capabilities.versioning:
        raise errors.NotImplemented("Versioning is not supported by this backend")


async def get_bucket_versioning(s: Services, call: Call) -> Reply:
    bucket = bucket_of(call)
    _require_versioning(s)
    status = await s.buckets.versioning(bucket)
    return xml_reply("VersioningConfiguration", {"Status": status})


async def put_bucket_versioning(s: Services, call: Call) -> Reply:
    bucket = bucket_of(call)
    _require_versioning(s)
    config = xml.parse(await call.read_small(), "VersioningConfiguration")
    status = xml.text(config.get("Status"))
    if status not in ("Enabled", "Suspended"):
        raise errors.IllegalVersioningConfiguration()
    if xml.text(config.get("MfaDelete")) == "Enabled":
        raise errors.NotImplemented("MFA Delete is not supported")
    await s.buckets.put_versioning(bucket, status)
    return empty_reply()
