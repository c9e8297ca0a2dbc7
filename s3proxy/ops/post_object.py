"""POST Object: a browser upload. The form (already authenticated from its fields by the front
door, auth/post_policy.py) names the key and what PutObject takes as headers; its file streams
through the same verified body and encrypt path as a PutObject's body.

Fields that change the object are the ones S3 documents for POST; a field that would ask for
something s3proxy does not do (an ACL other than private, object lock, a website redirect) is
refused, never ignored. The answer is S3's: a 303 to `success_action_redirect` (or the older
`redirect`) with bucket, key and etag added to its query, else the `success_action_status` (200 or
204 empty, 201 with a PostResponse document; 204 for anything else).
"""

from __future__ import annotations

import urllib.parse

from multidict import CIMultiDict

from .. import errors
from ..auth.body import open_body
from ..auth.form import Form
from ..auth.post_policy import V2_FIELDS, V4_FIELDS
from ..modes.base import ObjectRef
from ..modes.resolve import BUCKET_KEY, KMS_CONTEXT, KMS_KEY_ID, SSE, SSEC_PREFIX
from . import xml
from .call import Call
from .common import MAX_KEY_BYTES, Services, bucket_of, quote_etag
from .headers import object_meta
from .objects import declared_md5, parse_tag_set
from .reply import Reply

CHECKSUM_FIELDS = tuple(f"x-amz-checksum-{a}" for a in ("crc32", "crc32c", "crc64nvme", "sha1", "sha256"))
# what a form may carry, besides x-amz-meta-* and x-ignore-*: each either shapes the object, or is the
# upload's own machinery (the key, the policy and its signature, the answer wanted)
OBJECT_FIELDS = frozenset({
    "content-type", "cache-control", "content-disposition", "content-encoding", "content-language", "expires",
    "content-md5", "x-amz-storage-class", "tagging", SSE, KMS_KEY_ID, KMS_CONTEXT, BUCKET_KEY,
    SSEC_PREFIX + "algorithm", SSEC_PREFIX + "key", SSEC_PREFIX + "key-md5", "x-amz-checksum-algorithm", *CHECKSUM_FIELDS,
})
UPLOAD_FIELDS = frozenset({
    "key", "bucket", "policy", "acl", "success_action_status", "success_action_redirect", "redirect",
    "x-amz-security-token", *V4_FIELDS, *V2_FIELDS,
})
PRIVATE_ACLS = ("private", "bucket-owner-full-control")  # what every object here is


def _check_fields(form: Form, bucket: str) -> None:
    for name in form.names():
        low = name.lower()
        if low in OBJECT_FIELDS or low in UPLOAD_FIELDS or low.startswith(("x-amz-meta-", "x-ignore-")):
            continue
        if low.startswith("x-amz-"):
            raise errors.NotImplemented(f"The POST form field {name} asks for something s3proxy does not do.", Header=name)
        raise errors.InvalidArgument(f"s3proxy does not know the POST form field {name}.", ArgumentName=name,
                                     ArgumentValue=form.get(name) or "")
    acl = form.get("acl")
    if acl is not None and acl not in PRIVATE_ACLS:
        raise errors.AccessControlListNotSupported()  # every bucket is BucketOwnerEnforced (ops/access.py)
    if form.get("bucket") not in (None, bucket):
        raise errors.AccessDenied("The form's bucket field names another bucket than the one it was posted to.")


def _key(form: Form) -> str:
    key = form.get("key")
    if key is None:
        raise errors.InvalidArgument(
            "Bucket POST must contain a field named 'key'.  If it is specified, please check the order of the fields.",
            ArgumentName="key",
            ArgumentValue="",
        )
    if not key:
        raise errors.InvalidArgument("User key must have a length greater than 0.", ArgumentName="key", ArgumentValue="")
    if len(key.encode("utf-8")) > MAX_KEY_BYTES:
        raise errors.KeyTooLongError(Size=str(len(key.encode("utf-8"))), MaxSizeAllowed=str(MAX_KEY_BYTES))
    return key


def object_headers(form: Form) -> CIMultiDict[str]:
    """The form's fields as the request headers a PutObject of the same object would carry."""
    headers: CIMultiDict[str] = CIMultiDict()
    for name, value in form.fields:
        low = name.lower()
        if low in OBJECT_FIELDS and low not in ("tagging", "x-amz-checksum-algorithm") or low.startswith("x-amz-meta-"):
            headers.add(low, value)
    if (tagging := form.get("tagging")) is not None:
        headers["x-amz-tagging"] = urllib.parse.urlencode(parse_tag_set(tagging.encode("utf-8")))
    if (algorithm := form.get("x-amz-checksum-algorithm")) is not None:
        headers["x-amz-sdk-checksum-algorithm"] = algorithm
    headers["content-length"] = str(form.size)
    return headers


def _redirect(form: Form) -> str | None:
    """success_action_redirect (or redirect): used when it is an absolute http(s) URL, else ignored, as S3 does."""
    url = form.get("success_action_redirect") or form.get("redirect")
    if not url:
        return None
    parts = urllib.parse.urlsplit(url)
    return url if parts.scheme in ("http", "https") and parts.netloc else None


async def post_object(s: Services, call: Call) -> Reply:
    form = call.form
    if form is None:  # only the front door's form route dispatches here
        raise errors.MalformedPOSTRequest()
    bucket = bucket_of(call)
    _check_fields(form, bucket)
    ref = ObjectRef(bucket, _key(form))
    headers = object_headers(form)
    mode = await s.store.mode_for_write(ref.bucket, s.modes(call))  # call.headers are the form's fields
    declared = declared_md5(headers)
    body = open_body(call.auth, headers, form.stream, want_md5=s.store.md5_wanted(mode, declared))
    written = await s.store.put_object(ref, body, mode, object_meta(headers), declared_md5=declared)
    etag = quote_etag(written.etag)
    location = f"{call.endpoint}/{urllib.parse.quote(ref.key, safe='')}"  # the key percent-encoded, "/" included
    answer: dict[str, str] = {"ETag": etag, "Location": location, **written.headers}
    if written.version_id:
        answer["x-amz-version-id"] = written.version_id
    if (url := _redirect(form)) is not None:
        query = urllib.parse.urlencode([("bucket", ref.bucket), ("key", ref.key), ("etag", etag)])
        answer["Location"] = url + ("&" if urllib.parse.urlsplit(url).query else "?") + query
        return Reply(303, answer)
    status = form.get("success_action_status")
    if status == "201":
        body_xml = xml.render("PostResponse", {"Location": location, "Bucket": ref.bucket, "Key": ref.key, "ETag": etag},
                              namespace=None)
        return Reply(201, {**answer, "Content-Type": "application/xml"}, body_xml)
    return Reply(200 if status == "200" else 204, answer)
