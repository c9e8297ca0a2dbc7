"""The S3 Backend: any S3 endpoint (AWS, MinIO, SeaweedFS, moto) over pooled HTTP/1.1 connections.

Every request is signed by `signer` (SigV4, the signing key kept per day) and sent through
`http1`, which receives straight into large buffers and hands bodies on as views of them (flow
control bounds what is buffered, so memory does not grow with object size). Streamed bodies are
sent as UNSIGNED-PAYLOAD with an explicit Content-Length (never chunked). Small XML bodies are
hashed into the signature and carry Content-MD5. Only requests whose body can be replayed are
retried (connection errors, 500, 503), with capped exponential backoff and full jitter; a
streamed PUT never is. Keys are percent-encoded byte for byte (RFC 3986 unreserved and "/" kept)
and sent unnormalised, so `..`, `a//b`, `%`, `+`, `?`, `#` and unicode reach the server as themselves.

A GetResult's body holds a pooled connection until it is read to the end, closed (`aclose()`) or dropped.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import random
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from yarl import URL

from s3proxy import errors
from s3proxy.backends import common, http1, s3_versions, s3_xml
from s3proxy.backends.base import (
    BucketInfo,
    Capabilities,
    DeleteResult,
    GetResult,
    ListResult,
    ObjectInfo,
    ObjectMeta,
    PartInfo,
    PutResult,
    StoredRange,
    UploadInfo,
    VersionListResult,
    WriteCondition,
)
from s3proxy.backends.listing import common_prefix
from s3proxy.backends.signer import EMPTY_SHA256, UNSIGNED_PAYLOAD, Signer, query_strings, quote_path
from s3proxy.buffers import Body

_RETRY_STATUS = (500, 503)
_WITH_BODY = ("PUT", "POST")  # sent with a Content-Length even when empty (S3 answers 411 without one)
Query = Sequence[tuple[str, str]]
_MAX_CHAR = "\U0010ffff"


@dataclass(slots=True)
class _Call:
    """One S3 request, before signing."""

    method: str
    bucket: str = ""
    key: str | None = None
    query: Query = ()
    headers: Mapping[str, str] | None = None
    body: bytes = b""  # small, replayable
    stream: Body | None = None  # large, sent once
    size: int = 0  # of the stream


class S3Backend:
    """A Backend that is itself an S3 endpoint."""

    capabilities = Capabilities(versioning=True, tagging=True)

    def __init__(self, endpoint_url: str, *, region: str, access_key: str, secret_key: str,
                 addressing: Literal["path", "virtual"] = "path",
                 retries: int = 3, backoff: float = 0.05, max_backoff: float = 2.0,
                 rand: Callable[[], float] = random.random,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep, timeout: float = 60.0,
                 on_retry: Callable[[str, str], None] | None = None,
                 resolve: Callable[[str], Awaitable[str]] | None = None) -> None:
        endpoint = URL(endpoint_url)
        if endpoint.scheme not in ("http", "https") or not endpoint.raw_host or addressing not in ("path", "virtual"):
            raise ValueError("endpoint_url must be an http(s) URL and addressing 'path' or 'virtual'")
        self._endpoint = endpoint
        self._origin: http1.Origin = (endpoint.scheme, endpoint.raw_host, endpoint.port or 0)
        self._base = endpoint.raw_path.rstrip("/")
        self._region = region
        self._signer = Signer(access_key, secret_key, region, "s3")
        self._addressing = addressing
        self._retries = retries
        self._on_retry = on_retry  # (method, reason) for each retry, e.g. a metrics counter
        self._backoff = (backoff, max_backoff)
        self._rand = rand
        self._sleep = sleep
        # a backend that stops answering (or reading) for `timeout` seconds is given up on (503 to the client);
        # `resolve` maps a host name to the address to connect to (tests: virtual-host names to loopback)
        self._pool = http1.Pool(connect_timeout=min(30.0, timeout), read_timeout=timeout, resolve=resolve)

    def __repr__(self) -> str:  # never the secret key
        return f"S3Backend({str(self._endpoint)!r}, region={self._region!r}, addressing={self._addressing!r})"

    async def start(self) -> None:
        """Nothing to do: connections are opened as requests need them."""

    async def close(self) -> None:
        await self._pool.close()

    # buckets

    async def list_buckets(self) -> list[BucketInfo]:
        return s3_xml.buckets(await self._read(_Call("GET")))

    async def create_bucket(self, bucket: str) -> None:
        # us-east-1 answers 200 to re-creating one's own bucket; the contract says BucketAlreadyOwnedByYou
        if await self._exists(bucket):
            raise errors.BucketAlreadyOwnedByYou(BucketName=bucket)
        body = b"" if self._region == "us-east-1" else s3_xml.bucket_document(self._region)
        await self._read(_Call("PUT", bucket, body=body))

    async def delete_bucket(self, bucket: str) -> None:
        await self._read(_Call("DELETE", bucket))

    async def head_bucket(self, bucket: str) -> None:
        await self._read(_Call("HEAD", bucket), missing=errors.NoSuchBucket)

    async def _exists(self, bucket: str) -> bool:
        try:
            await self.head_bucket(bucket)
        except errors.NoSuchBucket:
            return False
        return True

    # objects

    async def put_object(self, bucket: str, key: str, body: Body, size: int, meta: ObjectMeta,
                         condition: WriteCondition | None = None) -> PutResult:
        headers = {**s3_xml.meta_headers(meta), **_conditional(condition)}
        call = _Call("PUT", bucket, key, headers=headers, stream=body, size=size)
        resp = await self._send(call)
        resp.release()
        return PutResult(s3_xml.etag(resp.headers.get("ETag", "")), _written_version(resp))

    async def get_object(self, bucket: str, key: str, range: StoredRange | None = None,
                         version_id: str | None = None) -> GetResult:
        headers = {}
        if range is not None:
            headers["Range"] = f"bytes={'' if range[0] is None else range[0]}-{'' if range[1] is None else range[1]}"
        call = _Call("GET", bucket, key, _version(version_id), headers)
        resp = await self._send(call, missing=errors.NoSuchKey)
        body = common.ClosingBody(_pieces(resp), resp.release)
        try:
            size, got = _size_and_range(resp)
            return GetResult(s3_xml.object_info(key, resp.headers, size), body, got)
        except ValueError as exc:  # a Content-Range or Content-Length that is not a number
            body.release()
            raise errors.InternalError("The storage backend sent a malformed response.") from exc

    async def head_object(self, bucket: str, key: str, version_id: str | None = None) -> ObjectInfo:
        resp = await self._send(_Call("HEAD", bucket, key, _version(version_id)), missing=errors.NoSuchKey)
        resp.release()
        return s3_xml.object_info(key, resp.headers, int(resp.headers.get("Content-Length", "0")))

    async def delete_object(self, bucket: str, key: str, version_id: str | None = None) -> DeleteResult:
        resp = await self._send(_Call("DELETE", bucket, key, _version(version_id)))
        resp.release()
        marker = resp.headers.get("x-amz-delete-marker") == "true"
        return DeleteResult(resp.headers.get("x-amz-version-id"), marker)

    async def copy_object(self, src_bucket: str, src_key: str, dst_bucket: str, dst_key: str, meta: ObjectMeta,
                          src_version_id: str | None = None, condition: WriteCondition | None = None) -> PutResult:
        source = f"/{quote_path(src_bucket)}/{quote_path(src_key)}"
        if src_version_id is not None:
            source += f"?versionId={urllib.parse.quote(src_version_id, safe='~')}"
        headers = {**s3_xml.meta_headers(meta), "x-amz-copy-source": source, "x-amz-metadata-directive": "REPLACE",
                   **_conditional(condition)}
        if meta.tagging is not None:
            headers["x-amz-tagging-directive"] = "REPLACE"
        resp = await self._send(_Call("PUT", dst_bucket, dst_key, headers=headers), missing=errors.NoSuchKey)
        etag = s3_xml.result_etag(await _read_all(resp))
        return PutResult(etag, _written_version(resp))

    async def replace_metadata(self, bucket: str, key: str, meta: ObjectMeta, if_etag: str) -> PutResult:
        """A conditional copy onto itself (S3 has no metadata-only update); tags are kept."""
        headers = {
            **s3_xml.meta_headers(meta),
            "x-amz-copy-source": f"/{quote_path(bucket)}/{quote_path(key)}",
            "x-amz-metadata-directive": "REPLACE",
            "x-amz-copy-source-if-match": f'"{if_etag}"',
        }
        resp = await self._send(_Call("PUT", bucket, key, headers=headers), missing=errors.NoSuchKey)
        etag = s3_xml.result_etag(await _read_all(resp))
        return PutResult(etag, _written_version(resp))

    async def list_objects(self, bucket: str, prefix: str = "", delimiter: str = "", after: str = "",
                           max_keys: int = 1000) -> ListResult:
        # ListObjectsV2 with start-after: moto ignores marker and max-keys for common prefixes in V1.
        # A marker that is itself a common prefix (a continuation after one) must skip that whole
        # prefix; servers differ on that, so ask for keys after its last possible member.
        if after and common_prefix(after, prefix, delimiter) == after:
            after += _MAX_CHAR
        query = [("list-type", "2"), ("encoding-type", "url"), ("max-keys", str(max_keys))]
        query += [(n, v) for n, v in (("prefix", prefix), ("delimiter", delimiter), ("start-after", after)) if v]
        return s3_xml.list_objects(await self._read(_Call("GET", bucket, query=query)))

    # multipart

    async def create_multipart(self, bucket: str, key: str, meta: ObjectMeta) -> str:
        call = _Call("POST", bucket, key, [("uploads", "")], s3_xml.meta_headers(meta))
        return s3_xml.upload_id(await self._read(call))

    async def upload_part(self, bucket: str, key: str, upload_id: str, part_number: int, body: Body,
                          size: int) -> str:
        query = [("partNumber", str(part_number)), ("uploadId", upload_id)]
        resp = await self._send(_Call("PUT", bucket, key, query, stream=body, size=size), missing=errors.NoSuchUpload)
        resp.release()
        return s3_xml.etag(resp.headers.get("ETag", ""))

    async def complete_multipart(self, bucket: str, key: str, upload_id: str,
                                 parts: Sequence[tuple[int, str]], condition: WriteCondition | None = None) -> PutResult:
        if not parts:
            raise errors.MalformedXML()
        call = _Call("POST", bucket, key, [("uploadId", upload_id)], _conditional(condition),
                     body=s3_xml.complete_document(parts))
        resp = await self._send(call, missing=errors.NoSuchUpload)
        etag = s3_xml.result_etag(await _read_all(resp))
        return PutResult(etag, _written_version(resp))

    async def abort_multipart(self, bucket: str, key: str, upload_id: str) -> None:
        await self._read(_Call("DELETE", bucket, key, [("uploadId", upload_id)]), missing=errors.NoSuchUpload)

    async def list_parts(self, bucket: str, key: str, upload_id: str) -> list[PartInfo]:
        found: list[PartInfo] = []
        marker: str | None = "0"
        while marker is not None:
            query = [("uploadId", upload_id), ("part-number-marker", marker)]
            page, marker = s3_xml.parts(await self._read(_Call("GET", bucket, key, query), missing=errors.NoSuchUpload))
            found += page
        return found

    async def list_multipart_uploads(self, bucket: str, prefix: str = "") -> list[UploadInfo]:
        found: list[UploadInfo] = []
        markers: tuple[str, str] | None = ("", "")
        while markers is not None:
            query = [("uploads", ""), ("encoding-type", "url"), ("prefix", prefix)]
            query += [(n, v) for n, v in zip(("key-marker", "upload-id-marker"), markers, strict=True) if v]
            page, markers = s3_xml.uploads(await self._read(_Call("GET", bucket, query=query)))
            found += page
        return found

    # versioning and tagging

    async def get_bucket_versioning(self, bucket: str) -> str | None:
        return s3_xml.versioning(await self._read(_Call("GET", bucket, query=[("versioning", "")])))

    async def put_bucket_versioning(self, bucket: str, status: str) -> None:
        common.check_versioning_status(status)
        body = s3_xml.versioning_document(status)
        await self._read(_Call("PUT", bucket, query=[("versioning", "")], body=body))

    async def list_object_versions(self, bucket: str, prefix: str = "", delimiter: str = "", key_marker: str = "",
                                   version_id_marker: str = "", max_keys: int = 1000) -> VersionListResult:
        # markers are positions: s3_versions asks the server only what every server answers alike
        fetch = functools.partial(self._versions_page, bucket)
        return await s3_versions.list_versions(fetch, prefix, delimiter, key_marker, version_id_marker, max_keys)

    async def _versions_page(self, bucket: str, prefix: str, delimiter: str, key_marker: str, version_id_marker: str,
                             max_keys: int) -> VersionListResult:
        query = [("versions", ""), ("encoding-type", "url"), ("max-keys", str(max_keys))]
        named = (("prefix", prefix), ("delimiter", delimiter), ("key-marker", key_marker),
                 ("version-id-marker", version_id_marker))
        query += [(n, v) for n, v in named if v]
        return s3_xml.list_versions(await self._read(_Call("GET", bucket, query=query)))

    async def get_object_tagging(self, bucket: str, key: str, version_id: str | None = None) -> list[tuple[str, str]]:
        call = _Call("GET", bucket, key, [("tagging", ""), *_version(version_id)])
        return s3_xml.tags(await self._read(call, missing=errors.NoSuchKey))

    async def put_object_tagging(self, bucket: str, key: str, tags: Sequence[tuple[str, str]],
                                 version_id: str | None = None) -> None:
        call = _Call("PUT", bucket, key, [("tagging", ""), *_version(version_id)], body=s3_xml.tagging_document(tags))
        await self._read(call, missing=errors.NoSuchKey)

    async def delete_object_tagging(self, bucket: str, key: str, version_id: str | None = None) -> None:
        await self._read(_Call("DELETE", bucket, key, [("tagging", ""), *_version(version_id)]),
                         missing=errors.NoSuchKey)

    # transport

    async def _read(self, call: _Call, missing: type[errors.S3Error] = errors.NoSuchBucket) -> bytes:
        return await _read_all(await self._send(call, missing))

    async def _send(self, call: _Call, missing: type[errors.S3Error] = errors.NoSuchBucket) -> http1.Response:
        """Send `call` (retrying where safe); a response with a 2xx status, its body unread."""
        attempts = 1 if call.stream is not None else self._retries + 1
        for attempt in range(attempts):
            last = attempt == attempts - 1
            try:
                resp = await self._once(call)
            except (TimeoutError, OSError) as exc:
                if isinstance(exc.__cause__, errors.S3Error):  # the streamed body refused itself (a digest, a form)
                    raise exc.__cause__ from None
                if last:
                    raise errors.ServiceUnavailable("The storage backend could not be reached.") from exc
                reason = type(exc).__name__
            else:
                if resp.status < 300:
                    return resp
                body = await _read_all(resp)
                if last or resp.status not in _RETRY_STATUS:
                    raise s3_xml.error_of(resp.status, body, missing)
                reason = str(resp.status)
            if self._on_retry is not None:
                self._on_retry(call.method, reason)
            await self._sleep(self._rand() * min(self._backoff[1], self._backoff[0] * 2**attempt))
        raise AssertionError("unreachable")

    async def _once(self, call: _Call) -> http1.Response:
        """One try: `call` signed and sent (Content-Length where it has a body, Content-MD5 on a small one)."""
        origin, path = self._origin, self._base + "/"
        if call.bucket and self._addressing == "virtual":
            origin = (origin[0], f"{call.bucket}.{origin[1]}", origin[2])
        elif call.bucket:
            path += quote_path(call.bucket)
        if call.key is not None:
            path += ("/" if call.bucket and self._addressing == "path" else "") + quote_path(call.key)
        query, canonical = query_strings(call.query)
        headers = {"host": http1.host_header(*origin), **(call.headers or {})}
        if call.stream is not None:
            headers["content-length"] = str(call.size)
            payload = UNSIGNED_PAYLOAD
        elif call.body:
            headers["content-length"] = str(len(call.body))
            headers["content-md5"] = base64.b64encode(hashlib.md5(call.body, usedforsecurity=False).digest()).decode()
            payload = hashlib.sha256(call.body).hexdigest()
        else:
            if call.method in _WITH_BODY:
                headers["content-length"] = "0"
            payload = EMPTY_SHA256
        signed = self._signer.sign(call.method, path, canonical, headers, payload)
        target = f"{path}?{query}" if query else path
        stream = common.sized(call.stream, call.size) if call.stream is not None else None
        return await self._pool.request(call.method, origin, target, signed, call.body, stream)


async def _pieces(resp: http1.Response) -> AsyncIterator[memoryview]:
    try:
        async for piece in resp:
            yield piece
    except (TimeoutError, OSError) as exc:
        raise errors.InternalError("The storage backend broke off the transfer.") from exc


def _conditional(condition: WriteCondition | None) -> dict[str, str]:
    """A conditional write as S3's own headers (the server decides it with the write)."""
    if condition is None:
        return {}
    if condition.if_match is not None:
        return {"if-match": f'"{condition.if_match}"'}
    return {"if-none-match": "*"} if condition.if_none_match else {}


