"""The S3 authorization stage: may this principal run this operation on this bucket or object, now.

Every routed S3 operation names the IAM action(s) AWS requires for it (`ACTIONS`: a name, or a pair
whose second member is the action when the request names a versionId) and a resource ARN: the bucket
(`arn:aws:s3:::b`) or the object (`arn:aws:s3:::b/key`). The decision is the policy engine's
(s3proxy.policy.decide), the same one the KMS uses, from:

- the caller's identity policy (full access within its own account when none was configured);
- the bucket's policy, if it has one; and whose bucket it is (BucketAccess.owner). Within the owner's
  account the identity policy or a bucket-policy Allow naming the user suffices; from another account
  both must allow; an explicit Deny in either wins;
- Block Public Access: with RestrictPublicBuckets on (the default), a public statement of the bucket
  policy grants nothing outside the owner's account (policy/public.py);
- anonymous requests (no signature at all) have no identity policy: only an applying bucket-policy
  Allow to `Principal: *` lets them through, never an Allow naming an account.

CopyObject and UploadPartCopy are authorized twice: the write of the destination and the read of the
source (`x-amz-copy-source`, parsed as the operation parses it), both before any byte is read.
DeleteObjects names its keys in its body: the operation asks `call.authorize_key` for each.

Condition keys are gathered only when a policy that is evaluated reads them (Policy.reads_context):
the aws:* keys of the caller and the connection, and per operation the SSE headers of a write
(of a multipart upload, the ones it was created with), the request's tags, the listing parameters,
and the object's existing tags, fetched from the backend only when a policy reads
s3:ExistingObjectTag/ (and, for anonymous callers, only when a public Allow could apply at all).

The proxy's internal bucket is refused first, under any spelling that names it, for every operation,
as a bucket and as a copy source. AccessDenied messages name the policy that denied for callers of the
bucket owner's account, and say only "Access Denied" to everyone else, as S3 does.
"""

from __future__ import annotations

import logging
import time
import urllib.parse
from collections.abc import Callable, Mapping, Sequence

from .. import errors
from ..auth.credentials import Credential
from ..modes.base import ObjectRef
from ..ops.call import Call
from ..ops.objects import parse_copy_source, parse_tag_set
from ..policy import BUCKET_POLICY, Match, Outcome, Policy, Principal, Request, decide, evaluate, parse_stored, time_context
from ..policy.public import is_public, without_public
from ..store import MultipartUploads, ObjectStore
from ..store.bucket_access import BucketAccess

log = logging.getLogger(__name__)

Action = str | tuple[str, str]  # (without versionId, with versionId)

