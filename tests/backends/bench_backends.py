"""Benchmark the fs backend (and the S3 backend's client hop): prints a table, never fails.

Run: python3 -m tests.backends.bench_backends [--size-mib 512] [--keys 20000]
Not collected by pytest (no test_ prefix). Figures are wall MB/s and this process's CPU-s per GB.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

from aiohttp import web

from s3proxy.backends.base import ObjectMeta
from s3proxy.backends.fs import FsBackend
from s3proxy.backends.s3 import S3Backend

MIB = 1 << 20


def cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


async def body(size: int) -> AsyncIterator[bytes]:
    piece = b"\x5a" * MIB
    for _ in range(size // MIB):
        yield piece


async def drain(it: AsyncIterator[bytes]) -> int:
    n = 0
    async for chunk in it:
        n += len(chunk)
    return n


async def measure(label: str, size: int, run: Callable[[], Awaitable[object]]) -> None:
    t0, c0 = time.perf_counter(), cpu()
    await run()
    wall, used = time.perf_counter() - t0, cpu() - c0
    gb = size / 1e9
    print(f"| {label:<44} | {size / MIB:>8.0f} | {gb / wall * 1000:>8.0f} | {used / gb:>7.2f} |")


async def bench_fs(root: Path, size: int, keys: int) -> None:
    for fsync in (False, True):
        fs = FsBackend(root / f"fs-{fsync}", fsync=fsync)
        await fs.start()
        await fs.create_bucket("b")
        tag = "fsync" if fsync else "no fsync"
        await measure(f"fs put ({tag})", size, lambda fs=fs: fs.put_object("b", "big", body(size), size, ObjectMeta()))
        await measure(f"fs get ({tag})", size, lambda fs=fs: fs.get_object("b", "big"))
        got = await fs.get_object("b", "big")
        await measure(f"fs get body ({tag})", size, lambda got=got: drain(got.body))
        await fs.close()
    fs = FsBackend(root / "keys", fsync=False)
    await fs.start()
    await fs.create_bucket("b")
    t0 = time.perf_counter()
    for i in range(keys):
        await fs.put_object("b", f"d{i % 100:03d}/k{i:07d}", body(0), 0, ObjectMeta())
    print(f"\nfs: {keys} empty PUTs (no fsync): {keys / (time.perf_counter() - t0):.0f}/s")
    for label, kw in (("1000 keys, no delimiter", {}), ("delimiter '/' (100 prefixes)", {"delimiter": "/"}),
                      ("1000 keys after the middle", {"after": f"d050/k{keys // 2:07d}"})):
        t0 = time.perf_counter()
        for _ in range(20):
            page = await fs.list_objects("b", max_keys=1000, **kw)  # type: ignore[arg-type]
        n = len(page.objects) + len(page.common_prefixes)
        print(f"fs list {label}: {(time.perf_counter() - t0) / 20 * 1000:.1f} ms per page of {n}")
    await fs.close()


async def bench_s3_client_hop(size: int) -> None:
    """The S3 backend against a loopback endpoint that discards PUTs and streams GETs."""

    async def handle(request: web.Request) -> web.StreamResponse:
        if request.method == "PUT":
            async for _ in request.content.iter_chunked(MIB):
                pass
            return web.Response(headers={"ETag": '"x"'})
        resp = web.StreamResponse(headers={"Content-Length": str(size)})
        await resp.prepare(request)
        piece = b"z" * MIB
        for _ in range(size // MIB):
            await resp.write(piece)
        return resp

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    b = S3Backend(f"http://127.0.0.1:{port}", region="us-east-1", access_key="a", secret_key="b")
    await b.start()
    await measure("s3 put, loopback endpoint (client+server CPU)", size,
                  lambda: b.put_object("b", "k", body(size), size, ObjectMeta()))
    got = await b.get_object("b", "k")
    await measure("s3 get body, loopback endpoint (client+server)", size, lambda: drain(got.body))
    await b.close()
    await runner.cleanup()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-mib", type=int, default=512)
    parser.add_argument("--keys", type=int, default=20_000)
    args = parser.parse_args()
    size = args.size_mib * MIB
    print("| operation                                    | MiB      | MB/s     | CPU-s/GB |")
    print("|----------------------------------------------|----------|----------|---------|")
    with tempfile.TemporaryDirectory() as tmp:
        await bench_s3_client_hop(size)
        await bench_fs(Path(tmp), size, args.keys)


if __name__ == "__main__":
    asyncio.run(main())
