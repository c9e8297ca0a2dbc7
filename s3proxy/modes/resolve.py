"""Resolve a request into one EncryptionMode: from its SSE headers, the bucket default, or the stored envelope.

All of S3's rules about which SSE headers may go together, and which errors they earn, live here.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from .. import errors
from ..kms.caller import Caller
from ..kms.datakeys import DataKeySource
from .base import KEY_MODE, EncryptionMode
from .kms_modes import BucketKeyCache, SseKms, SseS3, decode_context
from .sse_c import CustomerKey, SseC, parse_customer_key

SSE = "x-amz-server-side-encryption"
KMS_KEY_ID = "x-amz-server-side-encryption-aws-kms-key-id"
KMS_CONTEXT = "x-amz-server-side-encryption-context"
BUCKET_KEY = "x-amz-server-side-encryption-bucket-key-enabled"
COPY_SOURCE_SSEC = "x-amz-copy-source-server-side-encryption-customer-"
SSEC_PREFIX = "x-amz-server-side-encryption-customer-"
NOT_APPLICABLE = "The encryption parameters are not applicable to this object."
MISSING_SSEC = (
    "The object was stored using a form of Server Side Encryption. "
    "The correct parameters must be provided to retrieve the object."
)


@dataclass(frozen=True)
class BucketEncryption:
    """A bucket's default encryption (PutBucketEncryption), or S3's own default when unset."""

    algorithm: str = "AES256"  # AES256 | aws:kms
    kms_key_id: str | None = None
    bucket_key: bool = False
    blocked: tuple[str, ...] = ()  # EncryptionType values: NONE | SSE-C

    @property
    def blocks_ssec(self) -> bool:
        return "SSE-C" in self.blocked


@dataclass(frozen=True)
class ModeResolver:
    """Everything needed to turn one request's headers into modes."""

    kms: DataKeySource
    caller: Caller  # the requester
    headers: Mapping[str, str]
    secure: bool
    loopback: bool
    ssec_over_http: str  # never | loopback | always
    bucket_keys: BucketKeyCache | None = None
    rand: Callable[[int], bytes] = os.urandom
    request_id: str | None = None

    # writes ---------------------------------------------------------------------------------
    def for_write(self, default: BucketEncryption) -> EncryptionMode:
        """PutObject, CopyObject (target), CreateMultipartUpload."""
        sse = self.headers.get(SSE)
        ssec_headers = (SSEC_PREFIX + "algorithm", SSEC_PREFIX + "key", SSEC_PREFIX + "key-md5")
        if any(h in self.headers for h in ssec_headers) and default.blocks_ssec:
            raise errors.AccessDenied(
                "Requests specifying Server Side Encryption with Customer provided keys are blocked for this bucket."
            )
        customer = self.customer_key()
        kms_headers = [h for h in (KMS_KEY_ID, KMS_CONTEXT) if h in self.headers]
        if customer is not None:
            if sse is not None or kms_headers:
                raise errors.InvalidArgument(
                    "Server Side Encryption with Customer provided key is incompatible with the encryption method specified",
                    ArgumentName=SSE, ArgumentValue=sse or "",
                )
            return SseC(customer, rand=self.rand)
        if kms_headers and sse != "aws:kms":
            raise errors.InvalidArgument(
                "Server Side Encryption with AWS KMS managed key requires HTTP header x-amz-server-side-encryption : aws:kms",
                ArgumentName=SSE,
            )
        if sse is None:
            return self._default(default)
        if sse == "AES256":
            return SseS3(self.kms, self.request_id)
        if sse == "aws:kms":
            return self._kms(self.headers.get(KMS_KEY_ID), self._bucket_key_header(default), self.headers.get(KMS_CONTEXT))
        if sse == "aws:kms:dsse":
            raise errors.NotImplemented("Dual-layer server-side encryption (aws:kms:dsse) is not supported by s3proxy")
        raise errors.InvalidArgument(
            "The encryption method specified is not supported", ArgumentName=SSE, ArgumentValue=sse
        )

    def _bucket_key_header(self, default: BucketEncryption) -> bool:
        value = self.headers.get(BUCKET_KEY)
        if value is None:
            return default.bucket_key and default.algorithm == "aws:kms"
        if value.lower() not in ("true", "false"):
            raise errors.InvalidArgument(
                "Invalid value for header x-amz-server-side-encryption-bucket-key-enabled",
                ArgumentName=BUCKET_KEY, ArgumentValue=value,
            )
        return value.lower() == "true"

    def _default(self, default: BucketEncryption) -> EncryptionMode:
        if default.algorithm == "aws:kms":
            return self._kms(default.kms_key_id, default.bucket_key, None)
        return SseS3(self.kms, self.request_id)

    def _kms(self, key_id: str | None, bucket_key: bool, context_header: str | None) -> SseKms:
        try:
            context = decode_context(context_header)
        except ValueError:
            raise errors.InvalidArgument(
                "The header 'x-amz-server-side-encryption-context' shall be Base64-encoded UTF-8 string "
                "holding JSON which represents a string-string map",
                ArgumentName=KMS_CONTEXT,
            ) from None
        if context and any(k.startswith("aws:") for k in context):
            raise errors.InvalidArgument("Encryption context keys cannot start with 'aws:'", ArgumentName=KMS_CONTEXT)
        return SseKms(
            self.kms, self.caller, key_id or None, context, context_header if context else None,
            bucket_key, self.bucket_keys, self.rand,
        )

    def reject_sse_header(self) -> None:
        """UploadPart, UploadPartCopy, GET and HEAD take no x-amz-server-side-encryption headers."""
        for header in (SSE, KMS_KEY_ID, KMS_CONTEXT):
            if header in self.headers:
                raise errors.InvalidArgument(f"{header} header is not supported for this operation.", ArgumentName=header)

    # SSE-C keys ------------------------------------------------------------------------------
    def customer_key(self, prefix: str = SSEC_PREFIX) -> CustomerKey | None:
        key = parse_customer_key(self.headers, prefix)
        if key is not None and not self.secure:
            allowed = self.ssec_over_http == "always" or (self.ssec_over_http == "loopback" and self.loopback)
            if not allowed:
                raise errors.InvalidRequest(
                    "Requests specifying Server Side Encryption with Customer provided keys "
                    "must be made over a secure connection."
                )
        return key

    # reads -------------------------------------------------------------------------------------
    def for_stored(self, fields: Mapping[str, str], *, copy_source: bool = False) -> EncryptionMode:
        """The mode that recovers a stored object's key (GET, HEAD, copy source, part writes)."""
        customer = self.customer_key(COPY_SOURCE_SSEC if copy_source else SSEC_PREFIX)
        stored = fields.get(KEY_MODE)
        if stored == "SSE-C":
            if customer is None:
                raise errors.InvalidRequest(MISSING_SSEC)
            return SseC(customer, rand=self.rand)
        if customer is not None:
            raise errors.InvalidRequest(NOT_APPLICABLE)
        if stored == "aws:kms":
            return SseKms(self.kms, self.caller, bucket_keys=self.bucket_keys, rand=self.rand)
        return SseS3(self.kms, self.request_id)

    def for_complete(self, fields: Mapping[str, str]) -> EncryptionMode | None:
        """CompleteMultipartUpload may carry the SSE-C key (newer SDKs) or not (older ones): when it
        does, it must be the upload's; either way the upload completes without it."""
        customer = self.customer_key()
        if customer is None:
            return None
        if fields.get(KEY_MODE) != "SSE-C":
            raise errors.InvalidRequest(NOT_APPLICABLE)
        return SseC(customer, rand=self.rand, mismatch=errors.InvalidRequest,
                    mismatch_message="The provided encryption parameters did not match the ones used originally.")

    def for_upload(self, fields: Mapping[str, str]) -> EncryptionMode:
        """UploadPart/UploadPartCopy/Complete: the upload's own mode, SSE-C key required to match."""
        customer = self.customer_key()
        stored = fields.get(KEY_MODE)
        message = (
            "The multipart upload initiate requested encryption. "
            "Subsequent part requests must include the appropriate encryption parameters."
        )
        if stored == "SSE-C":
            if customer is None:
                raise errors.InvalidRequest(message)
            return SseC(customer, rand=self.rand, mismatch=errors.InvalidRequest,
                        mismatch_message="The provided encryption parameters did not match the ones used originally.")
        if customer is not None:
            raise errors.InvalidRequest(message)
        return self.for_stored(fields)
