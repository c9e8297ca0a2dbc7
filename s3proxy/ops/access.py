"""Who may reach a bucket: bucket policies, Block Public Access, and ACLs as S3 answers them today.

Bucket policies (Put/Get/DeleteBucketPolicy, GetBucketPolicyStatus) are parsed by the one policy
engine (s3proxy.policy) as BUCKET_POLICY: a document naming anything it cannot evaluate exactly
is refused at Put, MalformedPolicy, so no policy is stored that would fail open. A public policy
(policy/public.py) is refused while the bucket's BlockPublicPolicy is on, as S3 does (AccessDenied).

ACLs: every bucket is BucketOwnerEnforced (S3's default since April 2023): ACLs are off, the
bucket owner owns every object, and the only ACLs accepted are the ones that say exactly that
(`private`, `bucket-owner-full-control`, or the equivalent XML granting the owner FULL_CONTROL).
Anything else is AccessControlListNotSupported, as S3 answers it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .. import errors
from ..policy import BUCKET_POLICY, Policy, PolicyError, parse
from ..policy.public import is_public
from ..store.bucket_access import FLAGS, NO_CONFIGURATION, PublicAccessBlock
from . import xml
from .call import Call
from .common import Services, bucket_of, canonical_user_id, key_of, ref_of
from .reply import Reply, empty_reply, xml_reply

# S3's messages for a policy it refuses, by what is wrong (PolicyError.kind); else the engine's own words
POLICY_MESSAGES = {
    "json": "This policy contains invalid Json",
    "principal": "Invalid principal in policy",
    "action": "Policy has invalid action",
    "resource": "Policy has invalid resource",
    "condition_key": "Policy has an invalid condition key",
}
CANNED_ACLS = ("private", "bucket-owner-full-control")
GRANT_HEADERS = ("x-amz-grant-full-control", "x-amz-grant-read", "x-amz-grant-read-acp", "x-amz-grant-write",
                 "x-amz-grant-write-acp")
XSI = "http://www.w3.org/2001/XMLSchema-instance"


# --- bucket policies ---------------------------------------------------------------------------------------

def check_policy(bucket: str, text: str) -> Policy:
    """The policy `text` for `bucket`, parsed; MalformedPolicy unless every element is exact and it
    names only this bucket and its objects."""
    if not text.lstrip().startswith("{"):
        raise errors.MalformedPolicy()
    try:
        policy = parse(text, BUCKET_POLICY)
    except PolicyError as exc:
        raise errors.MalformedPolicy(POLICY_MESSAGES.get(exc.kind, str(exc))) from None
    own = f"arn:aws:s3:::{bucket}"
    for st in policy.statements:
        for pattern in st.resources.patterns:
            if pattern.text != own and not pattern.text.startswith(own + "/"):
                raise errors.MalformedPolicy(POLICY_MESSAGES["resource"])
    return policy


async def put_bucket_policy(s: Services, call: Call) -> Reply:
    bucket = bucket_of(call)
    data = await call.read_small(BUCKET_POLICY.max_bytes + 1)
    if len(data) > BUCKET_POLICY.max_bytes:
        raise errors.MalformedPolicy("Policy exceeds the maximum allowed document size.")  # S3: 20 KB
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise errors.MalformedPolicy(POLICY_MESSAGES["json"]) from None
    policy = check_policy(bucket, text)
    access = s.buckets.access
    if is_public(policy) and (await access.public_access_block(bucket)).block_public_policy:
        raise errors.AccessDenied()
    await access.put_policy(bucket, text)
    return empty_reply(204)


async def get_bucket_policy(s: Services, call: Call) -> Reply:
    text = await s.buckets.access.policy(bucket_of(call))
    if text is None:
        raise errors.NoSuchBucketPolicy(BucketName=call.bucket or "")
    return Reply(200, {"Content-Type": "application/json"}, text.encode("utf-8"))


async def delete_bucket_policy(s: Services, call: Call) -> Reply:
    await s.buckets.access.delete_policy(bucket_of(call))
    return empty_reply(204)


async def get_bucket_policy_status(s: Services, call: Call) -> Reply:
    bucket = bucket_of(call)
    text = await s.buckets.access.policy(bucket)
    if text is None:
        raise errors.NoSuchBucketPolicy(BucketName=bucket)
    try:
        public = is_public(parse(text, BUCKET_POLICY))
    except PolicyError:
        public = True  # a stored policy this version cannot read whole: say the worse
    return xml_reply("PolicyStatus", {"IsPublic": public})


# --- Block Public Access -------------------------------------------------------------------------------------

async def put_public_access_block(s: Services, call: Call) -> Reply:
    bucket = bucket_of(call)
    doc = xml.parse(await call.read_small(), "PublicAccessBlockConfiguration")
    values = []
    for flag in FLAGS:
        raw = xml.text(doc.get(flag)).lower() if doc.get(flag) is not None else "false"
        if raw not in ("true", "false"):
            raise errors.MalformedXML()
        values.append(raw == "true")
    if set(doc) - set(FLAGS) - {"@xmlns"}:
        raise errors.MalformedXML()
    await s.buckets.access.put_public_access_block(bucket, PublicAccessBlock(*values))
    return empty_reply()


async def get_public_access_block(s: Services, call: Call) -> Reply:
    bucket = bucket_of(call)
    config = await s.buckets.access.public_access_block(bucket)
    if not config.configured:
        raise errors.NoSuchPublicAccessBlockConfiguration(BucketName=bucket)
    return xml_reply("PublicAccessBlockConfiguration", config.flags)


async def delete_public_access_block(s: Services, call: Call) -> Reply:
    await s.buckets.access.put_public_access_block(bucket_of(call), NO_CONFIGURATION)
    return empty_reply(204)


# --- ACLs (BucketOwnerEnforced) -----------------------------------------------------------------------------

def check_request_acl(headers: Mapping[str, str]) -> None:
    """A write's x-amz-acl / x-amz-grant-* headers: only the ACLs that mean "the bucket owner, alone"."""
    acl = headers.get("x-amz-acl")
    if (acl is not None and acl not in CANNED_ACLS) or any(h in headers for h in GRANT_HEADERS):
        raise errors.AccessControlListNotSupported()


