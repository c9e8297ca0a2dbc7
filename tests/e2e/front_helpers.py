"""Helpers for the front-door tests: AWS error codes from boto3, hand-signed raw HTTP requests
(botocore's own SigV4 signer, sent with http.client or a bare socket) and `s3proxy serve` as a
subprocess whose printed URL and peak memory the tests read."""

from __future__ import annotations

import datetime as dt
import http.client
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import boto3
import pytest
from botocore.auth import SIGV4_TIMESTAMP, S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from .conftest import ACCESS_KEY, REGION, SECRET_KEY


def shift_signing_clock(monkeypatch: pytest.MonkeyPatch, delta: dt.timedelta) -> None:
    """Make botocore sign as if its clock were off by `delta` (both its Python and its CRT signer
    read the time through get_current_datetime; the CRT one is used when awscrt is installed)."""
    import botocore.crt.auth
    import botocore.utils

    real = botocore.utils.get_current_datetime

    def shifted(remove_tzinfo: bool = True) -> dt.datetime:
        return real(remove_tzinfo) + delta

    monkeypatch.setattr(botocore.auth, "get_current_datetime", shifted)
    monkeypatch.setattr(botocore.crt.auth, "get_current_datetime", shifted)


def error_of(excinfo: pytest.ExceptionInfo[ClientError] | ClientError) -> tuple[str, int]:
    """(AWS error code, HTTP status) of a boto3 ClientError."""
    exc = excinfo.value if isinstance(excinfo, pytest.ExceptionInfo) else excinfo
    return exc.response["Error"]["Code"], exc.response["ResponseMetadata"]["HTTPStatusCode"]


def expect_error(code: str, status: int, fn, *args, **kwargs) -> ClientError:
    """Call fn and check it fails with exactly AWS's (code, status)."""
    with pytest.raises(ClientError) as excinfo:
        fn(*args, **kwargs)
    assert error_of(excinfo) == (code, status), excinfo.value.response
    return excinfo.value


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def code(self) -> str | None:
        """The <Code> of an S3 XML error document, None for anything else."""
        if not self.body.lstrip().startswith(b"<"):
            return None
        node = ET.fromstring(self.body).find("Code")
        return None if node is None else node.text


class _Signer(S3SigV4Auth):
    """botocore's S3 SigV4 signer with a chosen payload hash and a chosen clock."""

    def __init__(self, credentials: Credentials, payload_hash: str, when: dt.datetime) -> None:
        super().__init__(credentials, "s3", REGION)
        self._payload_hash = payload_hash
        self._when = when

    def payload(self, request):  # noqa: D102 - the hash the test wants signed
        return self._payload_hash

    def add_auth(self, request):  # same steps as SigV4Auth.add_auth, with our clock
        request.context["timestamp"] = self._when.strftime(SIGV4_TIMESTAMP)
        self._modify_request_before_signing(request)
        canonical = self.canonical_request(request)
        signature = self.signature(self.string_to_sign(request, canonical), request)
        self._inject_signature_to_request(request, signature)


def signed_headers(
    url: str,
    method: str,
    path: str,
    *,
    payload_hash: str = "UNSIGNED-PAYLOAD",
    headers: dict[str, str] | None = None,
    access_key: str = ACCESS_KEY,
    secret_key: str = SECRET_KEY,
    when: dt.datetime | None = None,
) -> dict[str, str]:
    """Headers (Authorization, X-Amz-Date, X-Amz-Content-SHA256 + yours) signing `method path` for `url`."""
    when = when or dt.datetime.now(dt.UTC)
    request = AWSRequest(method=method, url=url + path, headers=dict(headers or {}))
    request.headers["Host"] = urllib.parse.urlsplit(url).netloc
    _Signer(Credentials(access_key, secret_key), payload_hash, when).add_auth(request)
    return dict(request.headers.items())


def seed_signature(headers: dict[str, str]) -> str:
    return re.search(r"Signature=([0-9a-f]{64})", headers["Authorization"]).group(1)


