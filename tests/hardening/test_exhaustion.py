"""Resource exhaustion over real sockets (issue 14): what an anonymous client can make a running
`s3proxy serve` spend, measured from outside the process under attack.

Each test is the regression test of one attack: unfinished multi-megabyte header blocks (memory),
slow headers and idle keep-alive (connections held), more connections than the limit, a large XML
body parsed while others wait (event-loop stalls), thousands of distinct anonymous X-Amz-Target
values and paths (metrics label growth), and /readyz spam (backend calls). New limits are set
through S3PROXY_* environment variables, so the same tests run against a proxy that predates them.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import re
import socket
import threading
import time
import urllib.parse
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Iterator

import psutil
import pytest

from .harness import ProxyProcess, error_code, raw_request, s3_client, sigv4_headers

MiB = 1 << 20


@contextmanager
def serving(tmp_path, *extra: str, **env: str) -> Iterator[ProxyProcess]:
    """`python -m s3proxy serve` on the fs backend (unless `extra` says otherwise), settings from `env`."""
    proxy = ProxyProcess(tmp_path / f"data-{uuid.uuid4().hex[:8]}", list(extra),
                         {f"S3PROXY_{k.upper()}": v for k, v in env.items()}).start()
    try:
        yield proxy
    finally:
        proxy.stop()


def _hostport(url: str) -> tuple[str, int]:
    parts = urllib.parse.urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or 80


def _get(url: str, path: str, timeout: float = 10) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url + path, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


class RssPeak:
    """The peak resident set size of a process, sampled every 20 ms from a thread."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.peak = self.process.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, self.process.memory_info().rss)

    def __enter__(self) -> "RssPeak":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(5)
        self.peak = max(self.peak, self.process.memory_info().rss)


# --- memory: header blocks that never end ----------------------------------------------------------


def _unfinished_header_block() -> bytes:
    """A request line and 256 header fields of 16,000 bytes (~4 MB), without the blank line that ends them."""
    pad = b"a" * 16_000
    return b"GET /healthz HTTP/1.1\r\nHost: proxy\r\n" + b"".join(b"X-Pad-%03d: %s\r\n" % (i, pad) for i in range(256))


@pytest.mark.slow
def test_unfinished_4mb_header_blocks_on_100_connections_grow_rss_by_less_than_200_mib(tmp_path):
    block = _unfinished_header_block()
    assert len(block) > 4_000_000
    with serving(tmp_path) as proxy:
        assert _get(proxy.url, "/healthz")[0] == 200
        before = psutil.Process(proxy.proc.pid).memory_info().rss
        host, port = _hostport(proxy.url)
        sockets: list[socket.socket] = []

        def attack(_: int) -> None:
            sock = socket.create_connection((host, port), timeout=20)
            sockets.append(sock)
            try:
                sock.sendall(block)  # and never the final CRLF
            except OSError:
                pass  # refused and closed: what a bounded server does

        with RssPeak(proxy.proc.pid) as rss, ThreadPoolExecutor(10) as pool:
            list(pool.map(attack, range(100)))
            time.sleep(0.5)  # the server has everything; let it settle while the connections stay open
        growth = rss.peak - before
        print(f"RSS before {before / MiB:.1f} MiB, peak {rss.peak / MiB:.1f} MiB, growth {growth / MiB:.1f} MiB")
        for sock in sockets:
            sock.close()
        assert growth < 200 * MiB, f"RSS grew {growth / MiB:.0f} MiB under 100 unfinished 4 MB header blocks"
        assert _get(proxy.url, "/healthz")[0] == 200


def test_a_header_section_over_the_limit_is_answered_400_request_header_section_too_large(tmp_path):
    with serving(tmp_path, max_header_bytes="16384") as proxy:
        headers = [(f"X-Pad-{i}", "b" * 4000) for i in range(5)]  # 20 KB: each field well under any per-field limit
        status, response_headers, body = raw_request(proxy.url, "GET", "/healthz", headers=headers)
        assert status == 400, (status, body[:300])
        assert error_code(body) == "RequestHeaderSectionTooLarge"
        assert b"<Message>Your request header section exceeds the maximum allowed size.</Message>" in body
        assert b"<MaxSizeAllowed>16384</MaxSizeAllowed>" in body
        assert response_headers.get("connection") == "close"
        status, metrics = _get(proxy.url, "/metrics")
        assert b's3proxy_connections_refused_total{reason="header_bytes"} 1.0' in metrics


