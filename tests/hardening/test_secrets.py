"""Secrets in a request never come back: not in a response (status line, headers, body), not in the log.

One real `python -m s3proxy serve` process at log level debug, its stdout and stderr captured whole.
Each case sends one hostile request byte for byte over its own socket, carrying a secret nobody else
uses: SSE-C keys with control bytes, non-ASCII bytes, a bare CR, too long, the wrong length, bad
base64, a mismatched MD5, the copy-source key; Authorization headers whose "signature" is the secret
(garbage, malformed, well-formed but wrong, SigV2), presigned URLs (SigV4 and SigV2) whose signature
and session token are the secret, and the KMS API. The whole response and the whole log so far must
not contain the secret in any form it could take (as sent, percent-encoded, base64-decoded).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import logging
import os
import re
import socket
import sys
import urllib.parse
import uuid

import pytest

from tests.e2e.conftest import ACCESS_KEY, REGION, SECRET_KEY

from .harness import ProxyProcess, s3_client, sigv4_headers

SSEC = "x-amz-server-side-encryption-customer-"
CPSRC = "x-amz-copy-source-server-side-encryption-customer-"


class Capture(ProxyProcess):
    """The proxy process at log level debug; its stderr in a file, its stdout kept (`printed`)."""

    def output(self) -> bytes:
        return ("".join(self.printed) + self.log_text()).encode("utf-8", "surrogateescape")

    def exchange(self, request: bytes) -> bytes:
        """Send `request` as is; everything the proxy answers until it closes the connection."""
        host, port = self.url[len("http://"):].rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=30) as sock:
            try:
                sock.sendall(request)
            except (BrokenPipeError, ConnectionResetError):
                pass
            chunks = []
            while True:
                try:
                    chunk = sock.recv(65536)
                except ConnectionResetError:
                    break
                if not chunk:
                    break
                chunks.append(chunk)
        return b"".join(chunks)


@pytest.fixture(scope="module")
def proxy(tmp_path_factory):
    root = tmp_path_factory.mktemp("secrets")
    capture = Capture(root / "data", log=root / "stderr.log", log_level="debug").start()
    s3 = s3_client(capture.url)
    s3.create_bucket(Bucket="vault")
    key = os.urandom(32)
    s3.put_object(Bucket="vault", Key="ssec", Body=b"sealed", SSECustomerAlgorithm="AES256", SSECustomerKey=key)
    s3.put_object(Bucket="vault", Key="plain", Body=b"plain")
    yield capture
    capture.stop()
    for secret in SENT:  # what it printed on stdout after the cases (nothing, normally) holds none either
        assert all(form not in capture.output() for form in forms(secret))


SENT: list[str] = []


def marker() -> str:
    """A secret no other case sends (hex and letters: survives every encoding unchanged)."""
    SENT.append("Secret" + uuid.uuid4().hex[:20])
    return SENT[-1]


def forms(secret: bytes | str) -> set[bytes]:
    """The secret as the proxy could echo it: raw, decoded (str), percent-encoded, base64 and its decoding."""
    raw = secret if isinstance(secret, bytes) else secret.encode()
    out = {raw, urllib.parse.quote(raw, safe="").encode(), base64.b64encode(raw)}
    try:
        decoded = base64.b64decode(raw, validate=True)
        if len(decoded) >= 8:
            out.add(decoded)
    except ValueError:
        pass
    for text in (raw.decode("latin-1"), raw.decode("utf-8", "replace")):
        out.add(repr(text)[1:-1].encode("utf-8", "replace"))  # as a Python repr would print it
    return {f for f in out if len(f) >= 8}


def assert_secret_absent(proxy: Capture, secret: bytes | str, response: bytes) -> None:
    assert response.startswith(b"HTTP/1."), response[:200]
    output = proxy.output()
    for form in forms(secret):
        assert form not in response, (form, response[:3000])
        assert form not in output, (form, output.decode("utf-8", "replace")[-3000:])


def head(method: str, target: str, headers: list[tuple[str, str | bytes]], body: bytes = b"") -> bytes:
    lines = [f"{method} {target} HTTP/1.1".encode()]
    for name, value in headers:
        lines.append(name.encode() + b": " + (value if isinstance(value, bytes) else value.encode("latin-1")))
    lines.append(b"Content-Length: " + str(len(body)).encode())
    lines.append(b"Connection: close")
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def signed(proxy: Capture, method: str, target: str, extra: dict[str, str], *, break_signature: bool = False) -> bytes:
    headers = sigv4_headers(method, proxy.url + target, headers=extra)
    if break_signature:
        headers["authorization"] = headers["authorization"][:-64] + "0" * 64
    return head(method, target, list(headers.items()))


# --- malformed SSE-C key headers that aiohttp's parser itself refuses ---------------------------------

RAW_VALUES = {
    "control-byte": lambda s: s.encode() + b"\x01tail",
    "nul-byte": lambda s: s.encode() + b"\x00tail",
    "bare-cr": lambda s: s.encode() + b"\rtail",
    "non-ascii": lambda s: s.encode() + "\u00e9\u00ff".encode("latin-1"),
    "too-long": lambda s: s.encode() + b"A" * 20000,
    "delete-char": lambda s: s.encode() + b"\x7f",
}


@pytest.mark.parametrize("header", [SSEC + "key", CPSRC + "key"])
@pytest.mark.parametrize("shape", list(RAW_VALUES))
def test_unparseable_ssec_key_header(proxy, shape, header):
    secret = marker()
    request = head("GET", "/vault/ssec", [("Host", "x"), (SSEC + "algorithm", "AES256"), (header, RAW_VALUES[shape](secret))])
    assert_secret_absent(proxy, secret, proxy.exchange(request))


# --- SSE-C keys that parse as HTTP but not as keys, signed correctly (and with a bad signature) ------


def key_cases() -> dict[str, tuple[str, dict[str, str]]]:
    """name -> (the secret, SSE-C headers carrying it)."""
    wrong_length = base64.b64encode(marker().encode() * 2).decode()
    bad_base64 = marker() + "!!*"
    good_key = base64.b64encode(os.urandom(32)).decode()
    wrong_key = base64.b64encode(os.urandom(32)).decode()
    wrong_key_md5 = base64.b64encode(hashlib.md5(base64.b64decode(wrong_key)).digest()).decode()
    return {
        "wrong-length": (wrong_length, {SSEC + "algorithm": "AES256", SSEC + "key": wrong_length, SSEC + "key-MD5": "x"}),
        "bad-base64": (bad_base64, {SSEC + "algorithm": "AES256", SSEC + "key": bad_base64, SSEC + "key-MD5": "x"}),
        "md5-mismatch": (
            good_key,
            {
                SSEC + "algorithm": "AES256",
                SSEC + "key": good_key,
                SSEC + "key-MD5": base64.b64encode(b"0123456789abcdef").decode(),
            },
        ),
        "wrong-key": (wrong_key, {SSEC + "algorithm": "AES256", SSEC + "key": wrong_key, SSEC + "key-MD5": wrong_key_md5}),
        "bad-algorithm": (good_key, {SSEC + "algorithm": "AES128", SSEC + "key": good_key, SSEC + "key-MD5": "x"}),
        "key-on-plain-object": (
            wrong_key,
            {SSEC + "algorithm": "AES256", SSEC + "key": wrong_key, SSEC + "key-MD5": wrong_key_md5},
        ),
    }


@pytest.mark.parametrize("break_signature", [False, True], ids=["signed", "bad-signature"])
@pytest.mark.parametrize("case", list(key_cases()))
def test_bad_ssec_key_on_get_and_put(proxy, case, break_signature):
    secret, headers = key_cases()[case]
    target = "/vault/plain" if case == "key-on-plain-object" else "/vault/ssec"
    for method in ("GET", "PUT"):
        response = proxy.exchange(signed(proxy, method, target if method == "GET" else "/vault/new", headers,
                                         break_signature=break_signature))
        assert_secret_absent(proxy, secret, response)


@pytest.mark.parametrize("case", list(key_cases()))
def test_bad_copy_source_ssec_key(proxy, case):
    secret, headers = key_cases()[case]
    copy = {k.replace(SSEC, CPSRC): v for k, v in headers.items()}
    copy["x-amz-copy-source"] = "/vault/plain" if case == "key-on-plain-object" else "/vault/ssec"
    assert_secret_absent(proxy, secret, proxy.exchange(signed(proxy, "PUT", "/vault/copied", copy)))


# --- Authorization headers whose signature is the secret ----------------------------------------------


def scope() -> str:
    return f"{dt.datetime.now(dt.UTC):%Y%m%d}/{REGION}/s3/aws4_request"


AUTHORIZATIONS = {
    "garbage-scheme": lambda s: f"Garbage {s}",
    "only-the-secret": lambda s: s,
    "sigv4-wrong-signature": lambda s: (
        f"AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/{scope()}, SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature={s}"
    ),
    "sigv4-component-without-equals": lambda s: (
        f"AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/{scope()}, SignedHeaders=host, Signature:{s}"
    ),
    "sigv4-bare-component": lambda s: f"AWS4-HMAC-SHA256 {s}",
    "sigv4-unknown-key": lambda s: f"AWS4-HMAC-SHA256 Credential=AKIAUNKNOWN0000000/{scope()}, SignedHeaders=host, Signature={s}",
    "sigv4-credential-is-secret": lambda s: f"AWS4-HMAC-SHA256 Credential={s}, SignedHeaders=host, Signature={s}",
    "sigv4a": lambda s: f"AWS4-ECDSA-P256-SHA256 Credential={ACCESS_KEY}/{scope()}, SignedHeaders=host, Signature={s}",
    "sigv2-wrong-signature": lambda s: f"AWS {ACCESS_KEY}:{s}",
    "sigv2-no-colon": lambda s: f"AWS {s}",
    "sigv2-unknown-key": lambda s: f"AWS AKIAUNKNOWN0000000:{s}",
    "signature-with-control-byte": lambda s: (
        f"AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/{scope()}, SignedHeaders=host, Signature={s}\x01"
    ),
}


@pytest.mark.parametrize("shape", list(AUTHORIZATIONS))
def test_authorization_header_signature(proxy, shape):
    secret = marker()
    now = dt.datetime.now(dt.UTC)
    headers = [("Host", "x"), ("Date", f"{now:%a, %d %b %Y %H:%M:%S GMT}"), ("Authorization", AUTHORIZATIONS[shape](secret))]
    if not shape.startswith("sigv2"):  # SigV2 reads x-amz-date before Date, in Date's format
        headers += [("x-amz-date", f"{now:%Y%m%dT%H%M%SZ}"), ("x-amz-content-sha256", hashlib.sha256(b"").hexdigest())]
    for method, target in (("GET", "/vault/plain"), ("PUT", "/vault/x"), ("GET", "/")):
        assert_secret_absent(proxy, secret, proxy.exchange(head(method, target, headers)))


def test_session_token_header(proxy):
    """A session token (the proxy issues none) signed into the request, with a wrong signature."""
    secret = marker()
    assert_secret_absent(proxy, secret, proxy.exchange(
        signed(proxy, "GET", "/vault/plain", {"x-amz-security-token": secret}, break_signature=True)))


def test_kms_api_authorization(proxy):
    secret = marker()
    for authorization in (
        f"Garbage {secret}",
        f"AWS4-HMAC-SHA256 {secret}",
        f"AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/{scope().replace('/s3/', '/kms/')}, SignedHeaders=host, Signature={secret}",
    ):
        request = head("POST", "/", [("Host", "x"), ("X-Amz-Target", "TrentService.ListKeys"),
                                     ("Content-Type", "application/x-amz-json-1.1"), ("Authorization", authorization)], b"{}")
        assert_secret_absent(proxy, secret, proxy.exchange(request))


# --- presigned URLs whose signature (and token) is the secret -----------------------------------------


def presigned_v4(secret: str, *, token: str | None = None, extra: str = "") -> str:
    now = dt.datetime.now(dt.UTC)
    query = {
        "X-Amz-Algorithm": "AWS4-HMAC-SHA256", "X-Amz-Credential": f"{ACCESS_KEY}/{scope()}",
        "X-Amz-Date": f"{now:%Y%m%dT%H%M%SZ}", "X-Amz-Expires": "300", "X-Amz-SignedHeaders": "host",
        "X-Amz-Signature": secret,
    }
    if token is not None:
        query["X-Amz-Security-Token"] = token
    return "/vault/plain?" + urllib.parse.urlencode(query) + extra


PRESIGNED = {
    "sigv4-signature": lambda s: presigned_v4(s),
    "sigv4-signature-and-token": lambda s: presigned_v4(s, token=s + "/token+x=="),
    "sigv4-expired": lambda s: presigned_v4(s).replace("X-Amz-Expires=300", "X-Amz-Expires=0"),
    "sigv4-and-authorization": lambda s: presigned_v4(s),
    "sigv2-signature": lambda s: f"/vault/plain?AWSAccessKeyId={ACCESS_KEY}&Expires=9999999999&Signature={s}",
    "sigv2-expired": lambda s: f"/vault/plain?AWSAccessKeyId={ACCESS_KEY}&Expires=1&Signature={s}",
    "sigv2-with-token": lambda s: (
        f"/vault/plain?AWSAccessKeyId={ACCESS_KEY}&Expires=9999999999&Signature={s}&x-amz-security-token={s}"
    ),
    "signature-with-space": lambda s: presigned_v4(s).replace("X-Amz-Signature=", "X-Amz-Signature=%20"),
}


@pytest.mark.parametrize("shape", list(PRESIGNED))
def test_presigned_signature(proxy, shape):
    secret = marker()
    headers = [("Host", "x")]
    if shape == "sigv4-and-authorization":
        headers.append(
            ("Authorization", f"AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/{scope()}, SignedHeaders=host, Signature={secret}")
        )
    assert_secret_absent(proxy, secret, proxy.exchange(head("GET", PRESIGNED[shape](secret), headers)))


def test_parser_errors_are_s3_error_documents(proxy):
    """aiohttp's own 400 becomes S3's: XML, BadRequest, and nothing of the request."""
    secret = marker()
    response = proxy.exchange(head("GET", "/vault/ssec", [("Host", "x"), (SSEC + "key", secret.encode() + b"\x01")]))
    status_line, _, rest = response.partition(b"\r\n")
    assert status_line.split(b" ", 2)[1] == b"400"
    headers, _, body = rest.partition(b"\r\n\r\n")
    assert b"content-type: application/xml" in headers.lower()
    assert b"<Code>BadRequest</Code>" in body and b"An error occurred when parsing the HTTP request." in body
    assert b"x-amz" not in body.lower() and b"\\x01" not in body


def test_the_proxy_logged_at_debug_and_the_log_carries_no_secret_at_all(proxy):
    """The log really is at debug level and has aiohttp's and the proxy's lines, and no secret of any case above."""
    proxy.exchange(head("GET", "/", [("Host", "x"), ("Authorization", "x\x01")]))  # an aiohttp.server line
    proxy.exchange(head("GET", "/", [("Host", "x")]))  # an s3proxy.access line
    text = proxy.output().decode("utf-8", "replace")
    assert " DEBUG " in text and "aiohttp.server" in text and "s3proxy.access" in text
    assert SECRET_KEY not in text
    assert not re.search(r"Secret[0-9a-f]{20}", text)


# --- the same filter in a ProxyThread (tests, examples, embedding), and what it masks by pattern --------


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.text: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.text.append(logging.Formatter("%(name)s %(message)s").format(record))


def test_proxy_thread_logs_are_redacted_too(tmp_path):
    """ProxyThread installs the redaction as `serve` does: aiohttp's parser error line, whatever handler
    receives it (here one on the root logger, as an embedding application would add), carries no secret."""
    from tests.e2e.conftest import start_proxy

    from .harness import raw_request

    collect = _Collect()
    logging.getLogger().addHandler(collect)
    thread, endpoint = start_proxy(tmp_path, "fs", None)
    try:
        secret = marker()
        status, _, body = raw_request(endpoint.url, "GET", "/b/k", headers=[(SSEC + "key", secret.encode() + b"\x01")])
        assert status == 400 and secret.encode() not in body
    finally:
        thread.stop()
        logging.getLogger().removeHandler(collect)
    text = "\n".join(collect.text)
    assert "aiohttp.server Error handling request" in text and "BadHttpMessage" in text
    assert secret not in text


def test_every_s3proxy_logger_carries_the_filter(tmp_path):
    from s3proxy.redact import REDACTOR, THIRD_PARTY_LOGGERS
    from tests.e2e.conftest import start_proxy

    thread, _ = start_proxy(tmp_path, "fs", None)
    thread.stop()
    names = [n for n in logging.root.manager.loggerDict if n == "s3proxy" or n.startswith("s3proxy.")]
    assert {"s3proxy.http", "s3proxy.access", "s3proxy.store"} <= set(names)
    for name in [*names, *THIRD_PARTY_LOGGERS]:
        assert REDACTOR in logging.getLogger(name).filters, name


def test_log_patterns_mask_what_no_request_context_names(tmp_path):
    """Without the request at hand the filter masks by shape: secret header and parameter names with
    their values, SigV2's `AWS id:signature`, 32-byte keys in base64 or hex, configured secret keys."""
    from s3proxy.redact import LogRedactor

    redactor = LogRedactor()
    redactor.add_secrets(["configured-secret-key-0123"])
    key_b64 = base64.b64encode(os.urandom(32)).decode()
    lines = {
        f"headers {{'x-amz-server-side-encryption-customer-key': 'Aa{key_b64[:10]}'}}": f"Aa{key_b64[:10]}",
        "x-amz-copy-source-server-side-encryption-customer-key: SecretCopyKey999": "SecretCopyKey999",
        "GET /b/k?X-Amz-Signature=SecretSig0001&X-Amz-Date=20240101T000000Z": "SecretSig0001",
        "Authorization: AWS4-HMAC-SHA256 Credential=AK/s, Signature=SecretSig0002": "SecretSig0002",
        "uri?x-amz-security-token=SecretToken03&a=b": "SecretToken03",
        "got AWS AKIAEXAMPLE0001:SecretV2Sig04 from client": "SecretV2Sig04",
        f"key {key_b64} here": key_b64,
        f"hex {hashlib.sha256(b'k').hexdigest()} here": hashlib.sha256(b"k").hexdigest(),
        "the configured-secret-key-0123 leaked": "configured-secret-key-0123",
    }
    for line, secret in lines.items():
        record = logging.LogRecord("aiohttp.server", logging.ERROR, __file__, 1, "%s", (line,), None)
        redactor.filter(record)
        assert secret not in record.getMessage(), line
    try:
        raise ValueError(f"bad header x-amz-server-side-encryption-customer-key: {key_b64}")
    except ValueError:
        record = logging.LogRecord("s3proxy.http", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    redactor.filter(record)
    formatted = logging.Formatter().format(record)
    assert "ValueError" in formatted and "Traceback" in formatted and key_b64 not in formatted