def send(url: str, method: str, path: str, headers: dict[str, str], body=None, *, chunked: bool = False) -> RawResponse:
    """One request over http.client, exactly the headers given (no Content-Length added unless given)."""
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    try:
        conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        for name, value in headers.items():
            conn.putheader(name, value)
        if chunked:
            conn.putheader("Transfer-Encoding", "chunked")
        conn.endheaders()
        if chunked:
            for piece in body:
                conn.send(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
            conn.send(b"0\r\n\r\n")
        elif body:
            conn.send(body)
        resp = conn.getresponse()
        return RawResponse(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
    finally:
        conn.close()


def send_short_body(url: str, path: str, headers: dict[str, str], body: bytes, timeout: float = 30) -> RawResponse:
    """Send headers and a body shorter than the Content-Length they declare, half-close, read the answer."""
    parts = urllib.parse.urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=timeout) as sock:
        head = f"PUT {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
        sock.sendall(head.encode() + body)
        sock.shutdown(socket.SHUT_WR)
        data = bytearray()
        while True:
            piece = sock.recv(65536)
            if not piece:
                break
            data += piece
    if not data:
        return RawResponse(0, {}, b"")
    head, _, rest = bytes(data).partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    hdrs = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return RawResponse(status, hdrs, rest)


def client_for(url: str, access_key: str, secret_key: str):
    """A boto3 S3 client for a proxy the test started itself (path style, no retries)."""
    return boto3.client("s3", endpoint_url=url, aws_access_key_id=access_key, aws_secret_access_key=secret_key,
                        region_name=REGION, config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}))


# `s3proxy serve` as a subprocess ----------------------------------------------------------------------


@dataclass
class Served:
    """A running `s3proxy serve`; two threads read its stdout lines and its stderr as they come."""

    proc: subprocess.Popen
    url: str | None = None
    lines: list[str] = field(default_factory=list)
    _queue: queue.Queue = field(default_factory=queue.Queue)
    _stderr: list[str] = field(default_factory=list)
    _readers: list[threading.Thread] = field(default_factory=list)

    def wait_line(self, pattern: str, timeout: float = 60) -> re.Match | None:
        """The first (new or already read) stdout line matching `pattern`; None at EOF or timeout."""
        for line in self.lines:
            if m := re.search(pattern, line):
                return m
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self._queue.get(timeout=left)
            except queue.Empty:
                return None
            if line is None:
                return None
            self.lines.append(line)
            if m := re.search(pattern, line):
                return m
        return None

    def peak_rss(self) -> int:
        """VmHWM: the process's peak resident set size, in bytes (Linux /proc)."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
        raise AssertionError("no VmHWM in /proc status")

    def stop(self, *, signalled: bool = False) -> tuple[int, str]:
        """SIGTERM (unless the test `signalled` it already: a second one could land while it exits), wait;
        (exit status, stderr)."""
        if self.proc.poll() is None and not signalled:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        for reader in self._readers:  # the pipes are theirs (communicate() here would close stdout under the pump)
            reader.join(10)
        return self.proc.returncode, "".join(self._stderr)


def serve_args(data_dir: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "s3proxy", "serve", "--host", "127.0.0.1", "--port", "0", "--data-dir", str(data_dir), *extra]


def start_served(args: list[str], timeout: float = 60) -> Served:
    """Start `s3proxy serve` (unbuffered) and wait for its 'listening on URL' line."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
    served = Served(proc)

    def pump() -> None:
        with proc.stdout:
            for line in proc.stdout:
                served._queue.put(line.rstrip("\n"))
        served._queue.put(None)

    def drain() -> None:  # stderr read as it comes, so a chatty process never blocks on a full pipe
        with proc.stderr:
            served._stderr.append(proc.stderr.read())

    served._readers = [threading.Thread(target=pump, daemon=True), threading.Thread(target=drain, daemon=True)]
    for reader in served._readers:
        reader.start()
    match = served.wait_line(r"listening on (\S+)", timeout)
    if match is None:
        code, err = served.stop()
        raise AssertionError(f"s3proxy serve did not announce its URL (exit {code}): {served.lines} {err}")
    served.url = match.group(1)
    return served