def test_legitimate_large_requests_fit_the_default_header_limit(tmp_path):
    """A 1,024-byte UTF-8 key percent-encoded in the path and again in x-amz-copy-source, with 2 KB
    of user metadata; and a presigned URL for that key."""
    with serving(tmp_path) as proxy:
        s3 = s3_client(proxy.url)
        bucket = f"big-{uuid.uuid4().hex[:12]}"
        s3.create_bucket(Bucket=bucket)
        key = "é" * 200 + "/" + "ü" * 200 + "/" + "ß" * 111  # 1,024 bytes of UTF-8, 3,072 characters percent-encoded
        assert len(key.encode()) == 1024
        s3.put_object(Bucket=bucket, Key=key, Body=b"payload")
        metadata = {f"m{i:02d}": "v" * 60 for i in range(32)}  # 32 x (3 + 60) = 2,016 bytes
        copy = "dd" + key[1:]  # 1,024 bytes too
        s3.copy_object(Bucket=bucket, Key=copy, CopySource={"Bucket": bucket, "Key": key},
                       Metadata=metadata, MetadataDirective="REPLACE")
        assert s3.head_object(Bucket=bucket, Key=copy)["Metadata"] == metadata
        url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": copy}, ExpiresIn=600)
        assert len(url) > 3000
        assert urllib.request.urlopen(url, timeout=10).read() == b"payload"


def _head_of_size(size: int) -> bytes:
    """GET /healthz whose request line and headers, blank line included, are exactly `size` bytes."""
    start, end = b"GET /healthz HTTP/1.1\r\nHost: proxy\r\nX-Pad: ", b"\r\n\r\n"
    return start + b"p" * (size - len(start) - len(end)) + end


class _Responses:
    """Responses read one after another from one socket (pipelining), without closing it in between."""

    def __init__(self, sock: socket.socket) -> None:
        self._file = sock.makefile("rb")
        self._close, self._file.close = self._file.close, lambda: None  # http.client closes its file after each body
        self._sock = type("Sock", (), {"makefile": lambda *_a, **_k: self._file})()

    def next(self) -> tuple[int, bytes]:
        response = http.client.HTTPResponse(self._sock, method="GET")  # type: ignore[arg-type]
        response.begin()
        return response.status, response.read()

    def __enter__(self) -> "_Responses":
        return self

    def __exit__(self, *exc) -> None:
        self._close()


def test_the_header_limit_counts_the_request_line_and_headers_exactly(tmp_path):
    with serving(tmp_path, max_header_bytes="4096") as proxy:
        for size, expected in ((4096, 200), (4097, 400)):
            with socket.create_connection(_hostport(proxy.url), timeout=10) as sock:
                sock.sendall(_head_of_size(size))
                with _Responses(sock) as responses:
                    status, body = responses.next()
                assert status == expected, (size, status, body[:200])


def test_bodies_are_not_counted_as_headers_on_a_pipelined_connection(tmp_path):
    """Content-Length and chunked bodies far larger than the header limit, containing CRLF CRLF,
    pipelined with other requests in one write: each request is answered, in order."""
    with serving(tmp_path, max_header_bytes="4096") as proxy:
        bucket = f"p-{uuid.uuid4().hex[:12]}"
        s3_client(proxy.url).create_bucket(Bucket=bucket)
        body = (b"line\r\n\r\n" + bytes(range(256))) * 4000  # ~1 MB: past aiohttp's flow-control marks
        put = f"/{bucket}/piped"
        signed = sigv4_headers("PUT", proxy.url + put, body=body)
        wire = b""
        for chunked in (False, True):
            head = f"PUT {put} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in signed.items())
            if chunked:
                framed = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + 5000]), body[i:i + 5000]) for i in range(0, len(body), 5000))
                wire += (head + "Transfer-Encoding: chunked\r\n\r\n").encode() + framed + b"0\r\n\r\n"
            else:
                wire += (head + f"Content-Length: {len(body)}\r\n\r\n").encode() + body
            wire += _head_of_size(4000)
        with socket.create_connection(_hostport(proxy.url), timeout=20) as sock:
            sock.sendall(wire)
            with _Responses(sock) as responses:
                answers = [responses.next() for _ in range(4)]
        # S3 takes no chunked transfer coding: 411 MissingContentLength, its body read and dropped
        assert [status for status, _ in answers] == [200, 200, 411, 200], [(s, b[:200]) for s, b in answers]
        assert error_code(answers[2][1]) == "MissingContentLength"
        assert s3_client(proxy.url).get_object(Bucket=bucket, Key="piped")["Body"].read() == body