ACTIONS: dict[str, Action] = {
    "ListBuckets": "s3:ListAllMyBuckets",
    "CreateBucket": "s3:CreateBucket",
    "DeleteBucket": "s3:DeleteBucket",
    "HeadBucket": "s3:ListBucket",
    "GetBucketLocation": "s3:GetBucketLocation",
    "GetBucketVersioning": "s3:GetBucketVersioning",
    "PutBucketVersioning": "s3:PutBucketVersioning",
    "ListObjects": "s3:ListBucket",
    "ListObjectsV2": "s3:ListBucket",
    "ListObjectVersions": "s3:ListBucketVersions",
    "ListMultipartUploads": "s3:ListBucketMultipartUploads",
    "PutObject": "s3:PutObject",
    "PostObject": "s3:PutObject",
    "CopyObject": "s3:PutObject",
    "GetObject": ("s3:GetObject", "s3:GetObjectVersion"),
    "HeadObject": ("s3:GetObject", "s3:GetObjectVersion"),
    "GetObjectAttributes": ("s3:GetObjectAttributes", "s3:GetObjectVersionAttributes"),
    "DeleteObject": ("s3:DeleteObject", "s3:DeleteObjectVersion"),
    "DeleteObjects": "",  # per key, by the operation (call.authorize_key)
    "GetObjectTagging": ("s3:GetObjectTagging", "s3:GetObjectVersionTagging"),
    "PutObjectTagging": ("s3:PutObjectTagging", "s3:PutObjectVersionTagging"),
    "DeleteObjectTagging": ("s3:DeleteObjectTagging", "s3:DeleteObjectVersionTagging"),
    "CreateMultipartUpload": "s3:PutObject",
    "UploadPart": "s3:PutObject",
    "UploadPartCopy": "s3:PutObject",
    "CompleteMultipartUpload": "s3:PutObject",
    "AbortMultipartUpload": "s3:AbortMultipartUpload",
    "ListParts": "s3:ListMultipartUploadParts",
    "PutBucketEncryption": "s3:PutEncryptionConfiguration",
    "GetBucketEncryption": "s3:GetEncryptionConfiguration",
    "DeleteBucketEncryption": "s3:PutEncryptionConfiguration",
    # AWS authorizes UpdateObjectEncryption as a write of the object's encryption: s3:PutObject
    "UpdateObjectEncryption": "s3:PutObject",
    "GetBucketTagging": "s3:GetBucketTagging",
    "PutBucketTagging": "s3:PutBucketTagging",
    "DeleteBucketTagging": "s3:PutBucketTagging",
    "PutBucketPolicy": "s3:PutBucketPolicy",
    "GetBucketPolicy": "s3:GetBucketPolicy",
    "DeleteBucketPolicy": "s3:DeleteBucketPolicy",
    "GetBucketPolicyStatus": "s3:GetBucketPolicyStatus",
    "PutPublicAccessBlock": "s3:PutBucketPublicAccessBlock",
    "GetPublicAccessBlock": "s3:GetBucketPublicAccessBlock",
    "DeletePublicAccessBlock": "s3:PutBucketPublicAccessBlock",
    "GetBucketAcl": "s3:GetBucketAcl",
    "PutBucketAcl": "s3:PutBucketAcl",
    "GetObjectAcl": ("s3:GetObjectAcl", "s3:GetObjectVersionAcl"),
    "PutObjectAcl": ("s3:PutObjectAcl", "s3:PutObjectVersionAcl"),
    "GetBucketOwnershipControls": "s3:GetBucketOwnershipControls",
}
OBJECT_OPERATIONS = frozenset({
    "PutObject", "PostObject", "CopyObject", "GetObject", "HeadObject", "GetObjectAttributes", "DeleteObject",
    "GetObjectTagging", "PutObjectTagging", "DeleteObjectTagging", "CreateMultipartUpload", "UploadPart",
    "UploadPartCopy", "CompleteMultipartUpload", "AbortMultipartUpload", "ListParts", "UpdateObjectEncryption",
    "GetObjectAcl", "PutObjectAcl",
})
# only the bucket owner's account may run these, whatever a bucket policy says (S3: 405 to anyone else);
# and a user of that account with full access (no identity policy) is never locked out by the bucket
# policy, as AWS's account root user is not
POLICY_MANAGEMENT = frozenset({"PutBucketPolicy", "GetBucketPolicy", "DeleteBucketPolicy"})
# writes whose SSE headers and x-amz-tagging describe the object written
WRITES = frozenset({"PutObject", "PostObject", "CopyObject", "CreateMultipartUpload"})
PARTS = frozenset({"UploadPart", "UploadPartCopy", "CompleteMultipartUpload"})
SSE_KEYS = ("x-amz-server-side-encryption", "x-amz-server-side-encryption-aws-kms-key-id",
            "x-amz-server-side-encryption-customer-algorithm")
LISTINGS = {"ListObjects": "max-keys", "ListObjectsV2": "max-keys", "ListObjectVersions": "max-keys"}
# operations on an existing object whose tags s3:ExistingObjectTag/<k> reads (AWS's list)
TAGGED_READS = frozenset({"GetObject", "HeadObject", "GetObjectTagging", "PutObjectTagging", "DeleteObjectTagging",
                          "GetObjectAcl", "PutObjectAcl", "GetObjectAttributes"})