def check_bucket_acl(headers: Mapping[str, str]) -> None:
    """CreateBucket's ACL headers: any ACL but private conflicts with BucketOwnerEnforced."""
    acl = headers.get("x-amz-acl")
    if (acl is not None and acl != "private") or any(h in headers for h in GRANT_HEADERS):
        raise errors.InvalidBucketAclWithObjectOwnership()
    ownership = headers.get("x-amz-object-ownership")
    if ownership is not None and ownership != "BucketOwnerEnforced":
        raise errors.NotImplemented("Only the BucketOwnerEnforced object ownership is supported by s3proxy.")


def _owner_of(call: Call) -> dict[str, str]:
    account = call.bucket_owner or call.auth.credential.account
    return {"ID": canonical_user_id(account), "DisplayName": account}


def _acl_document(owner: dict[str, str]) -> dict[str, Any]:
    grantee = {"@xmlns:xsi": XSI, "@xsi:type": "CanonicalUser", **owner}
    return {"Owner": owner, "AccessControlList": {"Grant": [{"Grantee": grantee, "Permission": "FULL_CONTROL"}]}}


async def _check_put_acl(call: Call) -> None:
    """PutBucketAcl/PutObjectAcl: a canned ACL or an XML body, and only the owner's FULL_CONTROL."""
    check_request_acl(call.headers)
    data = await call.read_small()
    if "x-amz-acl" in call.headers:
        if data.strip():
            raise errors.UnexpectedContent()
        return
    if not data.strip():
        raise errors.MissingSecurityHeader()
    doc = xml.parse(data, "AccessControlPolicy")
    owner = _owner_of(call)
    acl = doc.get("AccessControlList")
    grants = xml.as_list(acl.get("Grant") if isinstance(acl, dict) else None)
    for grant in grants:
        grantee = grant.get("Grantee") if isinstance(grant, dict) else None
        if not isinstance(grantee, dict):
            raise errors.MalformedACLError()
        if (xml.text(grant.get("Permission")) != "FULL_CONTROL" or grantee.get("@xsi:type") != "CanonicalUser"
                or xml.text(grantee.get("ID")) != owner["ID"]):
            raise errors.AccessControlListNotSupported()
    if len(grants) != 1:
        raise errors.AccessControlListNotSupported()


async def get_bucket_acl(s: Services, call: Call) -> Reply:
    await s.buckets.head(bucket_of(call))
    return xml_reply("AccessControlPolicy", _acl_document(_owner_of(call)))


async def put_bucket_acl(s: Services, call: Call) -> Reply:
    await s.buckets.head(bucket_of(call))
    await _check_put_acl(call)
    return empty_reply()


async def _object_exists(s: Services, call: Call) -> None:
    ref = ref_of(call)
    key_of(call)
    if not await s.store.exists(ref, call.query.get("versionId")):
        raise errors.NoSuchKey(Key=ref.key)


async def get_object_acl(s: Services, call: Call) -> Reply:
    await _object_exists(s, call)
    return xml_reply("AccessControlPolicy", _acl_document(_owner_of(call)))


async def put_object_acl(s: Services, call: Call) -> Reply:
    await _object_exists(s, call)
    await _check_put_acl(call)
    return empty_reply()


async def get_bucket_ownership_controls(s: Services, call: Call) -> Reply:
    await s.buckets.head(bucket_of(call))
    return xml_reply("OwnershipControls", {"Rule": {"ObjectOwnership": "BucketOwnerEnforced"}})
