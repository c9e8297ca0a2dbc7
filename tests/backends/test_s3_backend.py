"""What only the S3 backend promises: retries only where safe, addressing, key encoding on the wire.

A small real aiohttp server on loopback plays a misbehaving S3 endpoint and records what it got.
"""

from __future__ import annotations

import socket
import tracemalloc
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web

from s3proxy import errors
from s3proxy.backends.base import ObjectMeta
from s3proxy.backends.s3 import S3Backend
from tests.backends.test_backend_contract import body_of

SLOW_DOWN = b"<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>"
BUCKETS = (b'<ListAllMyBucketsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Buckets><Bucket>'
           b"<Name>b1</Name><CreationDate>2024-01-02T03:04:05.000Z</CreationDate></Bucket></Buckets>"
           b"</ListAllMyBucketsResult>")


@dataclass
class Endpoint:
    """A fake S3 endpoint that fails the first `failures` requests with 503 SlowDown."""

    failures: int = 0
    seen: list[tuple[str, str, str, int]] = field(default_factory=list)  # method, host, raw path, body size
    headers: list[dict[str, str]] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.headers.append({k.lower(): v for k, v in request.headers.items()})
        if request.raw_path.endswith("/big"):
            return await self.big(request)
        body = await request.read()
        self.seen.append((request.method, request.host, request.raw_path, len(body)))
        if len(self.seen) <= self.failures:
            return web.Response(status=503, body=SLOW_DOWN, content_type="application/xml")
        if request.method == "PUT":
            return web.Response(headers={"ETag": '"abc"'})
        return web.Response(body=BUCKETS, content_type="application/xml")


    async def big(self, request: web.Request) -> web.StreamResponse:
        """Stream BIG bytes in or out without keeping them."""
        received = 0
        async for chunk in request.content.iter_chunked(1 << 20):
            received += len(chunk)
        self.seen.append((request.method, request.host, request.raw_path, received))
        if request.method == "PUT":
            return web.Response(headers={"ETag": '"big"'})
        resp = web.StreamResponse(headers={"Content-Length": str(BIG), "ETag": '"big"'})
        await resp.prepare(request)
        piece = b"z" * (1 << 20)
        for _ in range(BIG >> 20):
            await resp.write(piece)
        await resp.write_eof()
        return resp


BIG = 128 << 20


async def serve(endpoint: Endpoint) -> tuple[web.AppRunner, int]:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", endpoint.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, port


def backend(port: int, delays: list[float], **kw: Any) -> S3Backend:
    async def sleep(seconds: float) -> None:
        delays.append(seconds)

    return S3Backend(f"http://s3.test:{port}", region="eu-west-1", access_key="AK", secret_key="SECRET", resolve=_loopback,
                     rand=lambda: 1.0, sleep=sleep, **kw)


async def with_server(failures: int, test: Any, **kw: Any) -> Endpoint:
    endpoint = Endpoint(failures)
    runner, port = await serve(endpoint)
    delays: list[float] = []
    b = backend(port, delays, **kw)
    try:
        await test(b, delays)
    finally:
        await b.close()
        await runner.cleanup()
    return endpoint


async def test_replayable_requests_retry_with_backoff() -> None:
    async def check(b: S3Backend, delays: list[float]) -> None:
        assert [x.name for x in await b.list_buckets()] == ["b1"]
        assert delays == [0.05, 0.1]  # exponential, full jitter pinned at its maximum

    endpoint = await with_server(2, check, retries=3)
    assert len(endpoint.seen) == 3


async def test_retries_give_up_with_the_servers_error() -> None:
    async def check(b: S3Backend, delays: list[float]) -> None:
        with pytest.raises(errors.SlowDown):
            await b.list_buckets()

    endpoint = await with_server(10, check, retries=2)
    assert len(endpoint.seen) == 3


async def test_a_streamed_put_is_never_retried() -> None:
    async def check(b: S3Backend, delays: list[float]) -> None:
        with pytest.raises(errors.SlowDown):
            await b.put_object("bkt", "k", body_of(b"x" * 1000), 1000, ObjectMeta())
        assert delays == []

    endpoint = await with_server(1, check, retries=3)
    assert [(m, size) for m, _, _, size in endpoint.seen] == [("PUT", 1000)]
    sent = endpoint.headers[0]
    assert sent["content-length"] == "1000" and "transfer-encoding" not in sent  # never chunked
    assert sent["x-amz-content-sha256"] == "UNSIGNED-PAYLOAD"
    assert sent["authorization"].startswith("AWS4-HMAC-SHA256 Credential=AK/")


async def test_big_bodies_stream_both_ways_in_flat_memory() -> None:
    piece = b"y" * (1 << 20)

    async def body() -> AsyncIterator[bytes]:
        for _ in range(BIG >> 20):
            yield piece

    async def check(b: S3Backend, delays: list[float]) -> None:
        tracemalloc.start()
        try:
            await b.put_object("bkt", "big", body(), BIG, ObjectMeta())
            got = await b.get_object("bkt", "big")
            seen = 0
            async for chunk in got.body:
                seen += len(chunk)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert seen == BIG == got.info.size
        assert peak < 24 << 20, f"peak {peak >> 20} MiB for {BIG >> 20} MiB each way"

    endpoint = await with_server(0, check)
    assert [(m, size) for m, _, _, size in endpoint.seen] == [("PUT", BIG), ("GET", 0)]


async def test_path_addressing_encodes_keys_byte_for_byte() -> None:
    async def check(b: S3Backend, delays: list[float]) -> None:
        await b.put_object("bkt", "a b+%?#ü/../x", body_of(b"abc"), 3, ObjectMeta())

    endpoint = await with_server(0, check)
    assert endpoint.seen[0][2] == "/bkt/a%20b%2B%25%3F%23%C3%BC/../x"


async def test_virtual_addressing_puts_the_bucket_in_the_host() -> None:
    async def check(b: S3Backend, delays: list[float]) -> None:
        await b.put_object("bkt", "k/ey", body_of(b"abc"), 3, ObjectMeta())

    endpoint = await with_server(0, check, addressing="virtual")
    method, host, path, size = endpoint.seen[0]
    assert host.startswith("bkt.s3.test:") and path == "/k/ey" and size == 3


async def test_unreachable_endpoint_is_service_unavailable() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    b = S3Backend(f"http://127.0.0.1:{port}", region="us-east-1", access_key="a", secret_key="b", retries=1,
                  sleep=_no_sleep)
    await b.start()
    try:
        with pytest.raises(errors.ServiceUnavailable):
            await b.list_buckets()
    finally:
        await b.close()


async def _no_sleep(seconds: float) -> None:
    return None


def test_repr_never_shows_the_secret() -> None:
    b = S3Backend("http://h:1", region="r", access_key="AK", secret_key="TOPSECRET")
    assert "TOPSECRET" not in repr(b)



async def _loopback(host: str) -> str:
    return "127.0.0.1"


def test_serving_loads_neither_boto3_nor_botocore() -> None:
    """The backend signs and sends on its own, and `serve` parses its flags without the cse and tools
    commands: boto3 and botocore (~0.15 s of imports, ~10 MiB) stay out of the proxy process."""
    import subprocess
    import sys

    code = ("import sys, s3proxy.cli as cli; cli.build_parser('serve').parse_args(['serve']);"
            "import s3proxy.app, s3proxy.backends.s3;"
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'boto3', 'botocore', 's3transfer'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