_EXISTING_TAG = "s3:existingobjecttag/"
_POLICIES = 1024  # parsed bucket policies kept, by text


class S3Authorizer:
    """The front door's Authorizer for S3 operations (s3proxy.http.server.Authorizer)."""

    def __init__(self, access: BucketAccess, *, internal_bucket: str, store: ObjectStore | None = None,
                 uploads: MultipartUploads | None = None, clock: Callable[[], float] = time.time) -> None:
        self.access = access
        self.internal = internal_bucket.lower()
        self.store = store
        self.uploads = uploads
        self.clock = clock
        self._policies: dict[str, tuple[Policy, Policy, bool, bool]] = {}  # text -> (policy, not public, public, reads tags)
        self._second: tuple[int, dict[str, tuple[str, ...]]] = (-1, {})

    # --- the stage ------------------------------------------------------------------------------------------

    async def authorize(self, call: Call, operation: str) -> None:
        action = ACTIONS.get(operation)
        if action is None:  # an operation this table does not name: 501 for a user, nothing for anyone else
            if operation == "NotImplemented" and not call.auth.anonymous:
                return
            raise errors.AccessDenied()
        if operation == "ListBuckets":
            self._identity_only(call, "s3:ListAllMyBuckets", "arn:aws:s3:::*")
            return
        bucket = call.bucket or ""
        self._refuse_internal(bucket)
        if operation == "CreateBucket":
            self._identity_only(call, "s3:CreateBucket", f"arn:aws:s3:::{bucket}")
            return
        await self._reachable_anonymously(call, bucket)
        owner = await self.access.owner(bucket)
        if owner is None:
            raise errors.NoSuchBucket(BucketName=bucket)
        call.bucket_owner = owner
        if operation == "DeleteObjects":
            call.authorize_key = lambda act, key: self._check(call, operation, act, bucket, key, owner)
            return
        if operation in POLICY_MANAGEMENT and call.account != owner:
            raise errors.AccessDenied() if call.auth.anonymous else errors.MethodNotAllowed()
        version = call.query.get("versionId") is not None
        name = action[version] if isinstance(action, tuple) else action
        key = call.key if operation in OBJECT_OPERATIONS else None
        if operation == "PostObject":
            key = call.headers.get("key")  # the form's key field (the front door put the fields in `headers`)
        await self._check(call, operation, name, bucket, key, owner)
        if operation in ("CopyObject", "UploadPartCopy"):
            await self._check_source(call)

    async def _check_source(self, call: Call) -> None:
        src_bucket, src_key, src_version = parse_copy_source(call.headers["x-amz-copy-source"])
        self._refuse_internal(src_bucket)
        await self._reachable_anonymously(call, src_bucket)
        owner = await self.access.owner(src_bucket)
        if owner is None:
            raise errors.NoSuchBucket(BucketName=src_bucket)
        action = "s3:GetObjectVersion" if src_version is not None else "s3:GetObject"
        await self._check(call, "CopySource", action, src_bucket, src_key, owner, version=src_version)

    async def _reachable_anonymously(self, call: Call, bucket: str) -> None:
        """Only a bucket policy can grant an anonymous request: on a bucket without one it is refused
        here, before the bucket's records or the backend are read (whether the bucket exists is not
        told either: AccessDenied, where AWS would say NoSuchBucket)."""
        if call.auth.anonymous and not await self.access.may_be_public(bucket):
            raise errors.AccessDenied()

    def _refuse_internal(self, bucket: str) -> None:
        if bucket.lower() == self.internal or urllib.parse.unquote(bucket).lower() == self.internal:
            raise errors.AccessDenied()

    def _identity_only(self, call: Call, action: str, resource: str) -> None:
        """An action on no bucket policy's resource: the caller's identity policy decides alone."""
        credential = call.auth.credential
        if call.auth.anonymous:
            raise errors.AccessDenied()
        identity = credential.policy
        if identity.allows_all:
            return
        request = Request(
            principal_of(credential), action, resource, self._context(call, "", None) if identity.reads_context else {}
        )
        found = evaluate(identity, request)
        if found is not Match.ALLOW:
            outcome = Outcome.DENIED_BY_IDENTITY if found is Match.DENY else Outcome.NO_IDENTITY_ALLOW
            raise errors.AccessDenied(s3_denial(request, outcome))

    # --- one decision ---------------------------------------------------------------------------------------

    async def _check(self, call: Call, operation: str, action: str, bucket: str, key: str | None, owner: str,
                     *, version: str | None = None) -> None:
        credential = call.auth.credential
        anonymous = call.auth.anonymous
        resource = f"arn:aws:s3:::{bucket}" if key is None else f"arn:aws:s3:::{bucket}/{key}"
        identity = credential.policy
        same_account = credential.account == owner
        if identity.allows_all and same_account and not anonymous:
            text = await self.access.policy(bucket)
            if text is None:
                return  # the common case: the owner's user with full access, no bucket policy
        else:
            text = await self.access.policy(bucket)
        policy, reads_tags = None, False
        if text is not None:
            full, private, public, reads_tags = self._parsed(text)
            policy = full
            if public and not same_account and (await self.access.public_access_block(bucket)).restrict_public_buckets:
                policy = private
        if operation in POLICY_MANAGEMENT and same_account and identity.allows_all and not anonymous:
            return  # the account's administrators cannot be locked out of their own bucket's policy
        principal = ANONYMOUS_PRINCIPAL if anonymous else principal_of(credential)
        context: Mapping[str, Sequence[str]] = {}
        if identity.reads_context or (policy is not None and policy.reads_context):
            context = await self._request_context(call, operation, bucket, key, version,
                                                  tags=reads_tags or _reads_tags(identity), policy=policy,
                                                  action=action, resource=resource)
        request = Request(principal, action, resource, context)
        if anonymous:
            allowed = policy is not None and evaluate(policy, request) is Match.ALLOW
            if not allowed:
                raise errors.AccessDenied()
            return
        outcome = decide(request, identity=identity, resource=policy, resource_account=owner)
        if not outcome.allowed:
            raise errors.AccessDenied(s3_denial(request, outcome) if same_account else None)

    def _parsed(self, text: str) -> tuple[Policy, Policy, bool, bool]:
        found = self._policies.get(text)
        if found is None:
            policy = parse_stored(text, BUCKET_POLICY)
            if policy.problems:
                log.warning("a bucket policy has parts this version cannot evaluate exactly; they are evaluated "
                            "fail-closed (such a Deny applies, such an Allow does not): %s", "; ".join(policy.problems))
            public = is_public(policy)
            found = (policy, without_public(policy) if public else policy, public, _reads_tags(policy))
            if len(self._policies) >= _POLICIES:
                self._policies.clear()
            self._policies[text] = found
        return found

    # --- condition keys --------------------------------------------------------------------------------------

    async def _request_context(self, call: Call, operation: str, bucket: str, key: str | None, version: str | None,
                               *, tags: bool, policy: Policy | None, action: str, resource: str) -> dict[str, Sequence[str]]:
        out = self._context(call, operation, key)
        if operation == "CopySource":
            out = {k: v for k, v in out.items() if not k.startswith(("s3:x-amz-server-side", "s3:requestobjecttag"))}
        if operation in PARTS and self.uploads is not None and key is not None:
            upload_id = call.query.get("uploadId", "")
            requested = await self.uploads.requested_encryption(ObjectRef(bucket, key), upload_id)
            for header in SSE_KEYS:
                out.pop("s3:" + header, None)
                if header in requested:
                    out["s3:" + header] = (requested[header],)
        if operation == "PutObjectTagging" and policy is not None:
            out.update(_tag_keys(parse_tag_set(await call.read_small())))
        if tags and key is not None and (operation in TAGGED_READS or operation == "CopySource"):
            if not call.auth.anonymous or _could_grant(policy, action, resource):
                out.update(await self._existing_tags(bucket, key, version if operation == "CopySource"
                                                     else call.query.get("versionId")))
        return out

    def _context(self, call: Call, operation: str, key: str | None) -> dict[str, Sequence[str]]:
        out: dict[str, Sequence[str]] = {} if call.auth.anonymous else dict(call.caller.condition_keys)
        if call.auth.anonymous:
            out["aws:principaltype"] = ("Anonymous",)
            out["aws:securetransport"] = ("true" if call.secure else "false",)
            if call.remote:
                out["aws:sourceip"] = (call.remote,)
            if call.headers.get("user-agent"):
                out["aws:useragent"] = (call.headers["user-agent"],)
        out.update(self._time())
        headers = call.headers
        if operation in WRITES or operation in PARTS:
            for header in SSE_KEYS:
                value = headers.get(header)
                if value is not None:
                    out["s3:" + header] = (value,)
        if operation in WRITES:
            tagging = headers.get("x-amz-tagging") if operation != "PostObject" else None
            if tagging is not None:
                out.update(_tag_keys(urllib.parse.parse_qsl(tagging, keep_blank_values=True)))
            elif operation == "PostObject" and headers.get("tagging"):
                out.update(_tag_keys(parse_tag_set(headers["tagging"].encode())))
        if operation in LISTINGS or operation == "ListMultipartUploads":
            query = call.query
            for name in ("prefix", "delimiter"):
                if name in query:
                    out["s3:" + name] = (query[name],)
            limit = query.get("max-keys") if operation in LISTINGS else None
            if limit is not None:
                out["s3:max-keys"] = (limit,)
        return out

    async def _existing_tags(self, bucket: str, key: str, version: str | None) -> dict[str, Sequence[str]]:
        if self.store is None:
            return {}
        try:
            tags = await self.store.tags(ObjectRef(bucket, key), version)
        except (errors.NoSuchKey, errors.NoSuchVersion, errors.NotImplemented):
            return {}
        return {_EXISTING_TAG + k: (v,) for k, v in tags}

    def _time(self) -> dict[str, tuple[str, ...]]:
        now = self.clock()
        second, keys = self._second
        if int(now) != second:
            keys = time_context(now)
            self._second = (int(now), keys)
        return keys


