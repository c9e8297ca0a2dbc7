"""http/respond.send's rules for a streamed Reply, over a real socket: the first piece comes before the
headers (so an early failure is still an error document), pieces are coalesced into large writes,
the body is exactly its length or the connection is aborted, and the body is closed whatever happens."""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from s3proxy.format.errors import IntegrityError
from s3proxy.http import respond
from s3proxy.ops.call import Call
from s3proxy.ops.reply import Reply
from tests.twins import World

from .helpers import Client, frontend, served


class Body:
    """A streamed body: `pieces`, then `fail` (if any) raised; records whether it was closed."""

    def __init__(self, pieces: list[bytes], fail: BaseException | None = None, pause: float = 0.0) -> None:
        self.pieces = pieces
        self.fail = fail
        self.pause = pause
        self.closed = asyncio.Event()

    async def __call__(self) -> AsyncIterator[bytes]:
        try:
            for piece in self.pieces:
                if self.pause:
                    await asyncio.sleep(self.pause)
                yield piece
            if self.fail is not None:
                raise self.fail
        finally:
            self.closed.set()


def replying(body: Body, length: int, status: int = 200):
    async def handler(call: Call) -> Reply:
        return Reply(status, {"ETag": '"e"'}, body(), length)

    return {"GetObject": handler}


async def fetch(client: Client) -> tuple[int, dict, bytes | BaseException]:
    """GET the object; the body read whole, or the error reading it raised."""
    headers = client.signed("GET", "/bucket/key")
    try:
        async with client.client.get("/bucket/key", headers=headers) as response:
            try:
                return response.status, dict(response.headers), await response.read()
            except aiohttp.ClientError as exc:
                return response.status, dict(response.headers), exc
    except aiohttp.ClientError as exc:  # the connection closed before a status line
        return 0, {}, exc


async def test_a_body_that_fails_before_its_first_piece_gets_an_error_document(world: World) -> None:
    body = Body([], fail=IntegrityError())
    async with served(frontend(world, operations=replying(body, 100))) as client:
        status, headers, got = await fetch(client)
    assert status == 500 and isinstance(got, bytes)
    doc = ET.fromstring(got)
    assert doc.findtext("Code") == "InternalError" and doc.findtext("RequestId") == headers["x-amz-request-id"]
    assert "ETag" not in headers  # the object's own headers never went out
    assert body.closed.is_set()


@pytest.mark.parametrize(("pieces", "fail", "length"), [
    ([b"a" * 1000], IntegrityError(), 5000),  # a chunk fails its tag after the headers went out
    ([b"a" * 1000], ConnectionResetError(), 5000),  # the backend drops mid-body
    ([b"a" * 600], None, 1000),  # a body that ends short of its length, cleanly
    ([b"a" * (3 << 20)], None, 4 << 20),  # short by a MiB, after MiB-sized writes went out
], ids=["tag-fails", "backend-drops", "short", "short-after-writes"])
async def test_a_failure_after_the_headers_aborts_the_connection(world: World, pieces, fail, length) -> None:
    """The client sees a broken transfer, never a clean response of the wrong bytes."""
    body = Body(pieces, fail)
    async with served(frontend(world, operations=replying(body, length))) as client:
        status, _, got = await fetch(client)
    assert isinstance(got, aiohttp.ClientError), (status, got if not isinstance(got, bytes) else len(got))
    assert body.closed.is_set()


@pytest.mark.parametrize("pieces", [
    [b"a" * 600, b"b" * 600],  # the piece that passes the length
    [b"a" * 1200],  # the first piece alone
    [b"a" * 1000, b"b" * 200],  # a first piece of exactly the length, then more (the small-body path)
], ids=["later-piece", "first-piece", "after-a-whole-first-piece"])
async def test_a_body_longer_than_its_length_is_aborted_before_its_length_is_sent(world: World, pieces) -> None:
    """aiohttp cuts a body at its Content-Length: without the check, the client would take the
    first 1000 bytes of a 1200-byte body for a whole, clean answer."""
    body = Body(pieces)
    async with served(frontend(world, operations=replying(body, 1000))) as client:
        status, _, got = await fetch(client)
    assert isinstance(got, aiohttp.ClientError), (status, got if not isinstance(got, bytes) else len(got))
    assert body.closed.is_set()


async def test_pieces_are_coalesced_into_large_writes_and_a_large_piece_is_written_as_is(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    writes: list[bytes | bytearray | memoryview] = []
    original = web.StreamResponse.write

    async def recording(self: web.StreamResponse, data) -> None:  # noqa: ANN001 - aiohttp's signature
        writes.append(data)
        await original(self, data)

    monkeypatch.setattr(web.StreamResponse, "write", recording)
    small = [bytes([i % 251]) * 1024 for i in range(2048)]  # 2 MiB in 1 KiB pieces: two full writes
    large = b"L" * (respond.WRITE_SIZE + 1)
    pieces = [*small, large, b"tail", b"x" * 1000]
    expected = b"".join(pieces)
    body = Body(pieces)
    async with served(frontend(world, operations=replying(body, len(expected)))) as client:
        status, headers, got = await fetch(client)
    assert status == 200 and got == expected and headers["Content-Length"] == str(len(expected))
    assert sum(len(w) for w in writes) == len(expected)
    assert all(len(w) >= respond.WRITE_SIZE for w in writes[:-1])  # 1 KiB pieces never cost a write each
    assert len(writes) <= len(expected) // respond.WRITE_SIZE + 2
    assert any(w is large for w in writes)  # a piece already large enough goes out without a copy


async def test_a_client_that_goes_away_mid_body_closes_the_body(world: World) -> None:
    body = Body([b"x" * 65536] * 400, pause=0.001)  # 25 MiB, slowly
    async with served(frontend(world, operations=replying(body, 65536 * 400))) as client:
        headers = client.signed("GET", "/bucket/key")
        async with client.client.get("/bucket/key", headers=headers) as response:
            assert response.status == 200
            await response.content.readexactly(65536)
            response.close()  # drop the connection with most of the body unsent
        await asyncio.wait_for(body.closed.wait(), 30)


async def test_a_head_reply_sends_the_length_get_would_send_and_no_body(world: World) -> None:
    async def head(call: Call) -> Reply:
        return Reply(200, {"ETag": '"e"'}, None, 123456)

    async with served(frontend(world, operations={"HeadObject": head})) as client:
        answer = await client.send("HEAD", "/bucket/key")
    assert answer.status == 200 and answer.headers["Content-Length"] == "123456" and answer.body == b""
