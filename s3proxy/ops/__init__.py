"""The S3 operations, one coroutine each, named after the operation they serve.

Each takes the Services and a Call (the authenticated, routed request: ops/call.py) and returns a
Reply (ops/reply.py); none touches the HTTP server. They speak S3's wire vocabulary (xml.py,
headers.py) and pass typed values down to the object store. `table(services)` gives the front
door its map from operation name to handler.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable

from .. import errors
from . import access, attributes, buckets, encryption, listing, multipart, objects, post_object
from .call import Call
from .common import Services as Services  # re-exported: the app builds one
from .reply import Reply

Handler = Callable[[Services, Call], Awaitable[Reply]]

_OPERATIONS: dict[str, Handler] = {
    "ListBuckets": buckets.list_buckets,
    "CreateBucket": buckets.create_bucket,
    "DeleteBucket": buckets.delete_bucket,
    "HeadBucket": buckets.head_bucket,
    "GetBucketLocation": buckets.get_bucket_location,
    "GetBucketVersioning": buckets.get_bucket_versioning,
    "PutBucketVersioning": buckets.put_bucket_versioning,
    "ListObjects": listing.list_objects,
    "ListObjectsV2": listing.list_objects_v2,
    "ListObjectVersions": listing.list_object_versions,
    "ListMultipartUploads": listing.list_multipart_uploads,
    "PutObject": objects.put_object,
    "PostObject": post_object.post_object,
    "GetObject": objects.get_object,
    "HeadObject": objects.head_object,
    "GetObjectAttributes": attributes.get_object_attributes,
    "DeleteObject": objects.delete_object,
    "DeleteObjects": objects.delete_objects,
    "CopyObject": objects.copy_object,
    "GetObjectTagging": objects.get_object_tagging,
    "PutObjectTagging": objects.put_object_tagging,
    "DeleteObjectTagging": objects.delete_object_tagging,
    "CreateMultipartUpload": multipart.create_multipart_upload,
    "UploadPart": multipart.upload_part,
    "UploadPartCopy": multipart.upload_part_copy,
    "CompleteMultipartUpload": multipart.complete_multipart_upload,
    "AbortMultipartUpload": multipart.abort_multipart_upload,
    "ListParts": multipart.list_parts,
    "PutBucketEncryption": encryption.put_bucket_encryption,
    "GetBucketEncryption": encryption.get_bucket_encryption,
    "DeleteBucketEncryption": encryption.delete_bucket_encryption,
    "UpdateObjectEncryption": encryption.update_object_encryption,
    "PutBucketPolicy": access.put_bucket_policy,
    "GetBucketPolicy": access.get_bucket_policy,
    "DeleteBucketPolicy": access.delete_bucket_policy,
    "GetBucketPolicyStatus": access.get_bucket_policy_status,
    "PutPublicAccessBlock": access.put_public_access_block,
    "GetPublicAccessBlock": access.get_public_access_block,
    "DeletePublicAccessBlock": access.delete_public_access_block,
    "GetBucketAcl": access.get_bucket_acl,
    "PutBucketAcl": access.put_bucket_acl,
    "GetObjectAcl": access.get_object_acl,
    "PutObjectAcl": access.put_object_acl,
    "GetBucketOwnershipControls": access.get_bucket_ownership_controls,
}
# writes that may name an ACL in their headers: only the ones BucketOwnerEnforced means are accepted
_ACL_WRITES = frozenset({"PutObject", "CopyObject", "CreateMultipartUpload"})


NAMES = tuple(_OPERATIONS)


def table(services: Services) -> dict[str, Callable[[Call], Awaitable[Reply]]]:
    return {name: functools.partial(_guarded, name, handler, services) for name, handler in _OPERATIONS.items()}


async def _guarded(name: str, handler: Handler, services: Services, call: Call) -> Reply:
    """No client reaches the proxy's own bucket of internal records (the front door's authorizer
    refuses it under every spelling first); writes name no ACL but the bucket owner's."""
    if call.bucket == services.internal_bucket:
        raise errors.AccessDenied()
    if name in _ACL_WRITES:
        access.check_request_acl(call.headers)
    elif name == "CreateBucket":
        access.check_bucket_acl(call.headers)
    return await handler(services, call)