ANONYMOUS_PRINCIPAL = Principal("", "anonymous")


def principal_of(credential: Credential) -> Principal:
    return Principal(credential.account, credential.user_name)


def _tag_keys(tags: Sequence[tuple[str, str]]) -> dict[str, Sequence[str]]:
    out: dict[str, Sequence[str]] = {"s3:requestobjecttag/" + k: (v,) for k, v in tags}
    out["s3:requestobjecttagkeys"] = tuple(k for k, _ in tags)
    return out


def _reads_tags(policy: Policy) -> bool:
    return any(c.key.startswith(_EXISTING_TAG) for st in policy.statements for c in st.conditions)


def _could_grant(policy: Policy | None, action: str, resource: str) -> bool:
    """Whether an Allow to everyone matches this action and resource (its conditions aside)."""
    return policy is not None and any(
        st.effect == "Allow" and st.principals is not None and st.principals.anyone
        and st.actions.matches(action, {}) is True and st.resources.matches(resource, {}) is True
        for st in policy.statements)


def s3_denial(request: Request, outcome: Outcome) -> str:
    """S3's words for a denial within the caller's own account."""
    why = outcome.value.format(action=request.action)
    return (f'User: {request.principal.arn} is not authorized to perform: {request.action} on resource: '
            f'"{request.resource}" {why}')


__all__ = ["ACTIONS", "S3Authorizer", "s3_denial"]
