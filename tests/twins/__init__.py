"""In-memory twins of the proxy's parts, shared by the unit tests of the layers above them.

    backend.MemoryBackend    a Backend held in dicts (the Backend contract tests run it too)
    keys.memory_data_keys    the real KeyService over a memory keystore and audit sink

and, built from them here, what the unit tests of tests/{store,ops,http,modes} start from: a
`World` (the object store, multipart uploads, buckets and Services wired as app.Proxy wires them,
over the twins), an AuthContext, a Call as the front door builds one (its body an in-memory
stream), and the hook that runs `async def` tests on a fresh event loop each. Nothing here is a
mock: every part is the production code, only the storage and the key store live in memory.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import inspect
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import pytest
from multidict import CIMultiDict, MultiDict

from s3proxy.auth.context import AuthContext
from s3proxy.auth.credentials import Credential
from s3proxy.internal import InternalRecords
from s3proxy.kms.caller import Caller
from s3proxy.kms.service import KeyService
from s3proxy.modes.kms_modes import BucketKeyCache
from s3proxy.ops.call import Call
from s3proxy.ops.common import Services
from s3proxy.store import Buckets, Catalog, ListingCache, MultipartUploads, ObjectStore
from s3proxy.store.conditions import Enforcement

from .backend import MemoryBackend
from .keys import memory_data_keys

__all__ = [
    "ACCOUNT", "ALICE", "BOB", "BytesStream", "INTERNAL_BUCKET", "MemoryBackend", "REGION", "World",
    "auth_context", "caller_of", "make_call", "memory_data_keys", "pytest_pyfunc_call", "ssec_headers",
]

ACCOUNT = "000000000000"
REGION = "us-east-1"
INTERNAL_BUCKET = "s3proxy-internal-twin"
ALICE = Credential("AKIATWINALICE0000001", "twin-secret-of-alice-0000000001", "alice")
BOB = Credential("AKIATWINBOB000000002", "twin-secret-of-bob-00000000000002", "bob")


SSEC = "x-amz-server-side-encryption-customer-"
CPSRC = "x-amz-copy-source-server-side-encryption-customer-"


def ssec_headers(raw: bytes, prefix: str = SSEC, **replace: str | None) -> dict[str, str]:
    """The three SSE-C headers for the customer key `raw` (or the copy-source three); `replace`
    changes or drops (None) one of them by its suffix: algorithm, key, key_md5."""
    values: dict[str, str | None] = {"algorithm": "AES256", "key": base64.b64encode(raw).decode(),
                                     "key_md5": base64.b64encode(hashlib.md5(raw).digest()).decode()}
    values.update(replace)
    return {prefix + name.replace("_", "-"): value for name, value in values.items() if value is not None}


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    """Run an `async def` test on a fresh event loop (no pytest-asyncio here); import this into a conftest."""
    if not inspect.iscoroutinefunction(pyfuncitem.obj):
        return None
    args = {name: pyfuncitem.funcargs[name] for name in pyfuncitem._fixtureinfo.argnames}
    asyncio.run(pyfuncitem.obj(**args))
    return True


def caller_of(credential: Credential = ALICE, request_id: str | None = "TWINREQUEST00001", *,
              secure: bool = False) -> Caller:
    """The requester as the KMS sees S3 calling on their behalf (what app.Proxy's caller_for builds)."""
    return Caller(access_key=credential.access_key, user_name=credential.user_name, account_id=credential.account,
                  source_ip="127.0.0.1", request_id=request_id, via_service=f"s3.{REGION}.amazonaws.com",
                  secure=secure, region=REGION, identity=credential.policy)


def auth_context(credential: Credential = ALICE, query: Iterable[tuple[str, str]] = (),
                 content_sha256: str = "UNSIGNED-PAYLOAD") -> AuthContext:
    """What a verified SigV4 header signature vouches for; UNSIGNED-PAYLOAD: the body is checked
    against its Content-Length (and Content-MD5 or a checksum, when sent) only."""
    return AuthContext(credential=credential, service="s3", region=REGION, amz_date="20260101T000000Z",
                       scope=f"20260101/{REGION}/s3/aws4_request", content_sha256=content_sha256, presigned=False,
                       signing_key=b"", query=tuple(query))


class BytesStream:
    """A request body already received: the BodyStream the body decoder reads, in `step`-byte pieces."""

    def __init__(self, data: bytes = b"", step: int = 1 << 16) -> None:
        self._data = data
        self._at = 0
        self._step = step

    async def read(self, n: int = -1) -> bytes:
        end = len(self._data) if n < 0 else self._at + min(n, self._step)
        piece, self._at = self._data[self._at:end], min(end, len(self._data))
        return piece

    async def readexactly(self, n: int) -> bytes:
        if self._at + n > len(self._data):
            partial, self._at = self._data[self._at:], len(self._data)
            raise asyncio.IncompleteReadError(partial, n)
        piece, self._at = self._data[self._at:self._at + n], self._at + n
        return piece

    async def readuntil(self, separator: bytes = b"\n", *, max_size: int | None = None) -> bytes:
        end = self._data.find(separator, self._at)
        if end < 0:
            partial, self._at = self._data[self._at:], len(self._data)
            raise asyncio.IncompleteReadError(partial, None)
        piece, self._at = self._data[self._at:end + len(separator)], end + len(separator)
        return piece


def make_call(bucket: str | None, key: str | None = None, *, query: Iterable[tuple[str, str]] | Mapping[str, str] = (),
              headers: Mapping[str, str] | None = None, body: bytes = b"", credential: Credential = ALICE,
              secure: bool = False, loopback: bool = True, request_id: str = "TWINREQUEST00001") -> Call:
    """A Call as the front door builds it after authentication and routing. The body's length is
    sent as Content-Length unless `headers` name one (or say how the body is framed)."""
    pairs = tuple(query.items()) if isinstance(query, Mapping) else tuple(query)
    sent: CIMultiDict[str] = CIMultiDict(headers or {})
    if "content-length" not in sent and "x-amz-decoded-content-length" not in sent:
        sent["Content-Length"] = str(len(body))
    return Call(
        request_id=request_id,
        auth=auth_context(credential, pairs),
        caller=caller_of(credential, request_id, secure=secure),
        bucket=bucket,
        key=key,
        query=MultiDict(pairs),
        headers=sent,
        content=BytesStream(body),
        secure=secure,
        loopback=loopback,
        remote="127.0.0.1" if loopback else "203.0.113.9",
    )


@dataclass
class World:
    """The data path over the twins, wired as app.Proxy wires it: store, uploads, buckets, Services."""

    backend: MemoryBackend
    kms: KeyService
    records: InternalRecords
    buckets: Buckets
    listing: ListingCache
    store: ObjectStore
    uploads: MultipartUploads
    services: Services

    @classmethod
    def build(cls, *, ssec_over_http: str = "loopback", chunk_size: int | None = None) -> World:
        backend = MemoryBackend()
        kms = memory_data_keys(ACCOUNT, REGION)

        def clock() -> float:
            return 1_767_225_600.0  # 2026-01-01T00:00:00Z: Last-Modified and upload times are fixed

        sizes: dict[str, Any] = {} if chunk_size is None else {"chunk_size": chunk_size}
        integrity = kms.integrity()  # the integrity key and the record anchors, on the key service's keystore
        keys = integrity.keys()
        records = InternalRecords(backend, INTERNAL_BUCKET, ik_records=keys.records, anchors=integrity)
        buckets = Buckets(backend, records)
        listing = ListingCache()
        catalog = Catalog(records, keys)
        enforcement = Enforcement(backend, records.bucket, records.ensure_bucket)
        store = ObjectStore(backend, catalog, buckets, enforcement, kms=kms, clock=clock, listing=listing, **sizes)
        uploads = MultipartUploads(backend, catalog, buckets, store.conditions, clock=clock, listing=listing, **sizes)
        bucket_keys = BucketKeyCache()
        kms.subscribe(bucket_keys.forget_key)  # a changed key's bucket keys are dropped at once
        services = Services(store=store, uploads=uploads, buckets=buckets, kms=kms, region=REGION, account_id=ACCOUNT,
                            clock=clock, internal_bucket=INTERNAL_BUCKET, ssec_over_http=ssec_over_http,
                            bucket_keys=bucket_keys)
        return cls(backend, kms, records, buckets, listing, store, uploads, services)

    def kms_calls(self, *names: str) -> list[str]:
        """The data-key calls the key service audited so far (eventName), optionally only `names`."""
        events = [r["eventName"] for r in self.kms.audit.records]
        return [e for e in events if not names or e in names]

    def create_key(self, credential: Credential = ALICE) -> str:
        """A new symmetric KMS key of the account; its ARN."""
        return self.kms.create_key(caller_of(credential)).arn