def test_more_pipelined_requests_than_aiohttp_queues_are_all_answered(tmp_path):
    """aiohttp parses at most 32 queued requests, then resumes as they are served: 80 in one write."""
    with serving(tmp_path, max_header_bytes="4096") as proxy:
        with socket.create_connection(_hostport(proxy.url), timeout=20) as sock:
            sock.sendall(_head_of_size(3000) * 80)
            with _Responses(sock) as responses:
                assert [responses.next()[0] for _ in range(80)] == [200] * 80


# --- connections held: slow headers, idle keep-alive, too many --------------------------------------


def _metrics_via(conn: http.client.HTTPConnection) -> bytes:
    conn.request("GET", "/metrics")
    return conn.getresponse().read()


def _closed_after(sock: socket.socket, dribble: bytes | None, limit: float) -> float | None:
    """Seconds until the server closes `sock` (None if still open after `limit`); sends `dribble`
    one byte per 0.25 s meanwhile when given (a slowloris client)."""
    started = time.monotonic()
    sock.settimeout(0.25)
    sent = 0
    while time.monotonic() - started < limit:
        try:
            if dribble is not None and sent < len(dribble):
                sock.send(dribble[sent:sent + 1])
                sent += 1
            data = sock.recv(65536)
            if data == b"" or b"HTTP/1.1 " in data:  # closed, or answered (then closed)
                return time.monotonic() - started
        except socket.timeout:
            continue
        except OSError:
            return time.monotonic() - started
    return None


def test_a_slow_header_connection_is_closed_after_the_header_timeout(tmp_path):
    with serving(tmp_path, header_timeout="1.5", idle_timeout="30") as proxy:
        with socket.create_connection(_hostport(proxy.url), timeout=10) as sock:
            elapsed = _closed_after(sock, b"GET /healthz HTTP/1.1\r\nHost: proxy\r\n" + b"X-Slow: " + b"z" * 200, limit=8)
        assert elapsed is not None, "a slowloris connection was still open after 8 s"
        assert 1.0 <= elapsed < 5, elapsed
        assert _get(proxy.url, "/healthz")[0] == 200


def test_an_idle_keep_alive_connection_is_closed_after_the_idle_timeout(tmp_path):
    with serving(tmp_path, idle_timeout="1.5") as proxy:
        conn = http.client.HTTPConnection(*_hostport(proxy.url), timeout=10)
        conn.request("GET", "/healthz")
        response = conn.getresponse()
        assert response.status == 200 and response.read()
        assert response.getheader("Connection", "keep-alive").lower() != "close"
        elapsed = _closed_after(conn.sock, None, limit=8)
        conn.close()
        assert elapsed is not None, "an idle keep-alive connection was still open after 8 s"
        assert 1.0 <= elapsed < 5, elapsed


def test_connections_over_the_limit_are_refused_with_503_slowdown_and_a_freed_slot_is_reused(tmp_path):
    with serving(tmp_path, max_connections="8") as proxy:
        held = []
        for _ in range(8):  # eight kept-alive connections, each proven accepted by one answered request
            conn = http.client.HTTPConnection(*_hostport(proxy.url), timeout=10)
            conn.request("GET", "/healthz")
            assert conn.getresponse().read()
            held.append(conn)
        status, headers, body = raw_request(proxy.url, "GET", "/healthz", timeout=10)
        assert status == 503, (status, body[:200])
        assert error_code(body) == "SlowDown"
        assert headers.get("connection") == "close"
        assert "x-amz-request-id" in headers
        held.pop().close()
        assert b's3proxy_connections_refused_total{reason="connections"} 1.0' in _metrics_via(held[0])
        deadline = time.monotonic() + 10
        while raw_request(proxy.url, "GET", "/healthz", timeout=10)[0] != 200:
            assert time.monotonic() < deadline, "a freed connection slot was never reused"
            time.sleep(0.05)
        for conn in held:
            conn.close()


def _second_line(proxy: ProxyProcess, timeout: float = 10) -> str:
    """The next line the proxy prints (after 'listening on ...'), or '' when none comes in `timeout`."""
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.append(proxy.proc.stdout.readline().decode()), daemon=True)
    reader.start()
    reader.join(timeout)
    return lines[0] if lines else ""