def _written_version(resp: http1.Response) -> str | None:
    """The version id a write made, None for the null version: S3 sends none for a bucket that never
    had versioning, but moto answers CompleteMultipartUpload with `x-amz-version-id: null` there and
    then refuses `versionId=null`, which clients (rclone) send back when they are given one. The
    null version is the latest once written, so it is addressed without a version id."""
    version = resp.headers.get("x-amz-version-id")
    return None if version in (None, "", common.NULL_VERSION) else version


def _version(version_id: str | None) -> list[tuple[str, str]]:
    return [] if version_id is None else [("versionId", version_id)]


def _size_and_range(resp: http1.Response) -> tuple[int, tuple[int, int] | None]:
    """The object's full size and the range returned, from Content-Range (or Content-Length)."""
    content_range = resp.headers.get("Content-Range", "")
    if resp.status == 206 and content_range.startswith("bytes "):
        span, _, total = content_range[6:].partition("/")
        lo, _, hi = span.partition("-")
        return int(total), (int(lo), int(hi))
    return int(resp.headers.get("Content-Length", "0")), None


async def _read_all(resp: http1.Response) -> bytes:
    try:
        return await resp.read()
    except (TimeoutError, OSError) as exc:
        raise errors.ServiceUnavailable("The storage backend broke off the response.") from exc
    finally:
        resp.release()
