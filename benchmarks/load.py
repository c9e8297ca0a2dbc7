"""Load: N concurrent S3 clients (default 64) run a mix of PUT / GET / ranged GET / HEAD / LIST /
multipart across every encryption mode for a bounded time, then every object written is read back
and checked. Reports throughput, p50 / p99 latency per operation, errors (target 0) and the
proxy's peak RSS and CPU seconds. Exit status 1 if any operation or verification failed.

    python benchmarks/load.py                      # 64 clients, 20 s, a fresh proxy on the fs backend
    python benchmarks/load.py --clients 128 --duration 60
    python benchmarks/load.py --backend-url http://127.0.0.1:9000   # the proxy in front of any S3 (backend=s3)

The proxy runs as its own process (`python -m s3proxy serve`) so its RSS and CPU are its own.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import boto3
import psutil
from botocore.config import Config

ROOT = Path(__file__).resolve().parent.parent
ACCESS_KEY, SECRET_KEY, REGION = "AKIALOADTEST00000001", "load-test-secret-key-0000000000000000000", "us-east-1"
MIB = 1024 * 1024

# operation -> weight in the mix
MIX = {"put": 30, "get": 22, "range": 15, "head": 10, "list": 15, "multipart": 3, "overwrite": 5}
# object sizes a PUT picks from: around the format's 64 KiB chunk and the store's 256 KiB small-body threshold
SIZES = [0, 1, 1000, 64 * 1024 - 1, 64 * 1024, 64 * 1024 + 1, 200_000, 300_000, 1 * MIB + 17]
MODES = ["AES256", "aws:kms", "aws:kms+bucket-key", "SSE-C"]


@dataclass
class Stored:
    digest: str
    size: int
    mode: str
    sse_c_key: bytes | None


@dataclass
class Results:
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: list[str] = field(default_factory=list)
    bytes_moved: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, op: str, seconds: float, nbytes: int = 0) -> None:
        with self.lock:
            self.latencies[op].append(seconds)
            self.bytes_moved += nbytes

    def fail(self, what: str) -> None:
        with self.lock:
            self.errors.append(what)


def start_proxy(data_dir: Path, backend_url: str | None) -> tuple[subprocess.Popen, str]:
    cmd = [sys.executable, "-u", "-m", "s3proxy", "serve", "--port", "0", "--data-dir", str(data_dir),
           "--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY, "--log-level", "warning"]
    if backend_url:
        cmd += ["--backend", "s3", "--backend-url", backend_url, "--backend-access-key", os.environ.get("BACKEND_ACCESS_KEY", "backend"),
                "--backend-secret-key", os.environ.get("BACKEND_SECRET_KEY", "backend")]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
    assert proc.stdout is not None
    line = proc.stdout.readline().decode()
    m = re.search(r"listening on (http://\S+)", line)
    if m is None:
        proc.kill()
        raise SystemExit(f"proxy did not start: {line!r}")
    return proc, m.group(1)


def client(url: str, pool: int = 4):
    return boto3.client("s3", endpoint_url=url, aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY,
                        region_name=REGION, config=Config(s3={"addressing_style": "path"}, max_pool_connections=pool,
                                                          retries={"total_max_attempts": 1}, read_timeout=120))


def sse_args(mode: str, key: bytes | None) -> dict:
    if mode == "SSE-C":
        assert key is not None
        return {"SSECustomerAlgorithm": "AES256", "SSECustomerKey": key}
    return {}


class Worker:
    def __init__(self, n: int, url: str, buckets: dict[str, str], results: Results, deadline: float, seed: int) -> None:
        self.n, self.s3, self.buckets, self.results, self.deadline = n, client(url), buckets, results, deadline
        self.rng = random.Random(seed)
        self.objects: dict[tuple[str, str], Stored] = {}
        self.count = 0

    def body(self, size: int) -> bytes:
        return self.rng.randbytes(size)

    def new_key(self) -> str:
        self.count += 1
        return f"w{self.n:03d}/o{self.count:06d}"

    def run(self) -> None:
        ops, weights = zip(*MIX.items())
        while time.monotonic() < self.deadline:
            op = self.rng.choices(ops, weights)[0]
            if op in ("get", "range", "head", "overwrite") and not self.objects:
                op = "put"
            started = time.perf_counter()
            try:
                moved = getattr(self, "op_" + op)()
            except Exception as exc:  # noqa: BLE001 - every failure is counted and reported
                self.results.fail(f"{op}: {type(exc).__name__}: {exc}"[:300])
                continue
            self.results.record(op, time.perf_counter() - started, moved)

    def _put(self, mode: str, key: str, data: bytes, sse_key: bytes | None) -> None:
        self.s3.put_object(Bucket=self.buckets[mode], Key=key, Body=data, **sse_args(mode, sse_key))
        self.objects[(mode, key)] = Stored(hashlib.sha256(data).hexdigest(), len(data), mode, sse_key)

    def op_put(self) -> int:
        mode = self.rng.choice(MODES)
        data = self.body(self.rng.choice(SIZES))
        self._put(mode, self.new_key(), data, os.urandom(32) if mode == "SSE-C" else None)
        return len(data)

    def op_overwrite(self) -> int:
        (mode, key), old = self.rng.choice(list(self.objects.items()))
        data = self.body(self.rng.choice(SIZES))
        self._put(mode, key, data, old.sse_c_key)
        return len(data)

    def op_get(self) -> int:
        (mode, key), obj = self.rng.choice(list(self.objects.items()))
        data = self.s3.get_object(Bucket=self.buckets[mode], Key=key, **sse_args(mode, obj.sse_c_key))["Body"].read()
        if hashlib.sha256(data).hexdigest() != obj.digest:
            raise AssertionError(f"GET {mode} {key}: content differs")
        return len(data)

    def op_range(self) -> int:
        candidates = [(k, o) for k, o in self.objects.items() if o.size > 1]
        if not candidates:
            return self.op_put()
        (mode, key), obj = self.rng.choice(candidates)
        first = self.rng.randrange(obj.size)
        last = min(obj.size - 1, first + self.rng.randrange(1, 200_000))
        resp = self.s3.get_object(Bucket=self.buckets[mode], Key=key, Range=f"bytes={first}-{last}", **sse_args(mode, obj.sse_c_key))
        data = resp["Body"].read()
        if len(data) != last - first + 1 or resp["ContentRange"] != f"bytes {first}-{last}/{obj.size}":
            raise AssertionError(f"range {first}-{last} of {mode} {key}: got {len(data)} bytes, {resp['ContentRange']}")
        return len(data)

    def op_head(self) -> int:
        (mode, key), obj = self.rng.choice(list(self.objects.items()))
        size = self.s3.head_object(Bucket=self.buckets[mode], Key=key, **sse_args(mode, obj.sse_c_key))["ContentLength"]
        if size != obj.size:
            raise AssertionError(f"HEAD {mode} {key}: {size} != {obj.size}")
        return 0

    def op_list(self) -> int:
        mode = self.rng.choice(MODES)
        self.s3.list_objects_v2(Bucket=self.buckets[mode], Prefix=f"w{self.n:03d}/", MaxKeys=100)
        return 0

    def op_multipart(self) -> int:
        mode = self.rng.choice(MODES)
        sse_key = os.urandom(32) if mode == "SSE-C" else None
        key, bucket, extra = self.new_key(), self.buckets[mode], sse_args(mode, sse_key)
        parts = [self.body(5 * MIB), self.body(self.rng.choice([1, 70_000]))]  # S3: all but the last >= 5 MiB
        upload = self.s3.create_multipart_upload(Bucket=bucket, Key=key, **extra)["UploadId"]
        etags = [self.s3.upload_part(Bucket=bucket, Key=key, UploadId=upload, PartNumber=i + 1, Body=p, **extra)["ETag"]
                 for i, p in enumerate(parts)]
        self.s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload, MultipartUpload={
            "Parts": [{"PartNumber": i + 1, "ETag": e} for i, e in enumerate(etags)]}, **extra)
        data = b"".join(parts)
        self.objects[(mode, key)] = Stored(hashlib.sha256(data).hexdigest(), len(data), mode, sse_key)
        return len(data)

    def verify(self) -> int:
        bad = 0
        for (mode, key), obj in self.objects.items():
            try:
                data = self.s3.get_object(Bucket=self.buckets[mode], Key=key, **sse_args(mode, obj.sse_c_key))["Body"].read()
                ok = hashlib.sha256(data).hexdigest() == obj.digest
            except Exception as exc:  # noqa: BLE001
                ok = False
                self.results.fail(f"verify {mode} {key}: {type(exc).__name__}: {exc}"[:300])
            if not ok:
                bad += 1
                self.results.fail(f"verify {mode} {key}: content differs")
        return bad


class RssSampler(threading.Thread):
    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.proc = psutil.Process(pid)
        self.peak = 0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            try:
                self.peak = max(self.peak, self.proc.memory_info().rss)
            except psutil.Error:
                return
            self.done.wait(0.1)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of load before verification")
    parser.add_argument("--backend-url", help="run the proxy with backend=s3 in front of this S3 endpoint")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", help="also write the summary as JSON to this file")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="s3proxy-load-") as tmp:
        proc, url = start_proxy(Path(tmp), args.backend_url)
        sampler = RssSampler(proc.pid)
        sampler.start()
        try:
            admin = client(url)
            suffix = os.urandom(4).hex()
            buckets = {mode: f"load-{i}-{suffix}" for i, mode in enumerate(MODES)}
            for mode, bucket in buckets.items():
                admin.create_bucket(Bucket=bucket)
                if mode.startswith("aws:kms"):
                    admin.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration={"Rules": [{
                        "ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms"},
                        "BucketKeyEnabled": mode.endswith("bucket-key")}]})
            results = Results()
            cpu_before = psutil.Process(proc.pid).cpu_times()
            workers = [Worker(i, url, buckets, results, 0.0, args.seed * 1000 + i) for i in range(args.clients)]
            deadline = time.monotonic() + args.duration
            for w in workers:
                w.deadline = deadline
            threads = [threading.Thread(target=w.run) for w in workers]
            started = time.monotonic()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            elapsed = time.monotonic() - started
            cpu_after = psutil.Process(proc.pid).cpu_times()
            load_errors = len(results.errors)
            objects = sum(len(w.objects) for w in workers)
            bad = sum(w.verify() for w in workers)
        finally:
            sampler.done.set()
            proc.terminate()
            proc.wait(30)

    ops = sum(len(v) for v in results.latencies.values())
    cpu = (cpu_after.user - cpu_before.user) + (cpu_after.system - cpu_before.system)
    print(f"s3proxy load: {args.clients} clients, {elapsed:.1f} s, backend {args.backend_url or 'fs'}, modes {', '.join(MODES)}")
    print(f"{'op':<10} {'count':>7} {'p50 ms':>8} {'p99 ms':>8}")
    for op in MIX:
        lat = results.latencies.get(op, [])
        print(f"{op:<10} {len(lat):>7} {percentile(lat, 0.5) * 1000:>8.1f} {percentile(lat, 0.99) * 1000:>8.1f}")
    every = [x for v in results.latencies.values() for x in v]
    print(f"{'all':<10} {ops:>7} {percentile(every, 0.5) * 1000:>8.1f} {percentile(every, 0.99) * 1000:>8.1f}")
    print(f"throughput: {ops / elapsed:.0f} ops/s, {results.bytes_moved / elapsed / MIB:.1f} MiB/s of payload")
    print(f"proxy: peak RSS {sampler.peak / MIB:.0f} MiB, {cpu:.1f} CPU-s ({cpu / max(results.bytes_moved / 1024**3, 1e-9):.1f} CPU-s per GiB moved)")
    print(f"errors during load: {load_errors}; objects verified: {objects}, bad: {bad}")
    for line in results.errors[:20]:
        print("  " + line)
    if args.json:
        summary = {
            "clients": args.clients, "seconds": elapsed, "backend": args.backend_url or "fs", "modes": list(MODES),
            "ops": ops, "ops_per_s": ops / elapsed, "payload_mib_s": results.bytes_moved / elapsed / MIB,
            "latency_ms": {
                op: {"count": len(lat), "p50": percentile(lat, 0.5) * 1000, "p99": percentile(lat, 0.99) * 1000}
                for op, lat in [*((op, results.latencies.get(op, [])) for op in MIX), ("all", every)]
            },
            "peak_rss_mib": sampler.peak / MIB, "cpu_s_per_gib": cpu / max(results.bytes_moved / 1024**3, 1e-9),
            "errors": load_errors, "objects_verified": objects, "bad": bad,
        }
        Path(args.json).write_text(json.dumps(summary, indent=2))
    return 1 if results.errors else 0


if __name__ == "__main__":
    sys.exit(main())
