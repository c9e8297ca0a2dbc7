"""What the format-2 tests share: a proxy in front of a real moto server, fresh proxies on the same
data dir (the same keystore, hence the same integrity key, and no caches), and the backend's own
view of an object: its bytes, its user metadata and its content headers, to edit and put back."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from .conftest import Endpoint, start_peer, start_proxy
from .sse_helpers import CustomerKey

INTERNAL_BUCKET = "s3proxy-internal"
# each mode: (its PUT arguments, its read arguments); an SSE-C key as a copy source's
SSE_C = CustomerKey.new()
MODES = {
    "sse-s3": ({"ServerSideEncryption": "AES256"}, {}),
    "sse-kms": ({"ServerSideEncryption": "aws:kms"}, {}),
    "sse-c": (SSE_C.args(), SSE_C.args()),
}
COPY_SOURCE_KEY = {k.replace("SSECustomer", "CopySourceSSECustomer"): v for k, v in SSE_C.args().items()}

# boto3's parameter for each content header the metadata MAC binds, and the name S3 answers it under
CONTENT = {"ContentType": "content-type", "ContentEncoding": "content-encoding", "ContentDisposition": "content-disposition",
           "ContentLanguage": "content-language", "CacheControl": "cache-control", "Expires": "expires"}


@dataclass
class Rig:
    """A proxy on moto, and how to start more on the same data dir."""

    moto_url: str
    data_dir: Path
    thread: Any
    endpoint: Endpoint

    def client(self, service: str = "s3") -> Any:
        return once(self.endpoint, service)

    def backend(self) -> Any:
        return self.endpoint.backend_client()

    @contextlib.contextmanager
    def fresh(self, **settings: str) -> Iterator[Endpoint]:
        """Another proxy on the same backend and keystore that has cached nothing yet."""
        thread, endpoint = start_peer(self.data_dir, "s3", self.moto_url, **settings)
        try:
            yield endpoint
        finally:
            thread.stop()


def once(endpoint: Endpoint, service: str = "s3") -> Any:
    """A client of `endpoint` that never retries (a refused read is answered at once, no back-off)."""
    import boto3
    from botocore.config import Config

    return boto3.client(service, endpoint_url=endpoint.url, region_name="us-east-1", aws_access_key_id=endpoint.access_key,
                        aws_secret_access_key=endpoint.secret_key,
                        config=Config(s3={"addressing_style": "path"}, retries={"total_max_attempts": 1, "mode": "standard"}))


def make_rig(tmp_path_factory: Any, moto_server: str, name: str) -> Iterator[Rig]:
    data_dir = tmp_path_factory.mktemp(name)
    thread, endpoint = start_proxy(data_dir, "s3", moto_server)
    try:
        yield Rig(moto_server, data_dir, thread, endpoint)
    finally:
        thread.stop()


def new_bucket(s3: Any, prefix: str = "v2") -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:16]}"
    s3.create_bucket(Bucket=name)
    return name


@dataclass
class Raw:
    """An object as the backend holds it."""

    body: bytes
    metadata: dict[str, str]
    headers: dict[str, str] = field(default_factory=dict)  # boto3 parameter name -> value as the backend serves it

    def edited(self, *, metadata: dict[str, str | None] | None = None, headers: dict[str, str | None] | None = None,
               body: bytes | None = None) -> Raw:
        """A copy with metadata keys / headers set (None: removed) and maybe another body."""
        return replace(self, metadata=_changed(self.metadata, metadata), headers=_changed(self.headers, headers),
                       body=self.body if body is None else body)


def _changed(values: dict[str, str], changes: dict[str, str | None] | None) -> dict[str, str]:
    out = {k: v for k, v in values.items() if (changes or {}).get(k, v) is not None}
    out.update({k: v for k, v in (changes or {}).items() if v is not None})
    return out


def fetch(backend: Any, bucket: str, key: str) -> Raw:
    got = backend.get_object(Bucket=bucket, Key=key)
    served = got["ResponseMetadata"]["HTTPHeaders"]
    headers = {param: served[name] for param, name in CONTENT.items() if name in served}
    return Raw(got["Body"].read(), dict(got["Metadata"]), headers)


def store(backend: Any, bucket: str, key: str, raw: Raw) -> None:
    """Write `raw` straight into the backend, as someone holding its credentials can."""
    headers = dict(raw.headers)
    expires = headers.pop("Expires", None)

    def add_expires(request: Any, **_: Any) -> None:  # as the raw string: boto3 would reformat a date
        if expires is not None:
            request.headers["Expires"] = expires

    backend.meta.events.register("before-sign.s3.PutObject", add_expires)
    try:
        backend.put_object(Bucket=bucket, Key=key, Body=raw.body, Metadata=raw.metadata, **headers)
    finally:
        backend.meta.events.unregister("before-sign.s3.PutObject", add_expires)


def rewrite(backend: Any, bucket: str, key: str, change: Callable[[Raw], Raw]) -> None:
    store(backend, bucket, key, change(fetch(backend, bucket, key)))


def put_with_trailer(url: str, bucket: str, key: str, data: bytes, headers: dict[str, str] | None = None) -> None:
    """A PUT whose CRC32 comes after the body in an aws-chunked trailer, as boto3 sends over HTTPS
    (STREAMING-UNSIGNED-PAYLOAD-TRAILER): its value is known only once the body was read."""
    import base64
    import zlib

    from tests.auth.helpers import unsigned_chunks
    from tests.hardening.harness import raw_request, sigv4_headers

    crc = base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()
    body = unsigned_chunks([data[i:i + 65536] for i in range(0, len(data), 65536)] or [b""], [("x-amz-checksum-crc32", crc)])
    signed = sigv4_headers("PUT", f"{url}/{bucket}/{key}", payload_hash="STREAMING-UNSIGNED-PAYLOAD-TRAILER", headers={
        "content-encoding": "aws-chunked", "x-amz-trailer": "x-amz-checksum-crc32",
        "x-amz-decoded-content-length": str(len(data)), **(headers or {})})
    status, _, answer = raw_request(url, "PUT", f"/{bucket}/{key}", headers=signed, body=body)
    assert status == 200, answer


def refused(fn: Callable[[], Any]) -> None:
    """fn() must fail with the one integrity answer (FORMAT.md §17): 500 InternalError (HEAD: 500, no body)."""
    with pytest.raises(ClientError) as caught:
        result = fn()
        body = result.get("Body") if isinstance(result, dict) else None
        if body is not None:
            body.read()
    error = caught.value.response
    status = error["ResponseMetadata"]["HTTPStatusCode"]
    code = error.get("Error", {}).get("Code")
    assert status == 500 and code in ("InternalError", "500"), (status, code, error.get("Error"))
    if code == "InternalError":
        assert error["Error"]["Message"] == "The stored object failed its integrity check and was not returned."
