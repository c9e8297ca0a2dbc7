"""SSE-S3 and SSE-KMS: data keys generated and wrapped by the KMS core, bound to the object's ARN.

Both bind the wrapped key (not the data) to `arn:aws:s3:::bucket/key` through the KMS encryption
context, so a stored object moved under another name fails to unwrap, while a server-side copy
or a rewrap only re-wraps 32 bytes. SSE-S3 uses the proxy's own service key; SSE-KMS uses the
caller's key (or the AWS-managed `alias/aws/s3`) as the caller, so key policies apply.
With an S3 Bucket Key, one KMS data key per (requester, bucket, KMS key) is cached for a while;
each object's own random data key is wrapped with AES-256-GCM under a key derived from the bucket
key by HKDF with a random salt, the object ARN as associated data. Wrapping (rather than deriving)
lets an existing object's key move under a bucket key too (UpdateObjectEncryption, rewrap).

Revocation is prompt, unlike AWS's (where a bucket key outlives a DisableKey for its lifetime):
every use of a cached bucket key is authorized by the KMS against the key's policy, grants and
state at that moment, and audited (`DataKeySource.use_bucket_key`: counted, one record per
second); and the KMS tells the cache to drop a key's entries as soon as the key changes
(`BucketKeyCache.forget_key`, subscribed by the composition root). That check is in-memory work,
so it runs on the event loop: no thread hop on the cached path.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ..format.errors import IntegrityError
from ..kms.caller import Caller
from ..kms.datakeys import DataKeySource
from .base import (
    KEY_BUCKET_KEY,
    KEY_CONTEXT,
    KEY_KMS_ID,
    KEY_MODE,
    KEY_WRAPPED,
    ObjectRef,
    Sealed,
    b64decode,
    b64encode,
)

ARN_CONTEXT_KEY = "aws:s3:arn"
DATA_KEY_SIZE = 32
P = ParamSpec("P")
R = TypeVar("R")
_K = TypeVar("_K")
_Stamped = TypeVar("_Stamped", bound=tuple[Any, ...])  # (time stored, ...)


async def _kms(fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
    """KMS calls touch the audit log and maybe SQLite: keep them off the event loop."""
    return await asyncio.to_thread(fn, *args, **kwargs)


async def service_wrap(kms: DataKeySource, ref: ObjectRef, request_id: str | None,
                       secret: bytes | None = None) -> tuple[bytes, bytes]:
    """(secret, its KMS blob): `secret` (or a new data key) wrapped by the proxy's own service key,
    bound to the object's ARN. SSE-S3 data keys and the store's own per-object secrets use it."""
    caller = kms.service_caller(request_id)
    key_id = kms.service_key()
    context = {ARN_CONTEXT_KEY: ref.arn}
    if secret is None:
        made = await _kms(kms.generate_data_key, caller, key_id, context)
        return made.plaintext, made.ciphertext_blob
    return secret, (await _kms(kms.encrypt, caller, key_id, secret, context)).ciphertext_blob


async def service_unwrap(kms: DataKeySource, ref: ObjectRef, request_id: str | None, blob: bytes) -> bytes:
    """The secret `service_wrap` wrapped for the object `ref`; IntegrityError for any other key's blob."""
    opened = await _kms(kms.decrypt_data_key, kms.service_caller(request_id), blob, {ARN_CONTEXT_KEY: ref.arn})
    # the proxy decrypts as itself only what its own service key wrapped: an SSE-KMS object
    # relabelled AES256 at rest must not open without its caller's key policy
    if not kms.is_service_key(opened.key_arn):
        raise IntegrityError()
    return opened.plaintext


@dataclass(frozen=True)
class SseS3:
    """x-amz-server-side-encryption: AES256 — keys managed entirely by the proxy."""

    kms: DataKeySource
    request_id: str | None = None
    name: str = "AES256"

    async def seal(self, ref: ObjectRef, data_key: bytes | None = None) -> Sealed:
        data_key, blob = await service_wrap(self.kms, ref, self.request_id, data_key)
        return Sealed(data_key, {KEY_MODE: self.name, KEY_WRAPPED: b64encode(blob)})

    async def unseal(self, ref: ObjectRef, fields: Mapping[str, str]) -> bytes:
        return await service_unwrap(self.kms, ref, self.request_id, b64decode(fields[KEY_WRAPPED]))

    def response_headers(self, fields: Mapping[str, str], *, on_write: bool) -> dict[str, str]:
        return {"x-amz-server-side-encryption": "AES256"}


