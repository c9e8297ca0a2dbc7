"""Real parts for the hardening tests: a fault-injecting S3 hop, resource counters, a proxy subprocess
that can be SIGKILLed, and a raw SigV4 signer for hand-made (hostile) requests.

Nothing here is a mock: the fault hop is a real aiohttp reverse proxy on loopback in front of the
real moto server, and it misbehaves the way a real backend or network does (drops, 5xx, stalls,
short bodies) on the requests a test selects.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import hmac
import io
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.client import HTTPResponse
from pathlib import Path

import aiohttp
import boto3
from aiohttp import web
from botocore.config import Config
from yarl import URL

from tests.e2e.conftest import ACCESS_KEY, REGION, SECRET_KEY

HOP_BY_HOP = {"host", "content-length", "transfer-encoding", "connection", "keep-alive"}


# --- the fault-injecting backend hop -------------------------------------------------------------


@dataclass
class Fault:
    """What to do to the next `count` requests that match `method` and `path_prefix`.

    kind: "status" (answer `status`/`code` after reading the body), "drop_request" (read `after`
    bytes of the request body, then reset the connection), "drop_response" (send the headers and
    `after` bytes of the real response, then close), "reset_response" (the same, then a TCP reset,
    which may discard the bytes written before it), "short" (the real response cut to `after`
    bytes with a Content-Length that agrees: a clean, lying short body), "stall" (hold the request
    until `release()`), "stall_body" (send headers and `after` bytes, then hold until `release()`).
    """

    kind: str
    method: str | None = None
    path_prefix: str = "/"
    count: int = 1
    status: int = 503
    code: str = "SlowDown"
    after: int = 0
    fired: int = 0


class FaultHop:
    """A reverse proxy in front of an S3 endpoint, in its own thread and event loop."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="fault-hop", daemon=True)
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
        self._released: asyncio.Event | None = None
        self.seen: list[tuple[str, str]] = []
        self.url = ""

    def start(self) -> FaultHop:
        self._thread.start()
        self.url = asyncio.run_coroutine_threadsafe(self._boot(), self.loop).result(30)
        return self

    async def _boot(self) -> str:
        self._session = aiohttp.ClientSession(auto_decompress=False)
        self._released = asyncio.Event()
        app = web.Application(client_max_size=1024**3)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, auto_decompress=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return f"http://127.0.0.1:{port}"

    def stop(self) -> None:
        self.release()

        async def down() -> None:
            await self._runner.cleanup()
            await self._session.close()

        asyncio.run_coroutine_threadsafe(down(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()

    def inject(self, fault: Fault) -> Fault:
        with self._lock:
            self._faults.append(fault)
        asyncio.run_coroutine_threadsafe(self._arm(), self.loop).result(5)
        return fault

    async def _arm(self) -> None:
        assert self._released is not None
        self._released.clear()

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()
        self.release()

    def release(self) -> None:
        if self._released is not None and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self._released.set)

    def _take(self, method: str, path: str) -> Fault | None:
        with self._lock:
            self.seen.append((method, path))
            for fault in self._faults:
                if fault.fired < fault.count and (fault.method in (None, method)) and path.startswith(fault.path_prefix):
                    fault.fired += 1
                    return fault
        return None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        fault = self._take(request.method, request.raw_path)
        assert self._released is not None
        if fault is not None and fault.kind == "drop_request":
            await request.content.readexactly(fault.after)
            request.transport.abort()  # type: ignore[union-attr]
            raise ConnectionResetError("fault: dropped mid request body")
        body = await request.read()
        if fault is not None and fault.kind == "status":
            xml = f"<Error><Code>{fault.code}</Code><Message>fault injected</Message></Error>"
            return web.Response(status=fault.status, body=xml.encode(), content_type="application/xml")
        if fault is not None and fault.kind == "stall":
            await self._released.wait()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        url = URL(self.upstream + request.raw_path, encoded=True)
        async with self._session.request(request.method, url, headers=headers, data=io.BytesIO(body) if body else None,
                                         allow_redirects=False) as up:
            data = await up.read()
        out_headers = {k: v for k, v in up.headers.items() if k.lower() not in HOP_BY_HOP}
        if fault is not None and fault.kind == "short":
            data = data[: fault.after]
        response = web.StreamResponse(status=up.status, headers=out_headers)
        response.content_length = len(data) if request.method != "HEAD" else int(up.headers.get("Content-Length", "0"))
        await response.prepare(request)
        if request.method == "HEAD":
            return response
        if fault is not None and fault.kind in ("drop_response", "reset_response", "stall_body"):
            await response.write(data[: fault.after])
            if fault.kind == "stall_body":
                await self._released.wait()
                await response.write(data[fault.after :])
                await response.write_eof()
                return response
            if fault.kind == "drop_response":
                request.transport.close()  # type: ignore[union-attr]  # FIN after what was written
            else:
                request.transport.abort()  # type: ignore[union-attr]  # RST: may also discard what was written
            raise ConnectionResetError("fault: dropped mid response body")
        await response.write(data)
        await response.write_eof()
        return response


# --- resource accounting ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Resources:
    tasks: int  # asyncio tasks alive in the proxy's event loop
    fds: int  # open file descriptors of this process
    sockets: int  # of which sockets


def count_resources(loop: asyncio.AbstractEventLoop) -> Resources:
    async def tasks() -> int:
        return len(asyncio.all_tasks()) - 1  # not this one

    n_tasks = asyncio.run_coroutine_threadsafe(tasks(), loop).result(10)
    fds = sockets = 0
    for name in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            continue  # closed while listing (the listing's own fd)
        fds += 1
        sockets += target.startswith("socket:")
    return Resources(n_tasks, fds, sockets)


def settle(check: Callable[[], bool], timeout: float = 20.0) -> bool:
    """Poll `check` until it holds or `timeout` passes (not a synchronisation sleep: a bounded wait for quiescence)."""
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)


