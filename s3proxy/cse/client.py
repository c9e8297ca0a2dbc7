"""The client-side encryption client: put, get, head, list and rewrap S3EC objects through any S3 endpoint.

Flow of a put: keyring.generate (data key + wrapped key) -> content.start_encryption -> the body is
read part by part and each part encrypted as it is read -> one PutObject (small) or a multipart upload
(parts sent in order: GCM is one stream) -> the envelope goes in metadata or an instruction file.
A get reads the envelope, unwraps the key, and streams the body through the decryptor into a writable;
the writable has only *unverified* plaintext until `get_object` returns (see docs/CSE.md).
"""

from __future__ import annotations

import io
import json
import os
import stat
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from typing import IO, Any

from botocore.exceptions import ClientError

from s3proxy.cse.content import (
    TAG_BYTES,
    cek_alg_for,
    gcm_keystream_decryptor,
    start_decryption,
    start_encryption,
)
from s3proxy.cse.envelope import (
    CEK_CBC,
    INSTRUCTION_MARKER,
    LOCATION_INSTRUCTION_FILE,
    LOCATION_METADATA,
    WRAP_KMS_CONTEXT,
    Envelope,
    has_envelope,
    parse_envelope,
    parse_instruction_file,
    split_envelope,
    strip_envelope,
)
from s3proxy.cse.errors import CseError, DecryptionFailed, EnvelopeError, InstructionFileMissing
from s3proxy.cse.keyrings import Keyring, WrappedKey

MIB = 1024 * 1024
MIN_PART = 5 * MIB  # S3's minimum size of every part but the last
DEFAULT_PART = 8 * MIB
DEFAULT_READ = 1 * MIB
DEFAULT_SUFFIX = ".instruction"
_NOT_FOUND = frozenset({"NoSuchKey", "404", "NotFound"})


@dataclass(frozen=True)
class PutResult:
    bucket: str
    key: str
    etag: str
    format_version: int
    wrap_alg: str
    plaintext_length: int
    ciphertext_length: int
    parts: int  # 0 for a single PutObject


@dataclass(frozen=True)
class GetResult:
    bucket: str
    key: str
    format_version: int
    wrap_alg: str
    cek_alg: str
    plaintext_length: int
    authenticated: bool  # False only for v1 (CBC) bodies and unauthenticated ranged reads


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int  # stored (ciphertext) size
    plaintext_length: int | None
    format_version: int | None  # None: not an S3EC object (or its envelope is unreadable)
    wrap_alg: str
    envelope_location: str


@dataclass(frozen=True)
class RewrapResult:
    bucket: str
    key: str
    old_wrap_alg: str
    new_wrap_alg: str
    envelope_location: str


def _read_full(body: IO[bytes], size: int) -> bytes | bytearray:
    """Read exactly `size` bytes unless the stream ends first (pipes return short reads), into one buffer."""
    buf = bytearray(size)
    view = memoryview(buf)
    got = 0
    readinto = getattr(body, "readinto", None)
    while got < size:
        if readinto is not None:
            n = readinto(view[got:])
        else:
            piece = body.read(size - got)
            n = len(piece)
            view[got:got + n] = piece
        if not n:
            break
        got += n
    view.release()
    if got < size:
        del buf[got:]
    return buf


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _remaining_size(body: IO[bytes]) -> int | None:
    """Bytes left in `body` if it is a regular file, else None (pipes, sockets, in-memory streams)."""
    try:
        st = os.fstat(body.fileno())
        return st.st_size - body.tell() if stat.S_ISREG(st.st_mode) else None
    except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
        return None


