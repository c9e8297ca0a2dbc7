"""Objects and records exactly as at-rest format version 1 stored them (docs/FORMAT.md §19.1; the
writer of commit 5b3d770), written straight into the backend with the running proxy's own key
service: what a data set from before format 2 looks like to a format-2 proxy.

Version 1: `s3proxy-v` 1, the envelope MAC over v, cs, size, parts; the SSE-S3 ETag (the MD5 of
the plaintext) in clear in `s3proxy-etag`, or nowhere when it was never recorded; no metadata MAC,
no trailer; multipart part lists and bucket defaults as bare JSON records."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
from collections.abc import AsyncIterator
from typing import Any

from s3proxy.format import envelope as fmt
from s3proxy.format.chunks import DEFAULT_CHUNK_SIZE
from s3proxy.format.trailer import seal_checksums
from s3proxy.kms.caller import Caller
from s3proxy.modes.base import ObjectRef
from s3proxy.modes.kms_modes import SseKms, SseS3
from s3proxy.modes.sse_c import CustomerKey, SseC
from s3proxy.streams import encrypt_stream

from .conftest import ACCESS_KEY
from .v2_helpers import INTERNAL_BUCKET, Rig

ALICE = Caller(ACCESS_KEY, "alice", "000000000000")


def customer(key: bytes) -> CustomerKey:
    return CustomerKey(key, base64.b64encode(hashlib.md5(key).digest()).decode())


def _mode(rig: Rig, mode: str, *, kms_key: str | None = None, sse_c_key: bytes | None = None) -> Any:
    kms = rig.thread.proxy.kms
    if mode == "sse-s3":
        return SseS3(kms)
    if mode == "sse-kms":
        return SseKms(kms, ALICE, kms_key)
    assert sse_c_key is not None
    return SseC(customer(sse_c_key))


async def _one(data: bytes) -> AsyncIterator[bytes]:
    yield data


def _encrypt(data: bytes, key: bytes, part_number: int = 0) -> bytes:
    async def run() -> bytes:
        return b"".join([bytes(p) async for p in encrypt_stream(_one(data), key, part_number=part_number)])
    return asyncio.run(run())


def _user(metadata: dict[str, str] | None) -> dict[str, str]:
    return {("s3proxy-user-" + k[len("s3proxy-"):] if k.startswith("s3proxy-") else k): v for k, v in (metadata or {}).items()}


def put_v1(rig: Rig, bucket: str, key: str, data: bytes, mode: str, *, kms_key: str | None = None,
           sse_c_key: bytes | None = None, etag_recorded: bool = True, checksums: dict[str, str] | None = None,
           metadata: dict[str, str] | None = None, **headers: str) -> str:
    """A single-part version-1 object; its client ETag."""
    sealed = asyncio.run(_mode(rig, mode, kms_key=kms_key, sse_c_key=sse_c_key).seal(ObjectRef(bucket, key)))
    k = sealed.data_key
    fields = {**sealed.fields, **fmt.seal_envelope(fmt.Envelope.single(len(data), DEFAULT_CHUNK_SIZE, version=fmt.VERSION_1), k)}
    etag = hashlib.md5(data).hexdigest() if mode == "sse-s3" else os.urandom(16).hex()
    if mode != "sse-s3" or etag_recorded:
        fields[fmt.KEY_ETAG] = etag
    if checksums:
        fields[fmt.KEY_CHECKSUMS] = seal_checksums(k, checksums)
    put = rig.backend().put_object(
        Bucket=bucket, Key=key, Body=_encrypt(data, k), Metadata={**_user(metadata), **fields}, **headers
    )
    return etag if fmt.KEY_ETAG in fields else put["ETag"].strip('"')


def put_v1_multipart(rig: Rig, bucket: str, key: str, parts: list[bytes], mode: str, *, kms_key: str | None = None,
                     sse_c_key: bytes | None = None) -> str:
    """A completed version-1 multipart object: its part list in a bare JSON record; its client ETag."""
    backend = rig.backend()
    sealed = asyncio.run(_mode(rig, mode, kms_key=kms_key, sse_c_key=sse_c_key).seal(ObjectRef(bucket, key)))
    k, mpu = sealed.data_key, os.urandom(16).hex()
    fields = {**sealed.fields, fmt.KEY_VERSION: "1", fmt.KEY_CHUNK_SIZE: str(DEFAULT_CHUNK_SIZE), fmt.KEY_MPU: mpu}
    up = backend.create_multipart_upload(Bucket=bucket, Key=key, Metadata=fields)["UploadId"]
    done = [{"PartNumber": n, "ETag": backend.upload_part(Bucket=bucket, Key=key, UploadId=up, PartNumber=n,
                                                          Body=_encrypt(p, k, n))["ETag"]} for n, p in enumerate(parts, 1)]
    backend.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=up, MultipartUpload={"Parts": done})
    env = fmt.seal_envelope(fmt.Envelope.multipart([(n, len(p)) for n, p in enumerate(parts, 1)], DEFAULT_CHUNK_SIZE,
                                                   version=fmt.VERSION_1), k)
    etag = hashlib.md5(b"".join(hashlib.md5(p).digest() for p in parts)).hexdigest() + f"-{len(parts)}"
    record = {"size": env[fmt.KEY_SIZE], "parts": env[fmt.KEY_PARTS], "mac": env[fmt.KEY_MAC], "etag": etag}
    _internal_bucket(rig)
    backend.put_object(Bucket=INTERNAL_BUCKET, Key=f"parts/{mpu}", Body=json.dumps(record).encode())
    return etag


def put_v1_bucket_default(rig: Rig, bucket: str, algorithm: str, kms_key: str | None = None) -> None:
    value = {"algorithm": algorithm, "kms_key_id": kms_key, "bucket_key": False, "blocked": []}
    _internal_bucket(rig)
    rig.backend().put_object(Bucket=INTERNAL_BUCKET, Key=f"bucket-encryption/{bucket}", Body=json.dumps(value).encode())


def _internal_bucket(rig: Rig) -> None:
    try:
        rig.backend().create_bucket(Bucket=INTERNAL_BUCKET)
    except rig.backend().exceptions.ClientError:
        pass  # there already