# --- clients ---------------------------------------------------------------------------------------


def s3_client(url: str, *, attempts: int = 1, read_timeout: float = 60, access_key: str = ACCESS_KEY,
              secret_key: str = SECRET_KEY, **config):
    return boto3.client(
        "s3",
        endpoint_url=url,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        region_name=REGION,
        config=Config(s3={"addressing_style": "path"}, retries={"total_max_attempts": attempts, "mode": "standard"},
                      read_timeout=read_timeout, connect_timeout=10, **config),
    )


def sigv4_headers(method: str, url: str, *, body: bytes = b"", headers: Mapping[str, str] | None = None,
                  access_key: str = ACCESS_KEY, secret_key: str = SECRET_KEY, service: str = "s3",
                  payload_hash: str | None = None, now: dt.datetime | None = None) -> dict[str, str]:
    """Headers of a SigV4-signed request, computed here from the AWS docs so tests can sign hostile
    requests (odd paths, odd headers) that boto3 would refuse to build. `url` is sent as written."""
    parts = urllib.parse.urlsplit(url)
    now = now or dt.datetime.now(dt.UTC)
    amz_date = now.strftime("%Y%m%dT%H%M%SZ")
    scope = f"{amz_date[:8]}/{REGION}/{service}/aws4_request"
    out = {k.lower(): v for k, v in (headers or {}).items()}
    out["host"] = parts.netloc
    out["x-amz-date"] = amz_date
    out["x-amz-content-sha256"] = payload_hash or hashlib.sha256(body).hexdigest()
    signed = sorted(out)
    canonical_uri = "/".join(
        urllib.parse.quote(urllib.parse.unquote_to_bytes(s), safe="") for s in (parts.path or "/").split("/")
    )
    pairs = sorted(
        (
            urllib.parse.quote(urllib.parse.unquote_to_bytes(n), safe=""),
            urllib.parse.quote(urllib.parse.unquote_to_bytes(v), safe=""),
        )
        for n, _, v in (p.partition("=") for p in parts.query.split("&") if p)
    )
    canonical = "\n".join([
        method, canonical_uri, "&".join(f"{n}={v}" for n, v in pairs),
        "".join(f"{h}:{' '.join(out[h].split())}\n" for h in signed), ";".join(signed), out["x-amz-content-sha256"],
    ])
    sts = "\n".join(
        ["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode("utf-8", "surrogateescape")).hexdigest()]
    )
    key = ("AWS4" + secret_key).encode()
    for piece in (amz_date[:8], REGION, service, "aws4_request"):
        key = hmac.new(key, piece.encode(), hashlib.sha256).digest()
    signature = hmac.new(key, sts.encode(), hashlib.sha256).hexdigest()
    out["authorization"] = (
        f"AWS4-HMAC-SHA256 Credential={access_key}/{scope}, SignedHeaders={';'.join(signed)}, Signature={signature}"
    )
    return out


def _latin1(text: str | bytes) -> bytes:
    return text if isinstance(text, bytes) else text.encode("latin-1", "surrogateescape")


def raw_request(url: str, method: str, target: str | bytes, *,
                headers: Mapping[str, str] | list[tuple[str | bytes, str | bytes]] = (),
                body: bytes = b"", timeout: float = 30) -> tuple[int, dict[str, str], bytes]:
    """One request written byte for byte on a fresh socket (any target or header bytes), its response
    parsed by http.client; (status, lower-cased headers, body)."""
    parts = urllib.parse.urlsplit(url)
    items = list(headers.items() if isinstance(headers, Mapping) else headers)
    names = {_latin1(n).lower() for n, _ in items}
    if b"host" not in names:
        items.append(("Host", parts.netloc))
    if b"content-length" not in names and b"transfer-encoding" not in names:
        items.append(("Content-Length", str(len(body))))
    head = _latin1(method) + b" " + _latin1(target) + b" HTTP/1.1\r\n"
    head += b"".join(_latin1(n) + b": " + _latin1(v) + b"\r\n" for n, v in items) + b"\r\n"
    with socket.create_connection((parts.hostname, parts.port), timeout=timeout) as sock:
        try:
            sock.sendall(head + body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server may answer and close before reading everything we send
        resp = HTTPResponse(sock, method=method)
        resp.begin()
        data = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data


def error_code(body: bytes) -> str | None:
    m = re.search(rb"<Code>([^<]*)</Code>", body)
    return m.group(1).decode() if m else None


# --- the proxy as a process, for crash tests -------------------------------------------------------


@dataclass
class ProxyProcess:
    """`python -m s3proxy serve` on a data dir; SIGKILL and restart it at will.

    `log`: a file that receives its stderr (the log; else discarded), at `log_level`; `umask` for the
    process (-1: inherited); `generate_credentials`: start without the test pair, so serve makes one
    (read it with `generated_credentials()`). Everything it prints on stdout is kept in `printed`."""

    data_dir: Path
    extra: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)  # S3PROXY_* settings, on top of this process's environment
    log: Path | None = None
    log_level: str = "warning"
    umask: int = -1
    generate_credentials: bool = False
    proc: subprocess.Popen | None = None
    url: str = ""
    printed: list[str] = field(default_factory=list)

    def start(self) -> ProxyProcess:
        keys = [] if self.generate_credentials else ["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY]
        cmd = [sys.executable, "-u", "-m", "s3proxy", "serve", "--port", "0", "--host", "127.0.0.1",
               "--data-dir", str(self.data_dir), *keys, "--log-level", self.log_level, *self.extra]
        log = open(self.log, "ab") if self.log is not None else subprocess.DEVNULL
        try:
            self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, env={**os.environ, **self.env},
                                         umask=self.umask)
        finally:
            if self.log is not None:
                log.close()  # the child has its own descriptor
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().decode()
        self.printed.append(line)
        m = re.search(r"listening on (http://\S+)", line)
        if m is None:
            self.proc.kill()
            raise AssertionError(f"proxy did not start: {line!r} {self.log_text()[-2000:]!r}")
        self.url = m.group(1)
        # answered only once serve() waits for SIGTERM, i.e. after its signal handlers are installed
        urllib.request.urlopen(self.url + "/healthz", timeout=30).read()
        return self

    def generated_credentials(self) -> tuple[str, str]:
        """The pair a first start without credentials announced."""
        assert self.proc is not None and self.proc.stdout is not None
        for _ in range(4):
            line = self.proc.stdout.readline().decode()
            self.printed.append(line)
            found = re.search(r"AWS_ACCESS_KEY_ID=(\S+) AWS_SECRET_ACCESS_KEY=(\S+)", line)
            if found:
                return found.group(1), found.group(2)
        raise AssertionError(f"no generated credentials announced: {self.printed!r}")

    def log_text(self) -> str:
        return self.log.read_bytes().decode("utf-8", "replace") if self.log is not None and self.log.exists() else ""

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()

    def stop(self) -> int | None:
        """SIGTERM (SIGKILL after 15 s); its exit status."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.proc is not None and self.proc.stdout is not None and not self.proc.stdout.closed:
            self.printed.append(self.proc.stdout.read().decode())
            self.proc.stdout.close()
        return self.proc.returncode if self.proc is not None else None
