"""Test helpers for s3proxy.auth: AWS example credentials, an independent aws-chunked encoder,
and a real aiohttp StreamReader fed with a body split into arbitrary pieces."""

from __future__ import annotations

import asyncio
import calendar
import hashlib
import hmac
import itertools
import time
from collections.abc import Iterable, Sequence

import aiohttp
from multidict import CIMultiDict

from s3proxy.auth.credentials import Credential, CredentialStore

AKID = "AKIAIOSFODNN7EXAMPLE"
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
EXAMPLE_DATE = "20130524T000000Z"
EXAMPLE_NOW = float(calendar.timegm(time.strptime(EXAMPLE_DATE, "%Y%m%dT%H%M%SZ")))
EXAMPLE_SCOPE = "20130524/us-east-1/s3/aws4_request"
EMPTY = hashlib.sha256(b"").hexdigest()


def example_store() -> CredentialStore:
    return CredentialStore([Credential(AKID, SECRET, "example")])


def headers(items: Iterable[tuple[str, str]] | dict[str, str]) -> CIMultiDict[str]:
    return CIMultiDict(items.items() if isinstance(items, dict) else items)


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def signing_key(secret: str, date: str, region: str = "us-east-1", service: str = "s3") -> bytes:
    key = ("AWS4" + secret).encode()
    for part in (date, region, service, "aws4_request"):
        key = _hmac(key, part)
    return key


def signed_chunks(
    key: bytes,
    seed: str,
    pieces: Sequence[bytes],
    *,
    amz_date: str = EXAMPLE_DATE,
    scope: str = EXAMPLE_SCOPE,
    trailers: Sequence[tuple[str, str]] | None = None,
) -> bytes:
    """An aws-chunked body with chunk signatures (and signed trailers), written from the AWS docs."""
    out = bytearray()
    previous = seed
    for data in list(pieces) + [b""]:
        sts = "\n".join(("AWS4-HMAC-SHA256-PAYLOAD", amz_date, scope, previous, EMPTY, hashlib.sha256(data).hexdigest()))
        previous = _hmac(key, sts).hex()
        out += f"{len(data):x};chunk-signature={previous}\r\n".encode() + data
        if data:
            out += b"\r\n"
    if trailers is None:
        return bytes(out + b"\r\n")
    canonical = "".join(f"{n}:{v}\n" for n, v in trailers)
    sts = "\n".join(("AWS4-HMAC-SHA256-TRAILER", amz_date, scope, previous, hashlib.sha256(canonical.encode()).hexdigest()))
    for n, v in trailers:
        out += f"{n}:{v}\r\n".encode()
    out += f"x-amz-trailer-signature:{_hmac(key, sts).hex()}\r\n\r\n".encode()
    return bytes(out)


def unsigned_chunks(pieces: Sequence[bytes], trailers: Sequence[tuple[str, str]] = ()) -> bytes:
    """An aws-chunked body as botocore writes it for STREAMING-UNSIGNED-PAYLOAD-TRAILER."""
    out = bytearray()
    for data in pieces:
        out += f"{len(data):x}\r\n".encode() + data + b"\r\n"
    out += b"0\r\n"
    for n, v in trailers:
        out += f"{n}:{v}\r\n".encode()
    return bytes(out + b"\r\n")


class _FlowControl:
    """What StreamReader asks of its protocol; the feeder below never overruns anyway."""

    connected = True
    _reading_paused = False

    def pause_reading(self, *args: object, **kwargs: object) -> None:
        pass

    def resume_reading(self, *args: object, **kwargs: object) -> None:
        pass


def split(data: bytes, cuts: Iterable[int]) -> list[bytes]:
    points = sorted({c for c in cuts if 0 < c < len(data)})
    edges = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(edges) if b > a]


async def collect(make_body, pieces: Sequence[bytes]):  # type: ignore[no-untyped-def]
    """Feed pieces into a real aiohttp StreamReader from a task, decode with make_body(reader).

    Returns (decoded bytes, the RequestBody, the exception or None)."""
    loop = asyncio.get_running_loop()
    reader = aiohttp.StreamReader(_FlowControl(), 2**16, loop=loop)  # type: ignore[arg-type]

    async def produce() -> None:
        for piece in pieces:
            reader.feed_data(piece)
            await asyncio.sleep(0)
        reader.feed_eof()

    task = asyncio.create_task(produce())
    out = bytearray()
    body = None
    try:
        body = make_body(reader)
        async for piece in body:
            assert piece, "empty pieces are never yielded"
            out += piece
        return bytes(out), body, None
    except Exception as exc:  # noqa: BLE001 - the test inspects it
        return bytes(out), body, exc
    finally:
        await task