class CseClient:
    """Encrypts before PutObject and decrypts after GetObject, with caller-supplied boto3 clients."""

    def __init__(self, s3: Any, keyring: Keyring | None, *, format_version: int = 3,
                 envelope_location: str = LOCATION_METADATA, instruction_suffix: str = DEFAULT_SUFFIX,
                 part_size: int = DEFAULT_PART, read_size: int = DEFAULT_READ,
                 allow_unauthenticated_ranges: bool = False, rand: Callable[[int], bytes] = os.urandom) -> None:
        if format_version not in (2, 3):
            raise CseError("format_version is 2 or 3 (v1 is read-only)")
        if envelope_location not in (LOCATION_METADATA, LOCATION_INSTRUCTION_FILE):
            raise CseError(f"envelope_location is {LOCATION_METADATA!r} or {LOCATION_INSTRUCTION_FILE!r}")
        if part_size < MIN_PART:
            raise CseError(f"part_size must be at least {MIN_PART} bytes (S3's minimum part size)")
        self.s3 = s3
        self.keyring = keyring
        self.format_version = format_version
        self.envelope_location = envelope_location
        self.instruction_suffix = instruction_suffix
        self.part_size = part_size
        self.read_size = read_size
        self.allow_unauthenticated_ranges = allow_unauthenticated_ranges
        self._rand = rand

    def _keys(self) -> Keyring:
        if self.keyring is None:
            raise CseError("this operation needs a keyring (a KMS key id, an AES key or an RSA key)")
        return self.keyring

    # ---------------------------------------------------------------- PutObject
    def put_object(self, bucket: str, key: str, body: IO[bytes] | bytes, *,
                   context: Mapping[str, str] | None = None, metadata: Mapping[str, str] | None = None,
                   content_type: str | None = None, size: int | None = None) -> PutResult:
        """Encrypt `body` as it is read and store it; parts of `part_size` go up as a multipart upload."""
        if isinstance(body, (bytes, bytearray, memoryview)):
            size = len(body)
            body = io.BytesIO(bytes(body))
        ctx = dict(context or {})
        cek_alg = cek_alg_for(self.format_version)
        data_key, wrapped = self._keys().generate(cek_alg, ctx)
        encryptor, params = start_encryption(self.format_version, data_key, self._rand)
        first = _read_full(body, self.part_size)
        second = _read_full(body, self.part_size) if len(first) == self.part_size else bytearray()
        if not second:
            size = len(first)
        elif size is None:
            size = _remaining_size(body)
            size = None if size is None else size + len(first) + len(second)
        env = self._new_envelope(wrapped, params, size)
        object_meta, instruction = split_envelope(env, self.envelope_location)
        extra: dict[str, Any] = {"Metadata": {**dict(metadata or {}), **object_meta}}
        if content_type:
            extra["ContentType"] = content_type
        if instruction is not None:
            self._put_instruction_file(bucket, key, instruction)
        if not second:
            data = encryptor.update(bytes(first)) + encryptor.finalize()
            resp = self.s3.put_object(Bucket=bucket, Key=key, Body=data, **extra)
            return PutResult(bucket, key, resp.get("ETag", ""), env.version, env.wrap_alg, len(first), len(data), 0)
        read_ahead = [first, second]
        del first, second  # the multipart loop owns (and frees) these buffers from here on
        return self._put_multipart(bucket, key, body, encryptor, read_ahead, env, extra)

    def _new_envelope(self, wrapped: WrappedKey, params: Any, size: int | None) -> Envelope:
        kms_v3 = self.format_version == 3 and wrapped.wrap_alg == WRAP_KMS_CONTEXT
        return Envelope(
            version=self.format_version, cek_alg=cek_alg_for(self.format_version), wrap_alg=wrapped.wrap_alg,
            wrapped_key=wrapped.wrapped, iv=params.iv,
            matdesc={} if kms_v3 else dict(wrapped.stored_context),
            kms_context=dict(wrapped.stored_context) if kms_v3 else {},
            message_id=params.message_id, commitment=params.commitment, plaintext_length=size,
        )

    def _put_multipart(self, bucket: str, key: str, body: IO[bytes], encryptor: Any,
                       read_ahead: list[bytes | bytearray], env: Envelope, extra: dict[str, Any]) -> PutResult:
        upload_id = self.s3.create_multipart_upload(Bucket=bucket, Key=key, **extra)["UploadId"]
        parts: list[dict[str, Any]] = []
        plain_total = cipher_total = 0
        try:
            # At most two plaintext parts (this one and the next, read ahead to spot the last) and one
            # ciphertext part are alive at a time.
            current, following = read_ahead.pop(0), read_ahead.pop(0)
            while current:
                data = encryptor.update(current)
                plain_total += len(current)
                if not following:
                    data += encryptor.finalize()
                cipher_total += len(data)
                resp = self.s3.upload_part(Bucket=bucket, Key=key, UploadId=upload_id,
                                           PartNumber=len(parts) + 1, Body=data)
                parts.append({"PartNumber": len(parts) + 1, "ETag": resp["ETag"]})
                del data
                more = len(following) == self.part_size
                current = following
                following = _read_full(body, self.part_size) if more else b""
            done = self.s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id,
                                                     MultipartUpload={"Parts": parts})
        except BaseException:
            self.s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
            raise
        return PutResult(bucket, key, done.get("ETag", ""), env.version, env.wrap_alg, plain_total,
                         cipher_total, len(parts))

    def _put_instruction_file(self, bucket: str, key: str, fields: Mapping[str, str]) -> None:
        self.s3.put_object(Bucket=bucket, Key=key + self.instruction_suffix,
                           Body=json.dumps(dict(fields), separators=(",", ":")).encode("ascii"),
                           Metadata={INSTRUCTION_MARKER: ""})

    # ---------------------------------------------------------------- envelope lookup
    def _load_envelope(self, bucket: str, key: str, meta: Mapping[str, str]) -> Envelope:
        if has_envelope(meta):
            return parse_envelope(meta)
        try:
            resp = self.s3.get_object(Bucket=bucket, Key=key + self.instruction_suffix)
        except ClientError as exc:
            if _error_code(exc) in _NOT_FOUND:
                raise InstructionFileMissing(
                    f"s3://{bucket}/{key} has no envelope in its metadata and no instruction file "
                    f"{key + self.instruction_suffix!r}") from None
            raise
        with resp["Body"] as stream:
            raw = stream.read(64 * 1024 + 1)
        if len(raw) > 64 * 1024:
            raise EnvelopeError("instruction file is too large")
        return parse_envelope(meta, parse_instruction_file(raw))

    def head_object(self, bucket: str, key: str) -> ObjectInfo:
        """Describe one object: format, wrapping, sizes (reads the instruction file if needed, never the data)."""
        resp = self.s3.head_object(Bucket=bucket, Key=key)
        return self._describe(bucket, key, resp["ContentLength"], resp.get("Metadata", {}))

    def _describe(self, bucket: str, key: str, size: int, meta: Mapping[str, str]) -> ObjectInfo:
        try:
            env = self._load_envelope(bucket, key, meta)
        except (EnvelopeError, DecryptionFailed):
            return ObjectInfo(key, size, None, None, "", "")
        plain = env.plaintext_length
        if plain is None and env.cek_alg != CEK_CBC:
            plain = max(size - TAG_BYTES, 0)
        where = LOCATION_INSTRUCTION_FILE if env.in_instruction_file else LOCATION_METADATA
        return ObjectInfo(key, size, plain, env.version, env.wrap_alg, where)

    def list_objects(self, bucket: str, prefix: str = "") -> Iterator[ObjectInfo]:
        """Every object under `prefix` except instruction files, each described by `head_object`."""
        pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        for page in pages:
            for item in page.get("Contents", []):
                if item["Key"].endswith(self.instruction_suffix):
                    continue
                yield self.head_object(bucket, item["Key"])

    # ---------------------------------------------------------------- GetObject
    def get_object(self, bucket: str, key: str, out: IO[bytes], *,
                   context: Mapping[str, str] | None = None) -> GetResult:
        """Decrypt the object into `out`; returns only after the tag verified (else raises DecryptionFailed).

        `out` receives plaintext before the tag is checked: on an exception, discard what it holds.
        """
        resp = self.s3.get_object(Bucket=bucket, Key=key)
        with resp["Body"] as stream:
            env = self._load_envelope(bucket, key, resp.get("Metadata", {}))
            decryptor = start_decryption(env, self._keys().unwrap(env, dict(context or {})))
            total = int(resp["ContentLength"])
            if total < decryptor.tail_bytes:
                raise DecryptionFailed()
            remaining = total - decryptor.tail_bytes
            written = 0
            while remaining > 0:
                piece = stream.read(min(self.read_size, remaining))
                if not piece:
                    raise DecryptionFailed("decryption failed: the object body ended early")
                remaining -= len(piece)
                plain = decryptor.update(piece)
                written += len(plain)
                out.write(plain)
            tail = _read_full(stream, decryptor.tail_bytes)
            if len(tail) != decryptor.tail_bytes or stream.read(1):
                raise DecryptionFailed()
            last = decryptor.finalize(tail)
            out.write(last)
        return GetResult(bucket, key, env.version, env.wrap_alg, env.cek_alg, written + len(last),
                         authenticated=decryptor.tail_bytes > 0)

    def get_bytes(self, bucket: str, key: str, *, context: Mapping[str, str] | None = None) -> bytes:
        """The whole plaintext in memory (for small objects)."""
        buf = io.BytesIO()
        self.get_object(bucket, key, buf, context=context)
        return buf.getvalue()

    def get_object_range(self, bucket: str, key: str, first: int, last: int, out: IO[bytes], *,
                         context: Mapping[str, str] | None = None) -> GetResult:
        """UNAUTHENTICATED ranged read of plaintext bytes first..last (inclusive) of a GCM object.

        Decrypts with AES-CTR over GCM's keystream, so a tampered range is not detected. Off unless
        the client was built with allow_unauthenticated_ranges=True (as Java's legacy mode).
        """
        if not self.allow_unauthenticated_ranges:
            raise CseError("ranged reads are unauthenticated; enable allow_unauthenticated_ranges to use them")
        head = self.s3.head_object(Bucket=bucket, Key=key)
        env = self._load_envelope(bucket, key, head.get("Metadata", {}))
        body_len = int(head["ContentLength"]) - TAG_BYTES
        if first < 0 or last < first or first >= body_len:
            raise CseError(f"range {first}-{last} is outside the object's {max(body_len, 0)} bytes")
        last = min(last, body_len - 1)
        decrypt = gcm_keystream_decryptor(env, self._keys().unwrap(env, dict(context or {})), first // 16)
        start = first - first % 16
        resp = self.s3.get_object(Bucket=bucket, Key=key, Range=f"bytes={start}-{last}")
        skip = first - start
        written = 0
        with resp["Body"] as stream:
            for piece in iter(lambda: stream.read(self.read_size), b""):
                plain = decrypt(piece)[skip:]
                skip = max(0, skip - len(piece))
                written += len(plain)
                out.write(plain)
        if written != last - first + 1:
            raise CseError("the ranged read returned fewer bytes than asked for")
        return GetResult(bucket, key, env.version, env.wrap_alg, env.cek_alg, written, authenticated=False)

    # ---------------------------------------------------------------- rewrap
    def rewrap(self, bucket: str, key: str, new_keyring: Keyring, *, context: Mapping[str, str] | None = None,
               new_context: Mapping[str, str] | None = None) -> RewrapResult:
        """Re-wrap the object's data key under `new_keyring` without reading its data.

        An envelope in an instruction file is replaced by a new instruction file; one in metadata by a
        server-side CopyObject onto itself with replaced metadata (S3 limits that to 5 GiB objects).
        """
        head = self.s3.head_object(Bucket=bucket, Key=key)
        meta = head.get("Metadata", {})
        env = self._load_envelope(bucket, key, meta)
        if env.version == 1:
            raise CseError("v1 objects are read-only; copy them to a new object to re-encrypt")
        data_key = self._keys().unwrap(env, dict(context or {}))
        wrapped = new_keyring.wrap(data_key, env.cek_alg, dict(new_context or {}))
        kms_v3 = env.version == 3 and wrapped.wrap_alg == WRAP_KMS_CONTEXT
        new_env = replace(env, wrapped_key=wrapped.wrapped, wrap_alg=wrapped.wrap_alg,
                          matdesc={} if kms_v3 else dict(wrapped.stored_context),
                          kms_context=dict(wrapped.stored_context) if kms_v3 else {})
        if env.in_instruction_file:
            object_meta, instruction = split_envelope(new_env, LOCATION_INSTRUCTION_FILE)
            assert instruction is not None
            self._put_instruction_file(bucket, key, instruction)
            where = LOCATION_INSTRUCTION_FILE
        else:
            object_meta, _ = split_envelope(new_env, LOCATION_METADATA)
            copy: dict[str, Any] = {"Metadata": {**strip_envelope(meta), **object_meta}, "MetadataDirective": "REPLACE"}
            if head.get("ContentType"):
                copy["ContentType"] = head["ContentType"]
            self.s3.copy_object(Bucket=bucket, Key=key, CopySource={"Bucket": bucket, "Key": key}, **copy)
            where = LOCATION_METADATA
        return RewrapResult(bucket, key, env.wrap_alg, wrapped.wrap_alg, where)


__all__ = ["CseClient", "GetResult", "ObjectInfo", "PutResult", "RewrapResult"]
