"""The lean HTTP/1.1 body client (s3proxy.backends.http1) against real servers on loopback.

Raw asyncio servers send hand-made responses (framings, interim responses, truncations, stalls,
closes), an aiohttp server sends large bodies, and one serves TLS with a certificate made here.
The parser is also fed directly, split at every possible point, through the same buffer
protocol the event loop drives.
"""

from __future__ import annotations

import asyncio
import datetime
import ssl
import tracemalloc
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypothesis import given, settings
from hypothesis import strategies as st
from yarl import URL

from s3proxy.backends import http1
from s3proxy.buffers import Recycler

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class RawServer:
    """A loopback TCP server that answers each request with what `respond` writes; counts connections."""

    def __init__(self, respond: Handler) -> None:
        self.respond = respond
        self.connections = 0
        self.requests: list[bytes] = []

    async def __aenter__(self) -> RawServer:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.url = URL(f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/b/k")
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                self.requests.append(head)
                await self.respond(reader, writer)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


def answer(*parts: bytes, close: bool = False) -> Handler:
    async def respond(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for part in parts:
            writer.write(part)
            await writer.drain()
        if close:
            writer.close()
            raise ConnectionError

    return respond


def pool(**kw: object) -> http1.Pool:
    return http1.Pool(connect_timeout=5, read_timeout=kw.pop("read_timeout", 5), **kw)  # type: ignore[arg-type]


async def body_of(resp: http1.Response) -> tuple[bytes, list[memoryview]]:
    kept = [piece async for piece in resp]
    return b"".join(kept), kept


async def test_a_content_length_body_arrives_whole_and_the_connection_is_reused() -> None:
    async with RawServer(answer(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nETag: \"e\"\r\n\r\nhello")) as server:
        p = pool()
        for _ in range(3):
            resp = await p.get(server.url, {"x-amz-date": "d"})
            assert resp.status == 200 and resp.headers["etag"] == '"e"'
            assert (await body_of(resp))[0] == b"hello"
        await p.close()
    assert server.connections == 1
    assert server.requests[0].startswith(b"GET /b/k HTTP/1.1\r\nHost: 127.0.0.1:")
    assert b"\r\nx-amz-date: d\r\n" in server.requests[0]



async def test_header_values_are_read_as_utf_8_and_other_bytes_survive() -> None:
    head = "HTTP/1.1 200 OK\r\nx-amz-meta-name:  ünïcödé ключ \r\nx-amz-meta-raw: a\xff\r\nContent-Length: 0\r\n\r\n"
    async with RawServer(answer(head.encode("utf-8").replace(b"\xc3\xbf", b"\xff"))) as server:
        p = pool()
        resp = await p.get(server.url, {})
        assert resp.headers["x-amz-meta-name"] == "ünïcödé ключ"
        assert resp.headers["x-amz-meta-raw"].encode("utf-8", "surrogateescape") == b"a\xff"
        resp.release()
        await p.close()

async def test_chunked_bodies_with_extensions_and_trailers() -> None:
    chunked = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"5;ext=1\r\nhello\r\n1\r\n \r\nA\r\n0123456789\r\n0\r\nx-amz-checksum-crc32: AAAAAA==\r\n\r\n")
    async with RawServer(answer(chunked, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")) as server:
        p = pool()
        assert (await body_of(await p.get(server.url, {})))[0] == b"hello 0123456789"
        await p.close()


async def test_a_body_without_length_runs_until_the_server_closes() -> None:
    async with RawServer(answer(b"HTTP/1.0 200 OK\r\n\r\nall of ", b"it", close=True)) as server:
        p = pool()
        assert (await body_of(await p.get(server.url, {})))[0] == b"all of it"
        await p.close()


async def test_interim_responses_are_skipped() -> None:
    async with RawServer(answer(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: x\r\n\r\n",
                                b"HTTP/1.1 206 Partial Content\r\nContent-Length: 2\r\n\r\nok")) as server:
        p = pool()
        resp = await p.get(server.url, {})
        assert resp.status == 206 and (await body_of(resp))[0] == b"ok"
        await p.close()


async def test_an_error_body_is_read_whole() -> None:
    doc = b"<Error><Code>NoSuchKey</Code></Error>"
    async with RawServer(answer(b"HTTP/1.1 404 Not Found\r\nContent-Length: %d\r\n\r\n%s" % (len(doc), doc))) as server:
        p = pool()
        resp = await p.get(server.url, {})
        assert (resp.status, await resp.read()) == (404, doc)
        await p.close()


async def test_a_truncated_body_fails_after_what_did_arrive() -> None:
    async with RawServer(answer(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabcd", close=True)) as server:
        p = pool()
        resp = await p.get(server.url, {})
        got = b""
        with pytest.raises(http1.ProtocolError):
            async for piece in resp:
                got += piece
        assert got == b"abcd"
        resp.release()
        await p.close()


@pytest.mark.parametrize("head", [
    b"HTTP/1.1 OK\r\n\r\n",
    b"HTTP/2 200 OK\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nA: 1\r\n folded\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
    b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
    "HTTP/1.1 200 OK\r\nContent-Length: \u0661\r\n\r\nx".encode(),  # an Arabic-Indic digit one
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nab\r\n",
    b"HTTP/1.1 200 OK\r\nX: " + b"a" * (http1.MAX_HEAD + 10) + b"\r\n\r\n",
])
async def test_malformed_responses_are_protocol_errors(head: bytes) -> None:
    async with RawServer(answer(head)) as server:
        p = pool()
        with pytest.raises(http1.ProtocolError):
            resp = await p.get(server.url, {})
            await body_of(resp)
        await p.close()


async def test_a_pooled_connection_the_server_closed_is_replaced_unseen() -> None:
    async with RawServer(answer(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", close=True)) as server:
        p = pool()
        for _ in range(3):  # each response is followed by the server closing: the next finds it dead
            assert (await body_of(await p.get(server.url, {})))[0] == b"ok"
            await asyncio.sleep(0.05)
        await p.close()
    assert server.connections == 3


async def test_connection_close_is_honoured() -> None:
    async with RawServer(answer(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok")) as server:
        p = pool()
        for _ in range(2):
            assert (await body_of(await p.get(server.url, {})))[0] == b"ok"
        await p.close()
    assert server.connections == 2


async def test_a_stalled_server_times_out() -> None:
    async with RawServer(answer(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nab")) as server:
        p = pool(read_timeout=0.3)
        resp = await p.get(server.url, {})
        with pytest.raises(TimeoutError):
            await body_of(resp)
        resp.release()
        async with RawServer(answer(b"")) as silent:
            with pytest.raises(TimeoutError):
                await p.get(silent.url, {})
        await p.close()


def test_header_values_cannot_inject_lines() -> None:
    with pytest.raises(ValueError):
        asyncio.run(pool().get(URL("http://127.0.0.1:1/b/k"), {"x-a": "1\r\nx-b: 2"}))



# requests with bodies -----------------------------------------------------------------------------

def reading_body(then: bytes, keep: list[bytes]) -> Handler:
    """Read the request's body (its Content-Length from the head the server read last), keep it, answer `then`."""
    async def respond(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        length = 0
        for line in respond.server.requests[-1].split(b"\r\n"):  # type: ignore[attr-defined]
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        keep.append(await reader.readexactly(length))
        writer.write(then)

    return respond


async def _pieces(*parts: bytes):  # noqa: ANN202
    for part in parts:
        yield part


async def test_a_small_body_and_a_stream_are_sent_with_their_content_length_and_never_chunked() -> None:
    got: list[bytes] = []
    handler = reading_body(b"HTTP/1.1 200 OK\r\nETag: \"e\"\r\nContent-Length: 0\r\n\r\n", got)
    async with RawServer(handler) as server:
        handler.server = server  # type: ignore[attr-defined]
        p = pool()
        origin = ("http", "127.0.0.1", server.url.port)
        resp = await p.request("POST", origin, "/b/k?uploads=", {"Host": "h", "Content-Length": "5"}, b"<x/>!")
        assert (resp.status, await resp.read()) == (200, b"")
        stream = _pieces(b"a" * 10, b"b" * (200 << 10), b"", b"c")
        resp = await p.request("PUT", origin, "/b/k", {"Host": "h", "Content-Length": str(10 + (200 << 10) + 1)}, stream=stream)
        assert resp.status == 200 and resp.headers["ETag"] == '"e"'
        resp.release()
        await p.close()
    assert got == [b"<x/>!", b"a" * 10 + b"b" * (200 << 10) + b"c"]
    assert server.connections == 1  # the same kept-alive connection for both
    assert server.requests[0].startswith(b"POST /b/k?uploads= HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n")
    assert all(b"transfer-encoding" not in r.lower() for r in server.requests)


async def test_a_head_response_has_no_body_whatever_its_content_length() -> None:
    async with RawServer(answer(b"HTTP/1.1 200 OK\r\nContent-Length: 12345\r\nETag: \"e\"\r\n\r\n")) as server:
        p = pool()
        for _ in range(3):
            resp = await p.request("HEAD", ("http", "127.0.0.1", server.url.port), "/b/k", {"Host": "h"})
            assert resp.status == 200 and resp.headers["Content-Length"] == "12345"
            assert await resp.read() == b""
        await p.close()
    assert server.connections == 1


async def test_an_early_error_answer_stops_the_stream_and_spends_the_connection() -> None:
    """A server that refuses a PUT before reading its body (as S3 does with 400/403) is answered
    with its error at once; the rest of the stream is never taken, the connection never reused."""
    taken: list[int] = []

    async def stream():  # noqa: ANN202
        for i in range(1000):
            taken.append(i)
            yield b"x" * (1 << 20)
            await asyncio.sleep(0.001)

    doc = b"<Error><Code>AccessDenied</Code></Error>"
    async with RawServer(answer(b"HTTP/1.1 403 Forbidden\r\nContent-Length: %d\r\n\r\n%s" % (len(doc), doc))) as server:
        p = pool()
        origin = ("http", "127.0.0.1", server.url.port)
        resp = await asyncio.wait_for(p.request("PUT", origin, "/b/k", {"Host": "h", "Content-Length": str(1000 << 20)},
                                                stream=stream()), 10)
        assert (resp.status, await resp.read()) == (403, doc)
        assert len(taken) < 1000
        ok = await p.request("HEAD", origin, "/b/k", {"Host": "h"})
        ok.release()
        await p.close()
    assert server.connections == 2


async def test_a_success_answered_before_the_body_was_sent_is_refused() -> None:
    async def stream():  # noqa: ANN202
        yield b"first"
        await asyncio.sleep(0.2)  # the server has answered meanwhile
        yield b"second"

    async with RawServer(answer(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")) as server:
        p = pool()
        with pytest.raises(http1.ProtocolError):
            await p.request("PUT", ("http", "127.0.0.1", server.url.port), "/b/k", {"Host": "h", "Content-Length": "11"},
                            stream=stream())
        await p.close()


async def test_a_stream_that_fails_is_not_resent_and_its_error_reaches_the_caller() -> None:
    class SourceBroke(Exception):
        pass

    async def stream():  # noqa: ANN202
        yield b"some"
        raise SourceBroke

    async with RawServer(answer(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")) as server:
        p = pool()
        with pytest.raises(SourceBroke):
            await p.request("PUT", ("http", "127.0.0.1", server.url.port), "/b/k", {"Host": "h", "Content-Length": "8"},
                            stream=stream())
        await asyncio.sleep(0.1)
        await p.close()
    assert server.connections == 1 and len(server.requests) <= 1  # never sent again


async def test_a_server_that_stops_reading_a_stream_times_out_with_memory_bounded() -> None:
    stalled = asyncio.Event()

    async def never_read(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await stalled.wait()

    sent = 0

    async def stream():  # noqa: ANN202
        nonlocal sent
        piece = b"y" * (1 << 20)
        while True:
            sent += len(piece)
            yield piece

    async with RawServer(never_read) as server:
        p = pool(read_timeout=0.5)
        with pytest.raises(TimeoutError):
            await p.request("PUT", ("http", "127.0.0.1", server.url.port), "/b/k", {"Host": "h", "Content-Length": str(1 << 40)},
                            stream=stream())
        stalled.set()
        await p.close()
    assert sent < 64 << 20  # waited for the socket instead of queueing the stream in memory


def test_request_targets_cannot_carry_white_space() -> None:
    with pytest.raises(ValueError):
        asyncio.run(pool().request("GET", ("http", "127.0.0.1", 1), "/b/k HTTP/1.1\r\nx: y", {"Host": "h"}))

BIG = 64 << 20


async def _big(request: web.Request) -> web.StreamResponse:
    resp = web.StreamResponse(headers={"Content-Length": str(BIG)})
    await resp.prepare(request)
    for i in range(BIG >> 20):
        await resp.write(bytes([i % 251]) * (1 << 20))
    await resp.write_eof()
    return resp


async def _aiohttp_server(ssl_context: ssl.SSLContext | None = None) -> tuple[web.AppRunner, int]:
    app = web.Application()
    app.router.add_get("/{tail:.*}", _big)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context)
    await site.start()
    return runner, site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]


async def test_pieces_stay_valid_while_kept_and_memory_stays_bounded_when_not() -> None:
    runner, port = await _aiohttp_server()
    p = pool()
    try:
        url = URL(f"http://127.0.0.1:{port}/big")
        _, kept = await body_of(await p.get(url, {}))  # every piece kept: none may be overwritten
        assert sum(map(len, kept)) == BIG
        data = b"".join(kept)
        assert all(data[i << 20 : (i + 1) << 20] == bytes([i % 251]) * (1 << 20) for i in range(BIG >> 20))
        assert all(piece.readonly for piece in kept)
        del kept, data
        tracemalloc.start()
        resp = await p.get(url, {})
        total = 0
        async for piece in resp:  # a slow reader: the server is paused, not buffered
            total += len(piece)
            await asyncio.sleep(0.0005)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert total == BIG and peak < 12 << 20
    finally:
        await p.close()
        await runner.cleanup()


async def test_tls(tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    (tmp_path / "c.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "k.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                       serialization.NoEncryption()))
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(tmp_path / "c.pem", tmp_path / "k.pem")
    runner, port = await _aiohttp_server(server_ctx)

    async def loopback(host: str) -> str:
        return "127.0.0.1"

    try:
        trusting = pool(ssl_context=ssl.create_default_context(cafile=str(tmp_path / "c.pem")), resolve=loopback)
        data, _ = await body_of(await trusting.get(URL(f"https://localhost:{port}/big"), {}))
        assert len(data) == BIG and data[-1] == (BIG >> 20) - 1
        await trusting.close()
        default = pool(resolve=loopback)  # the system's trust store does not know this certificate
        with pytest.raises(ssl.SSLError):
            await default.get(URL(f"https://localhost:{port}/big"), {})
        await default.close()
    finally:
        await runner.cleanup()


# the parser, fed directly -------------------------------------------------------------------------

RESPONSES = [
    (b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nhello world", b"hello world"),
    (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
     b"3\r\nhel\r\n8;x=y\r\nlo world\r\n0\r\nT: 1\r\n\r\n", b"hello world"),
    (b"HTTP/1.1 204 No Content\r\n\r\n", b""),
]


@settings(max_examples=300, deadline=None)
@given(case=st.sampled_from(RESPONSES), cuts=st.lists(st.integers(0, 200), max_size=12))
def test_any_split_of_a_response_parses_the_same(case: tuple[bytes, bytes], cuts: list[int]) -> None:
    wire, body = case

    async def feed() -> bytes:
        conn = http1._Connection(asyncio.get_running_loop())
        conn._state = http1._HEAD
        prev = 0
        for cut in sorted({min(c, len(wire)) for c in cuts} | {len(wire)}):
            piece = wire[prev:cut]
            while piece:  # as recv_into would: at most what get_buffer offered
                buf = conn.get_buffer(-1)
                n = min(len(buf), len(piece))
                buf[:n] = piece[:n]
                conn.buffer_updated(n)
                piece = piece[n:]
            prev = cut
        assert conn.head is not None and conn.finished
        return b"".join([p async for p in _drain(conn)])

    assert asyncio.run(feed()) == body


async def _drain(conn: http1._Connection):  # noqa: ANN202
    while (piece := await conn.next_piece(1)) is not None:
        yield piece


# buffer recycling -----------------------------------------------------------------------------------

def test_a_recycled_buffer_is_never_one_still_viewed() -> None:
    r = Recycler(16)
    a = r.take()
    view = memoryview(a)[2:5]
    r.retire(a)
    b = r.take()
    assert b is not a  # a is still viewed
    del view
    r.retire(b)
    assert r.take() is a  # nobody views a any more
    assert len(a) == 16
    r.retire(bytearray(8))  # not its size: not kept
    assert len(r.take()) == 16


async def test_a_backend_get_with_a_malformed_head_is_an_s3_error_and_frees_its_connection() -> None:
    from s3proxy import errors
    from s3proxy.backends.s3 import S3Backend

    bad = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nLast-Modified: not a date\r\n\r\nok"
    async with RawServer(answer(bad)) as server:
        backend = S3Backend(f"http://127.0.0.1:{server.url.port}", region="us-east-1", access_key="a", secret_key="b",
                            retries=0)
        for _ in range(http1.LIMIT + 5):  # a permit lost per request would block the last ones
            with pytest.raises(errors.InternalError):
                await asyncio.wait_for(backend.get_object("b", "k"), 5)
        await backend.close()
