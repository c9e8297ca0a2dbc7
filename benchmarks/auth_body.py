"""Benchmark the request-body decoder (s3proxy.auth.body): CPU-seconds per GB for each payload mode.

Feeds a real aiohttp StreamReader in 256 KiB pieces (what the server hands over) from the same
loop, so the figure is the decoder's own cost: framing, signatures, the digests each mode needs.
Run: python3 benchmarks/auth_body.py [MiB]   (prints a table; never part of the test suite)
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import sys
import time
import zlib

import aiohttp
from multidict import CIMultiDict

from s3proxy.auth import body as body_mod
from s3proxy.auth.body import open_body
from s3proxy.auth.credentials import Credential
from s3proxy.auth.sigv4 import AuthContext, chunk_string_to_sign, derive_signing_key, sign


class _Flow:
    connected = True
    _reading_paused = False

    def pause_reading(self, *a: object, **k: object) -> None:
        pass

    def resume_reading(self, *a: object, **k: object) -> None:
        pass


def _ctx(mode: str, key: bytes) -> AuthContext:
    return AuthContext(Credential("AK", "SK", "u"), "s3", "us-east-1", "20130524T000000Z",
                       "20130524/us-east-1/s3/aws4_request", mode, False, key, "0" * 64)


def _signed_wire(data: bytes, key: bytes, chunk: int) -> bytes:
    out, previous = bytearray(), "0" * 64
    pieces = [data[i:i + chunk] for i in range(0, len(data), chunk)] + [b""]
    for piece in pieces:
        previous = sign(key, chunk_string_to_sign("20130524T000000Z", "20130524/us-east-1/s3/aws4_request",
                                                  previous, hashlib.sha256(piece).hexdigest()))
        out += f"{len(piece):x};chunk-signature={previous}\r\n".encode() + piece + (b"\r\n" if piece else b"")
    return bytes(out + b"\r\n")


async def _run(mode: str, headers: dict[str, str], wire: bytes, key: bytes, md5: bool) -> float:
    loop = asyncio.get_running_loop()
    reader = aiohttp.StreamReader(_Flow(), 2**16, loop=loop)  # type: ignore[arg-type]

    async def produce() -> None:
        view = memoryview(wire)
        for i in range(0, len(wire), 256 << 10):
            reader.feed_data(bytes(view[i:i + (256 << 10)]))
            await asyncio.sleep(0)
        reader.feed_eof()

    task = asyncio.create_task(produce())
    start = time.process_time()
    async for _ in open_body(_ctx(mode, key), CIMultiDict(headers), reader, want_md5=md5):
        pass
    used = time.process_time() - start
    await task
    return used


def main() -> None:
    mib = int(sys.argv[1]) if len(sys.argv) > 1 else 256
    data = os.urandom(mib << 20)
    key = derive_signing_key("SK", "20130524", "us-east-1", "s3")
    crc = base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()
    sha = hashlib.sha256(data).hexdigest()
    trailer_wire = b"".join(
        f"{len(data[i:i + (1 << 20)]):x}\r\n".encode() + data[i:i + (1 << 20)] + b"\r\n"
        for i in range(0, len(data), 1 << 20)
    ) + f"0\r\nx-amz-checksum-crc32:{crc}\r\n\r\n".encode()
    cases = [
        ("UNSIGNED-PAYLOAD, no digest", "UNSIGNED-PAYLOAD", {"Content-Length": str(len(data))}, data, False),
        ("UNSIGNED-PAYLOAD + MD5 (ETag)", "UNSIGNED-PAYLOAD", {"Content-Length": str(len(data))}, data, True),
        ("signed payload sha256 + crc32 hdr", sha, {"Content-Length": str(len(data)), "x-amz-checksum-crc32": crc}, data, False),
        ("unsigned trailer crc32 (boto3 https)", "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
         {"x-amz-decoded-content-length": str(len(data)), "x-amz-trailer": "x-amz-checksum-crc32"}, trailer_wire, False),
        ("signed aws-chunked 64 KiB chunks", "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
         {"x-amz-decoded-content-length": str(len(data))}, _signed_wire(data, key, 64 << 10), False),
        ("signed aws-chunked 8 MiB chunks", "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
         {"x-amz-decoded-content-length": str(len(data))}, _signed_wire(data, key, 8 << 20), False),
    ]
    print(f"{mib} MiB body; CPU-s per GB of decoded payload (lower is better); wall GB/s")
    print(f"{'mode':40} {'threads':>8} {'CPU-s/GB':>9} {'GB/s':>6}")
    for threaded in (False, True):
        body_mod.THREAD_THRESHOLD = (1 << 20) if threaded else (1 << 62)
        for label, mode, headers, wire, md5 in cases:
            wall = time.perf_counter()
            cpu = asyncio.run(_run(mode, headers, wire, key, md5))
            wall = time.perf_counter() - wall
            gb = len(data) / 1e9
            print(f"{label:40} {'yes' if threaded else 'no':>8} {cpu / gb:9.2f} {gb / wall:6.2f}")


if __name__ == "__main__":
    main()
