"""What every S3 operation shares: its collaborators, name checks, owner identity and response helpers."""

from __future__ import annotations

import hashlib
import re
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .. import errors
from ..kms.datakeys import DataKeySource
from ..modes.base import ObjectRef
from ..modes.kms_modes import BucketKeyCache
from ..modes.resolve import ModeResolver
from ..store import Buckets, MultipartUploads, ObjectStore
from ..store.conditions import Precondition
from ..store.conditions import parse as parse_precondition
from .call import Call

MAX_KEY_BYTES = 1024
_BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_LOOSE_BUCKET_NAME = re.compile(r"^[A-Za-z0-9._-]{1,255}$")
_IP_LIKE = re.compile(r"^\d+\.\d+\.\d+\.\d+$")


@dataclass(frozen=True)
class Services:
    """The collaborators an operation may use; built once by the composition root."""

    store: ObjectStore  # single objects
    uploads: MultipartUploads
    buckets: Buckets
    kms: DataKeySource  # the KMS (s3proxy.kms.service.KeyService) as the data path sees it
    region: str
    account_id: str
    clock: Callable[[], float]
    internal_bucket: str
    ssec_over_http: str = "loopback"
    bucket_keys: BucketKeyCache | None = None

    def owner(self, call: Call) -> dict[str, str]:
        """The owner S3 names: of the request's bucket (BucketOwnerEnforced: it owns every object), else
        (ListBuckets) the caller's account."""
        account = call.bucket_owner or call.account
        return {"ID": canonical_user_id(account), "DisplayName": account}

    def modes(self, call: Call) -> ModeResolver:
        """What turns this request's SSE headers (or a bucket default, or a stored envelope) into an
        encryption mode, for the requester (call.caller, as S3 calls the KMS on their behalf)."""
        return ModeResolver(
            kms=self.kms,
            caller=call.caller,
            headers=call.headers,
            secure=call.secure,
            loopback=call.loopback,
            ssec_over_http=self.ssec_over_http,
            bucket_keys=self.bucket_keys,
            request_id=call.request_id,
        )


def canonical_user_id(account_id: str) -> str:
    """A stable 64-hex canonical user id, as S3 shows owners."""
    return hashlib.sha256(f"s3proxy-account:{account_id}".encode()).hexdigest()


def check_new_bucket_name(name: str) -> None:
    """The rules for new general-purpose bucket names (S3 user guide, "Bucket naming rules")."""
    if (
        not _BUCKET_NAME.match(name)
        or ".." in name
        or ".-" in name
        or "-." in name
        or _IP_LIKE.match(name)
        or name.startswith(("xn--", "sthree-", "amzn-s3-demo-"))
        or name.endswith(("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3"))
    ):
        raise errors.InvalidBucketName(BucketName=name)


def bucket_of(call: Call) -> str:
    """The request's bucket, checked loosely (existing buckets may predate the strict rules)."""
    name = call.bucket or ""
    if not _LOOSE_BUCKET_NAME.match(name):
        raise errors.InvalidBucketName(BucketName=name)
    return name


def ref_of(call: Call) -> ObjectRef:
    return ObjectRef(bucket_of(call), key_of(call))


def key_of(call: Call) -> str:
    key = call.key or ""
    if len(key.encode("utf-8")) > MAX_KEY_BYTES:
        raise errors.KeyTooLongError(Size=str(len(key.encode("utf-8"))), MaxSizeAllowed=str(MAX_KEY_BYTES))
    return key


def precondition(call: Call) -> Precondition | None:
    """The conditional write a PutObject, CompleteMultipartUpload or CopyObject asks for. S3 takes
    conditional writes only signed with SigV4 (user guide, "conditional writes")."""
    pre = parse_precondition(call.headers)
    if pre is not None and call.auth.signature_version != 4:
        raise errors.InvalidRequest("Conditional writes require AWS Signature Version 4. Please use AWS4-HMAC-SHA256.")
    return pre


def quote_etag(etag: str) -> str:
    return f'"{etag}"'


def int_param(call: Call, name: str, default: int, *, low: int = 0, high: int | None = None) -> int:
    raw = call.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise errors.InvalidArgument(
            f"Provided {name} not an integer or within integer range", ArgumentName=name, ArgumentValue=raw
        ) from None
    if value < low:
        raise errors.InvalidArgument(
            f"Argument {name} must be an integer between {low} and 2147483647", ArgumentName=name, ArgumentValue=raw
        )
    return value if high is None else min(value, high)


def url_encoder(call: Call) -> Callable[[str | None], str | None]:
    """encoding-type=url: encode key-like values so any byte survives XML."""
    encoding = call.query.get("encoding-type")
    if encoding is None:
        return lambda s: s
    if encoding != "url":
        raise errors.InvalidArgument(
            "Invalid Encoding Method specified in Request", ArgumentName="encoding-type", ArgumentValue=encoding
        )
    return lambda s: None if s is None else urllib.parse.quote(s, safe="/")


async def close_body(body: Any) -> None:
    aclose = getattr(body, "aclose", None)
    if aclose is not None:
        await aclose()
