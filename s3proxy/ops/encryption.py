"""Bucket default encryption: PutBucketEncryption, GetBucketEncryption, DeleteBucketEncryption."""

from __future__ import annotations

from typing import Any

from .. import errors
from ..modes.kms_modes import SseKms, SseS3
from ..modes.resolve import BucketEncryption
from . import xml
from .call import Call
from .common import Services, bucket_of, ref_of
from .reply import Reply, empty_reply, xml_reply

ALGORITHMS = ("AES256", "aws:kms", "aws:kms:dsse")
ENCRYPTION_TYPES = ("NONE", "SSE-C")


def parse_configuration(data: bytes) -> BucketEncryption:
    """ServerSideEncryptionConfiguration: exactly one Rule (as S3 and MinIO enforce)."""
    doc = xml.parse(data, "ServerSideEncryptionConfiguration")
    rules = xml.as_list(doc.get("Rule"))
    if len(rules) != 1 or not isinstance(rules[0], dict):
        raise errors.MalformedXML()
    rule = rules[0]
    default = rule.get("ApplyServerSideEncryptionByDefault")
    if not isinstance(default, dict):
        raise errors.MalformedXML()
    algorithm = xml.text(default.get("SSEAlgorithm"))
    key_id = xml.text(default.get("KMSMasterKeyID")) or None
    if algorithm not in ALGORITHMS:
        raise errors.MalformedXML()
    if algorithm == "aws:kms:dsse":
        raise errors.NotImplemented("Dual-layer server-side encryption (aws:kms:dsse) is not supported by s3proxy")
    if key_id and algorithm != "aws:kms":
        raise errors.InvalidArgument(
            "a KMSMasterKeyID is not applicable if the default sse algorithm is not aws:kms or aws:kms:dsse",
            ArgumentName="ApplyServerSideEncryptionByDefault",
        )
    bucket_key = xml.text(rule.get("BucketKeyEnabled")).lower()
    if bucket_key not in ("", "true", "false"):
        raise errors.MalformedXML()
    blocked_doc = rule.get("BlockedEncryptionTypes")
    blocked = tuple(
        xml.text(t) for t in xml.as_list(blocked_doc.get("EncryptionType") if isinstance(blocked_doc, dict) else None)
    )
    if any(t not in ENCRYPTION_TYPES for t in blocked):
        raise errors.MalformedXML()
    return BucketEncryption(algorithm, key_id, bucket_key == "true", blocked)


def render_configuration(config: BucketEncryption) -> dict[str, Any]:
    rule: dict[str, Any] = {
        "ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": config.algorithm, "KMSMasterKeyID": config.kms_key_id},
        "BucketKeyEnabled": config.bucket_key,
    }
    if config.blocked:
        rule["BlockedEncryptionTypes"] = {"EncryptionType": list(config.blocked)}
    return {"Rule": rule}


async def put_bucket_encryption(s: Services, call: Call) -> Reply:
    bucket = bucket_of(call)
    if not any(h in call.headers for h in ("content-md5", "x-amz-sdk-checksum-algorithm", "x-amz-trailer")) and not any(
        h.lower().startswith("x-amz-checksum-") for h in call.headers
    ):
        raise errors.InvalidRequest("Missing required header for this request: Content-MD5")
    config = parse_configuration(await call.read_small())
    await s.buckets.put_encryption(bucket, config)
    return empty_reply()


async def get_bucket_encryption(s: Services, call: Call) -> Reply:
    bucket = bucket_of(call)
    await s.buckets.head(bucket)
    # an unconfigured bucket reports S3's own default (SSE-S3) as S3 has since 2023
    config = await s.buckets.default_encryption(bucket)
    return xml_reply("ServerSideEncryptionConfiguration", render_configuration(config))


async def delete_bucket_encryption(s: Services, call: Call) -> Reply:
    await s.buckets.delete_encryption(bucket_of(call))
    return empty_reply(204)


async def update_object_encryption(s: Services, call: Call) -> Reply:
    """Change an object's SSE-S3/SSE-KMS wrapping to an SSE-KMS key without moving its data
    (S3 API UpdateObjectEncryption, 2026): ETag, checksums, size and metadata unchanged.

    s3proxy's extension: `<ObjectEncryption><SSE-S3/></ObjectEncryption>` re-wraps an SSE-S3 object
    under the proxy's own key, newest material, and never moves an object from SSE-KMS to SSE-S3.
    Either way the object comes out in at-rest format version 2: `s3proxy rewrap --upgrade` uses
    this for the objects written in version 1 (docs/FORMAT.md §19.2)."""
    ref = ref_of(call)
    if call.query.get("versionId"):
        raise errors.NotImplemented("UpdateObjectEncryption of a non-current version is not supported by s3proxy")
    doc = xml.parse(await call.read_small(), "ObjectEncryption")
    chosen = [name for name in ("SSE-KMS", "SSE-S3") if name in doc]
    if len(chosen) != 1 or set(doc) - {"SSE-KMS", "SSE-S3", "@xmlns"}:
        raise errors.MalformedXML()
    modes = s.modes(call)
    mode: SseKms | SseS3
    if chosen == ["SSE-S3"]:
        if doc["SSE-S3"] not in (None, ""):
            raise errors.MalformedXML()
        mode = SseS3(s.kms, call.request_id)
    else:
        target = doc["SSE-KMS"]
        if not isinstance(target, dict) or not xml.text(target.get("KMSKeyArn")):
            raise errors.MalformedXML()
        bucket_key = xml.text(target.get("BucketKeyEnabled")).lower()
        if bucket_key not in ("", "true", "false"):
            raise errors.MalformedXML()
        mode = SseKms(s.kms, modes.caller, xml.text(target.get("KMSKeyArn")), bucket_key=bucket_key == "true",
                      bucket_keys=s.bucket_keys)
    await s.store.rewrap(ref, modes, mode)
    return empty_reply()
