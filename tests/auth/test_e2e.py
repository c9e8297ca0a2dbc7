"""End to end: real boto3 and awscli against a real aiohttp server (HTTP and HTTPS) whose handler
calls authenticate + open_body and echoes what it decoded. Checks what boto3 really sends:
over HTTP a signed payload with an x-amz-checksum-crc32 header, over HTTPS
STREAMING-UNSIGNED-PAYLOAD-TRAILER with a CRC32 trailer."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import ipaddress
import json
import os
import ssl
import subprocess
import sys
import threading
import time
import zlib
from http.client import HTTPConnection
from xml.sax.saxutils import escape

import boto3
import pytest
from aiohttp import web
from botocore.config import Config
from botocore.exceptions import ClientError
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from s3proxy import errors
from s3proxy.auth.body import open_body
from s3proxy.auth.verify import authenticate

from .helpers import AKID, SECRET, example_store, signed_chunks, signing_key


async def _handle(request: web.Request) -> web.Response:
    try:
        raw_path, _, raw_query = request.raw_path.partition("?")
        ctx = authenticate(
            request.method, raw_path, raw_query, request.headers, example_store(), now=time.time(), region="us-east-1"
        )
        echo = {"mode": ctx.content_sha256, "presigned": ctx.presigned}
        if request.method in ("PUT", "POST"):
            body = open_body(ctx, request.headers, request.content, want_md5=True)
            digest = hashlib.sha256()
            async for piece in body:
                digest.update(piece)
            echo.update(length=body.received, sha256=digest.hexdigest(), checksums=body.checksums,
                        algorithm=body.checksum_algorithm, encoding=body.content_encoding)
            return web.Response(headers={"ETag": f'"{body.md5_hex}"', "x-echo": json.dumps(echo)})
        return web.Response(headers={"x-echo": json.dumps(echo)})
    except errors.S3Error as exc:
        xml = f"<Error><Code>{exc.code}</Code><Message>{escape(exc.text)}</Message></Error>"
        return web.Response(status=exc.status, body=xml.encode(), content_type="application/xml")


def _self_signed(tmp_path) -> tuple[str, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(cert_path), str(key_path)


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    """(http endpoint, https endpoint, CA bundle) of one echo app on a background loop."""
    cert, key = _self_signed(tmp_path_factory.mktemp("tls"))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    state: dict = {}

    async def start() -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", _handle)
        # auto_decompress=False: a PUT with Content-Encoding: gzip is an object attribute, not a transfer coding
        runner = web.AppRunner(app, auto_decompress=False, access_log=None)
        await runner.setup()
        plain = web.TCPSite(runner, "127.0.0.1", 0)
        tls = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
        await plain.start()
        await tls.start()
        state["runner"] = runner
        state["ports"] = [s._server.sockets[0].getsockname()[1] for s in (plain, tls)]  # noqa: SLF001

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(start())
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert ready.wait(10)
    http_port, https_port = state["ports"]
    yield f"http://127.0.0.1:{http_port}", f"https://127.0.0.1:{https_port}", cert
    asyncio.run_coroutine_threadsafe(state["runner"].cleanup(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
    loop.close()


def _client(endpoint: str, cert: str, secret: str = SECRET, **config):
    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id=AKID,
                        aws_secret_access_key=secret, verify=cert if endpoint.startswith("https") else None,
                        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}, **config))


def _echo(response) -> dict:
    return json.loads(response["ResponseMetadata"]["HTTPHeaders"]["x-echo"])


def _crc32(data: bytes) -> str:
    return base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()


SIZES = [0, 1, 8191, 65536 + 7, 3 * (1 << 20) + 5]


@pytest.mark.parametrize("size", SIZES)
def test_boto3_put_object_over_http_is_signed_payload_with_crc32_header(servers, size):
    http, _, cert = servers
    data = os.urandom(size)
    echo = _echo(_client(http, cert).put_object(Bucket="bucket", Key="dir/ä b+c", Body=data))
    assert echo["mode"] == hashlib.sha256(data).hexdigest()
    assert echo["length"] == size and echo["sha256"] == hashlib.sha256(data).hexdigest()
    assert echo["algorithm"] == "crc32" and echo["checksums"] == {"crc32": _crc32(data)}


@pytest.mark.parametrize("size", SIZES)
def test_boto3_put_object_over_https_is_unsigned_trailer(servers, size):
    _, https, cert = servers
    data = os.urandom(size)
    response = _client(https, cert).put_object(Bucket="bucket", Key="k", Body=data, ContentEncoding="gzip")
    echo = _echo(response)
    assert echo["mode"] == "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
    assert echo["length"] == size and echo["sha256"] == hashlib.sha256(data).hexdigest()
    assert echo["checksums"] == {"crc32": _crc32(data)} and echo["encoding"] == "gzip"
    assert response["ETag"] == f'"{hashlib.md5(data).hexdigest()}"'


@pytest.mark.parametrize("algorithm", ["CRC32C", "SHA1", "SHA256", "CRC64NVME"])
def test_boto3_upload_part_with_each_checksum_algorithm(servers, algorithm):
    _, https, cert = servers
    data = os.urandom(100_000)
    echo = _echo(_client(https, cert).upload_part(Bucket="b", Key="k", UploadId="u", PartNumber=1, Body=data,
                                                 ChecksumAlgorithm=algorithm))
    assert echo["algorithm"] == algorithm.lower() and echo["length"] == len(data)


def test_boto3_wrong_secret_is_signature_does_not_match(servers):
    http, _, cert = servers
    with pytest.raises(ClientError) as info:
        _client(http, cert, secret="wrong").put_object(Bucket="b", Key="k", Body=b"x")
    assert info.value.response["Error"]["Code"] == "SignatureDoesNotMatch"


def test_boto3_bad_md5_is_bad_digest(servers):
    http, _, cert = servers
    with pytest.raises(ClientError) as info:
        _client(http, cert).put_object(Bucket="b", Key="k", Body=b"x", ContentMD5=base64.b64encode(b"0" * 16).decode())
    assert info.value.response["Error"]["Code"] == "BadDigest"


def test_boto3_presigned_put_over_real_http(servers):
    http, _, cert = servers
    import urllib.request

    url = _client(http, cert, signature_version="s3v4").generate_presigned_url(
        "put_object", Params={"Bucket": "b", "Key": "p r/é"}, ExpiresIn=60)
    request = urllib.request.Request(url, data=b"presigned body", method="PUT")
    with urllib.request.urlopen(request, timeout=10) as response:
        echo = json.loads(response.headers["x-echo"])
    assert echo["presigned"] and echo["length"] == 14


def test_signed_aws_chunked_over_real_http_chunked_transfer(servers):
    """STREAMING-AWS4-HMAC-SHA256-PAYLOAD as the Java/Go SDKs send it, sent with Transfer-Encoding: chunked."""
    endpoint, _, cert = servers
    from urllib.parse import urlsplit

    from botocore.auth import S3SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    data = os.urandom(200_000)
    request = AWSRequest(method="PUT", url=f"{endpoint}/bucket/chunked", headers={
        "X-Amz-Content-SHA256": "STREAMING-AWS4-HMAC-SHA256-PAYLOAD", "Content-Encoding": "aws-chunked",
        "x-amz-decoded-content-length": str(len(data)), "x-amz-checksum-crc32": _crc32(data)})

    class Fixed(S3SigV4Auth):
        def payload(self, request):  # the streaming token is the payload hash
            return "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"

    Fixed(Credentials(AKID, SECRET), "s3", "us-east-1").add_auth(request)
    seed = request.headers["Authorization"].rsplit("Signature=", 1)[1]
    day, scope = request.headers["X-Amz-Date"], f"{request.headers['X-Amz-Date'][:8]}/us-east-1/s3/aws4_request"
    wire = signed_chunks(signing_key(SECRET, day[:8]), seed, [data[i:i + 65536] for i in range(0, len(data), 65536)],
                         amz_date=day, scope=scope)
    parts = urlsplit(f"{endpoint}/bucket/chunked")
    conn = HTTPConnection(parts.hostname, parts.port, timeout=10)
    conn.putrequest("PUT", "/bucket/chunked", skip_accept_encoding=True)
    for name, value in request.headers.items():
        conn.putheader(name, value)
    conn.putheader("Transfer-Encoding", "chunked")
    conn.endheaders()
    for i in range(0, len(wire), 70_001):
        piece = wire[i:i + 70_001]
        conn.send(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
    conn.send(b"0\r\n\r\n")
    response = conn.getresponse()
    body = response.read()
    assert response.status == 200, body
    echo = json.loads(response.headers["x-echo"])
    assert echo["length"] == len(data) and echo["checksums"] == {"crc32": _crc32(data)}
    conn.close()


def test_awscli_s3_cp_upload(servers, tmp_path):
    _, https, cert = servers
    source = tmp_path / "file.bin"
    source.write_bytes(os.urandom(300_000))
    env = dict(os.environ, AWS_ACCESS_KEY_ID=AKID, AWS_SECRET_ACCESS_KEY=SECRET, AWS_DEFAULT_REGION="us-east-1",
               AWS_CA_BUNDLE=cert)
    result = subprocess.run(
        [sys.executable, "-m", "awscli", "s3", "cp", str(source), "s3://bucket/file.bin", "--endpoint-url", https],
        env=env, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