def test_metrics_listen_serves_metrics_on_its_own_address_and_not_on_the_main_port(tmp_path):
    with serving(tmp_path, metrics_listen="127.0.0.1:0") as proxy:
        match = re.search(r"on (http://\S+)/metrics", _second_line(proxy))
        assert match, "no separate metrics listener announced"
        ops_url = match.group(1)
        status, body = _get(ops_url, "/metrics")
        assert status == 200 and b"s3proxy_requests_total" in body
        assert _get(ops_url, "/healthz")[0] == 200 and _get(ops_url, "/readyz")[0] == 200
        status, body = _get(proxy.url, "/metrics")  # now just an anonymous S3 request for bucket "metrics"
        assert status == 403 and error_code(body) == "AccessDenied"  # refused before any lookup: no bucket policy grants it
        assert _get(proxy.url, "/healthz")[0] == 200 and _get(proxy.url, "/readyz")[0] == 200


# --- the event loop: XML bodies --------------------------------------------------------------------


def _signed_post(url: str, path: str, body: bytes, extra: dict[str, str] | None = None) -> tuple[int, bytes]:
    headers = sigv4_headers("POST", url + path, body=body, headers=extra)
    conn = http.client.HTTPConnection(*_hostport(url), timeout=60)
    try:
        conn.request("POST", path, body=body, headers=headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def _healthz_latencies_during(url: str, action) -> tuple[list[float], object]:
    """Latencies of /healthz, asked back to back on one kept-alive connection while `action()` runs."""
    latencies: list[float] = []
    done = threading.Event()

    def poll() -> None:
        conn = http.client.HTTPConnection(*_hostport(url), timeout=30)
        while not done.is_set():
            started = time.monotonic()
            conn.request("GET", "/healthz")
            conn.getresponse().read()
            latencies.append(time.monotonic() - started)
            time.sleep(0.01)
        conn.close()

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    time.sleep(0.2)
    try:
        result = action()
    finally:
        done.set()
        poller.join(30)
    return latencies, result


def test_a_4_mib_delete_objects_body_does_not_stall_healthz(tmp_path):
    with serving(tmp_path) as proxy:
        bucket = f"x-{uuid.uuid4().hex[:12]}"
        s3_client(proxy.url).create_bucket(Bucket=bucket)
        item = b"<Object><Key>k</Key></Object>"
        body = b"<Delete>" + item * ((4 * MiB - 64) // len(item)) + b"</Delete>"
        md5 = base64.b64encode(hashlib.md5(body).digest()).decode()
        latencies, (status, answer) = _healthz_latencies_during(
            proxy.url, lambda: _signed_post(proxy.url, f"/{bucket}?delete", body, {"content-md5": md5}))
        print(f"DeleteObjects of {len(body)} bytes: status {status}; /healthz max {max(latencies) * 1000:.0f} ms over {len(latencies)}")
        assert status == 400 and error_code(answer) == "MalformedXML"  # over 1,000 keys, as S3 answers
        assert max(latencies) < 0.3, f"/healthz waited {max(latencies):.2f} s behind one XML body"


def test_a_4_mib_complete_multipart_upload_body_is_parsed_without_stalling_healthz(tmp_path):
    """10,000 parts with every checksum element, about 4 MiB: a document the limits accept."""
    with serving(tmp_path) as proxy:
        s3 = s3_client(proxy.url)
        bucket = f"x-{uuid.uuid4().hex[:12]}"
        s3.create_bucket(Bucket=bucket)
        upload_id = s3.create_multipart_upload(Bucket=bucket, Key="big")["UploadId"]
        part = ("<Part><PartNumber>{n}</PartNumber><ETag>\"{etag}\"</ETag><ChecksumCRC32>AAAAAA==</ChecksumCRC32>"
                "<ChecksumCRC32C>AAAAAA==</ChecksumCRC32C><ChecksumSHA1>{sha1}</ChecksumSHA1>"
                "<ChecksumSHA256>{sha256}</ChecksumSHA256></Part>")
        fill = (4 * MiB - 8192) // 10_000 - len(part.format(n=10000, etag="", sha1="", sha256=""))
        body = ('<CompleteMultipartUpload xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
                + "".join(part.format(n=n, etag="e" * (fill - 72), sha1="s" * 28, sha256="h" * 44) for n in range(1, 10_001))
                + "</CompleteMultipartUpload>").encode()
        assert 4 * MiB - 32768 < len(body) <= 4 * MiB
        latencies, (status, answer) = _healthz_latencies_during(
            proxy.url, lambda: _signed_post(proxy.url, f"/{bucket}/big?uploadId={upload_id}", body))
        print(f"Complete of {len(body)} bytes: status {status}; /healthz max {max(latencies) * 1000:.0f} ms over {len(latencies)}")
        assert status == 400 and error_code(answer) == "InvalidPart", answer[:300]  # parsed whole; no such parts
        assert max(latencies) < 0.3, f"/healthz waited {max(latencies):.2f} s behind one XML body"


# --- state anonymous requests leave: metrics labels, readiness probes --------------------------------


def _anonymous_requests(url: str, count: int) -> None:
    """`count` anonymous requests, half with a distinct X-Amz-Target, half to a distinct path."""
    def batch(start: int) -> None:
        conn = http.client.HTTPConnection(*_hostport(url), timeout=30)
        for i in range(start, min(start + 250, count)):
            if i % 2:
                conn.request("POST", "/", body=b"{}", headers={"X-Amz-Target": f"TrentService.Bogus{i:05d}",
                                                                 "Content-Type": "application/x-amz-json-1.1"})
            else:
                conn.request("GET", f"/bogus{i:05d}/k{i}?x-id=Bogus{i:05d}")
            conn.getresponse().read()
        conn.close()

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(batch, range(0, count, 250)))


@pytest.mark.slow
def test_5000_distinct_anonymous_targets_leave_metrics_unchanged_within_1_mb(tmp_path):
    with serving(tmp_path) as proxy:
        status, before = _get(proxy.url, "/metrics")
        assert status == 200
        _anonymous_requests(proxy.url, 5000)
        status, after = _get(proxy.url, "/metrics")
        assert status == 200
        print(f"/metrics {len(before)} bytes before, {len(after)} bytes after 5,000 anonymous targets")
        assert b"Bogus" not in after and b"bogus" not in after, "a label value came from an anonymous request"
        assert len(after) - len(before) < 1_000_000


def test_readyz_spam_makes_no_backend_calls(tmp_path, hop_clean):
    hop = hop_clean
    with serving(tmp_path, "--backend", "s3", "--backend-url", hop.url, "--backend-access-key", "backend",
                 "--backend-secret-key", "backend", ready_interval="60") as proxy:
        deadline = time.monotonic() + 20
        while _get(proxy.url, "/readyz")[0] != 200:  # the first probe has answered
            assert time.monotonic() < deadline, "never ready"
            time.sleep(0.1)
        seen = len(hop.seen)
        conn = http.client.HTTPConnection(*_hostport(proxy.url), timeout=10)
        for _ in range(200):
            conn.request("GET", "/readyz")
            response = conn.getresponse()
            assert response.status == 200 and b'"ready"' in response.read()
        conn.close()
        calls = hop.seen[seen:]
        print(f"backend calls during 200 /readyz: {len(calls)}")
        assert len(calls) <= 2, calls[:5]  # at most a scheduled probe, never one per request


def test_the_readiness_probe_notices_a_backend_that_goes_away(tmp_path, hop_clean):
    """The cached answer is fresh: the background probe turns /readyz to 503 once the backend fails."""
    from .harness import Fault

    hop = hop_clean
    with serving(tmp_path, "--backend", "s3", "--backend-url", hop.url, "--backend-access-key", "backend",
                 "--backend-secret-key", "backend", ready_interval="0.5") as proxy:
        deadline = time.monotonic() + 20
        while _get(proxy.url, "/readyz")[0] != 200:
            assert time.monotonic() < deadline, "never ready"
            time.sleep(0.1)
        hop.inject(Fault("status", method="GET", path_prefix="/", count=1000, status=500, code="InternalError"))
        deadline = time.monotonic() + 20
        while True:
            status, body = _get(proxy.url, "/readyz")
            if status == 503:
                break
            assert time.monotonic() < deadline, "/readyz never noticed the failing backend"
            time.sleep(0.1)
        assert re.search(rb'"backend"', body), body


# --- the settings ------------------------------------------------------------------------------------


def test_limit_settings_are_validated():
    from s3proxy.settings import SettingsError, load

    defaults = load({}, env={})
    assert (defaults.max_header_bytes, defaults.header_timeout, defaults.idle_timeout, defaults.max_connections) == (32768, 20.0, 60.0, 1024)
    assert defaults.metrics_address is None
    assert load({"metrics_listen": "[::1]:9100"}, env={}).metrics_address == ("::1", 9100)
    assert load({}, env={"S3PROXY_METRICS_LISTEN": "127.0.0.1:0"}).metrics_address == ("127.0.0.1", 0)
    for name, value in (("max_header_bytes", "1000"), ("max_connections", "0"), ("header_timeout", "0"),
                        ("idle_timeout", "-1"), ("ready_interval", "x"), ("metrics_listen", "9100"),
                        ("metrics_listen", "host:99999")):
        with pytest.raises(SettingsError, match=name):
            load({name: value}, env={})