class BucketKeyCache:
    """S3 Bucket Keys: a KMS data key per (requester, bucket, KMS key), reused for `ttl` seconds.

    Reads cache unwrapped bucket keys by their wrapped form and the object's stored context header,
    so a burst of GETs costs one Decrypt. Entries remember their KMS key's ARN: `forget_key` drops
    them all when the key changes (disabled, scheduled for deletion, new policy, grant revoked).
    """

    def __init__(self, ttl: float = 300.0, clock: Callable[[], float] = time.monotonic, max_entries: int = 4096) -> None:
        self.ttl = ttl
        self.clock = clock
        self.max_entries = max_entries
        self._lock = threading.Lock()
        self._write: dict[tuple[str, str, str], tuple[float, str, bytes, bytes]] = {}
        self._read: dict[tuple[str, bytes, str | None], tuple[float, str, bytes]] = {}

    def for_write(self, principal: str, bucket: str, key_id: str) -> tuple[str, bytes, bytes] | None:
        """(key ARN, bucket key, blob) cached for the key as the request named it."""
        with self._lock:
            hit = self._write.get((principal, bucket, key_id))
            if hit and self.clock() - hit[0] < self.ttl:
                return hit[1], hit[2], hit[3]
            return None

    def remember_write(self, principal: str, bucket: str, key_id: str, key_arn: str, plaintext: bytes, blob: bytes) -> None:
        with self._lock:
            self._trim(self._write)
            self._write[(principal, bucket, key_id)] = (self.clock(), key_arn, plaintext, blob)

    def for_read(self, principal: str, blob: bytes, context_header: str | None) -> tuple[str, bytes] | None:
        """(key ARN, bucket key) cached for the bucket key's blob, as read with this context header."""
        with self._lock:
            hit = self._read.get((principal, blob, context_header))
            if hit and self.clock() - hit[0] < self.ttl:
                return hit[1], hit[2]
            return None

    def remember_read(self, principal: str, blob: bytes, context_header: str | None, key_arn: str, plaintext: bytes) -> None:
        with self._lock:
            self._trim(self._read)
            self._read[(principal, blob, context_header)] = (self.clock(), key_arn, plaintext)

    def forget_key(self, key_id: str) -> None:
        """Drop every bucket key made under the KMS key `key_id` (the KMS calls this when the key changes:
        its state, policy or grants may now refuse it)."""
        suffix = "/" + key_id
        with self._lock:
            for k in [k for k, v in self._write.items() if v[1].endswith(suffix)]:
                del self._write[k]
            for r in [r for r, v in self._read.items() if v[1].endswith(suffix)]:
                del self._read[r]

    def _trim(self, table: dict[_K, _Stamped]) -> None:
        if len(table) >= self.max_entries:
            now = self.clock()
            for k in [k for k, v in table.items() if now - v[0] >= self.ttl] or list(table)[: len(table) // 2]:
                table.pop(k, None)


def _bucket_kek(bucket_key: bytes, salt: bytes) -> AESGCM:
    return AESGCM(HKDF(hashes.SHA256(), DATA_KEY_SIZE, salt, b"s3proxy bucket-key kek v1").derive(bucket_key))


def wrap_under_bucket_key(bucket_key: bytes, data_key: bytes, ref: ObjectRef, salt: bytes) -> bytes:
    """salt || AES-GCM(KEK(bucket key, salt), nonce 0, data key, aad = object ARN); a fresh salt per
    object makes each KEK single-use, so the fixed nonce is never reused under one key."""
    return salt + _bucket_kek(bucket_key, salt).encrypt(bytes(12), data_key, ref.arn.encode())


def unwrap_under_bucket_key(bucket_key: bytes, blob: bytes, ref: ObjectRef) -> bytes:
    try:
        return _bucket_kek(bucket_key, blob[:32]).decrypt(bytes(12), blob[32:], ref.arn.encode())
    except (InvalidTag, ValueError):
        raise IntegrityError() from None


@dataclass(frozen=True)
class SseKms:
    """x-amz-server-side-encryption: aws:kms — the caller's KMS key, the caller's permissions."""

    kms: DataKeySource
    caller: Caller  # the requester
    key_id: str | None = None  # as requested (id, ARN, alias, alias ARN); None: alias/aws/s3
    user_context: Mapping[str, str] | None = None
    context_header: str | None = None  # the header value as sent, echoed on writes
    bucket_key: bool = False
    bucket_keys: BucketKeyCache | None = None
    rand: Callable[[int], bytes] = os.urandom
    name: str = "aws:kms"

    def _context(self, ref: ObjectRef, *, bucket_level: bool) -> dict[str, str]:
        context = dict(self.user_context or {})
        context[ARN_CONTEXT_KEY] = ref.bucket_arn if bucket_level else ref.arn
        return context

    async def _key_id(self) -> str:
        """The key as requested, or the AWS-managed alias/aws/s3 (created on first use)."""
        if self.key_id is None:
            return await _kms(self.kms.aws_managed_key, self.caller)
        return self.key_id

    async def seal(self, ref: ObjectRef, data_key: bytes | None = None) -> Sealed:
        key_id = await self._key_id()
        fields = {KEY_MODE: self.name}
        if self.context_header:
            fields[KEY_CONTEXT] = self.context_header
        if self.bucket_key and self.bucket_keys is not None:
            key_arn, bucket_key, blob = await self._bucket_key(ref, key_id)
            data_key = data_key if data_key is not None else self.rand(DATA_KEY_SIZE)
            wrapped = wrap_under_bucket_key(bucket_key, data_key, ref, self.rand(32))
            fields.update({KEY_KMS_ID: key_arn, KEY_WRAPPED: b64encode(blob), KEY_BUCKET_KEY: b64encode(wrapped)})
            return Sealed(data_key, fields)
        context = self._context(ref, bucket_level=False)
        if data_key is None:  # one KMS call: GenerateDataKey resolves the key and checks its state itself
            made = await _kms(self.kms.generate_data_key, self.caller, key_id, context)
            data_key, blob, key_arn = made.plaintext, made.ciphertext_blob, made.key_arn
        else:
            done = await _kms(self.kms.encrypt, self.caller, key_id, data_key, context)
            blob, key_arn = done.ciphertext_blob, done.key_arn
        fields.update({KEY_KMS_ID: key_arn, KEY_WRAPPED: b64encode(blob)})
        return Sealed(data_key, fields)

    async def _bucket_key(self, ref: ObjectRef, key_id: str) -> tuple[str, bytes, bytes]:
        """(key ARN, bucket key, its KMS blob) for this requester, bucket and key: one KMS call per ttl."""
        assert self.bucket_keys is not None
        context = self._context(ref, bucket_level=True)
        hit = self.bucket_keys.for_write(self.caller.access_key, ref.bucket, key_id)
        if hit is not None and self.kms.use_bucket_key(self.caller, key_id, hit[0], "GenerateDataKey", context, ref.bucket):
            return hit
        made = await _kms(self.kms.generate_data_key, self.caller, key_id, context)
        self.bucket_keys.remember_write(
            self.caller.access_key, ref.bucket, key_id, made.key_arn, made.plaintext, made.ciphertext_blob
        )
        self.bucket_keys.remember_read(self.caller.access_key, made.ciphertext_blob, self.context_header, made.key_arn,
                                       made.plaintext)
        return made.key_arn, made.plaintext, made.ciphertext_blob

    async def unseal(self, ref: ObjectRef, fields: Mapping[str, str]) -> bytes:
        blob = b64decode(fields[KEY_WRAPPED])
        stored_context = decode_context(fields.get(KEY_CONTEXT)) or {}
        bucket_level = KEY_BUCKET_KEY in fields
        context = {**stored_context, ARN_CONTEXT_KEY: ref.bucket_arn if bucket_level else ref.arn}
        if not bucket_level:
            return (await _kms(self.kms.decrypt_data_key, self.caller, blob, context)).plaintext
        header = fields.get(KEY_CONTEXT)
        cached = self.bucket_keys.for_read(self.caller.access_key, blob, header) if self.bucket_keys else None
        if cached is not None and self.kms.use_bucket_key(self.caller, cached[0], cached[0], "Decrypt", context, ref.bucket):
            bucket_key = cached[1]
        else:
            opened = await _kms(self.kms.decrypt_data_key, self.caller, blob, context)
            bucket_key = opened.plaintext
            if self.bucket_keys is not None:
                self.bucket_keys.remember_read(self.caller.access_key, blob, header, opened.key_arn, bucket_key)
        return unwrap_under_bucket_key(bucket_key, b64decode(fields[KEY_BUCKET_KEY]), ref)

    def response_headers(self, fields: Mapping[str, str], *, on_write: bool) -> dict[str, str]:
        headers = {
            "x-amz-server-side-encryption": "aws:kms",
            "x-amz-server-side-encryption-aws-kms-key-id": fields.get(KEY_KMS_ID, ""),
        }
        if KEY_BUCKET_KEY in fields:
            headers["x-amz-server-side-encryption-bucket-key-enabled"] = "true"
        if on_write and fields.get(KEY_CONTEXT):
            headers["x-amz-server-side-encryption-context"] = fields[KEY_CONTEXT]
        return headers


def decode_context(value: str | None) -> dict[str, str] | None:
    """The SSE-KMS context header: base64 of a UTF-8 JSON object of strings; ValueError otherwise."""
    if not value:
        return None
    try:
        data = json.loads(b64decode(value).decode("utf-8"))
    except Exception:
        raise ValueError("not base64 JSON") from None
    if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in data.items()):
        raise ValueError("not a JSON object of strings")
    return data

