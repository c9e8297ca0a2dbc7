"""What `s3proxy serve` tells a newcomer and does for them, as subprocesses: `--help` names every
default; the root key sits beside the data dir, and one an older version left inside it keeps
working and is pointed out; SIGTERM drains requests in flight for `shutdown_grace` seconds and says
so (single process and `--workers`); `--tls self-signed` gives HTTPS in one step, and awscli and
boto3 use SSE-C through it with nothing but the lines it prints."""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from http.client import HTTPResponse
from pathlib import Path

import boto3
import pytest
from botocore.config import Config

from s3proxy.settings import FIELDS
from tests.hardening.harness import ACCESS_KEY, SECRET_KEY, sigv4_headers

from .conftest import REGION
from .front_helpers import client_for, serve_args, start_served

KEYS = ("--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY)


def _cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "s3proxy", *args], capture_output=True, text=True, timeout=timeout)


def test_serve_help_names_every_default():
    text = " ".join(_cli("serve", "--help").stdout.split())  # argparse wraps lines
    for f in FIELDS:
        if f.default not in (None, ""):
            shown = str(f.default).lower() if isinstance(f.default, bool) else str(f.default)
            assert f"(default: {shown}) [env {f.env}]" in text, f.name
    assert "--tls {self-signed}" in text and "--backend {fs,s3}" in text


# --- the root key: beside the data dir, never inside it ---------------------------------------------


def test_a_fresh_start_keeps_the_root_key_beside_the_data_dir(tmp_path):
    served = start_served(serve_args(tmp_path / "data", *KEYS))
    try:
        line = served.wait_line(r"^root key: (\S+) \(back it up apart from the data dir", timeout=30)
        assert line and Path(line.group(1)) == tmp_path / "data.root.key", served.lines
    finally:
        code, err = served.stop()
    assert code == 0, err
    assert (tmp_path / "data.root.key").stat().st_mode & 0o777 == 0o600
    assert not (tmp_path / "data" / "root.key").exists()
    # what a backup of the data dir takes along: no key
    assert not [p for p in (tmp_path / "data").rglob("*") if p.name.endswith("root.key")]


def test_a_root_key_an_older_version_left_in_the_data_dir_keeps_working_and_is_pointed_out(tmp_path):
    data = tmp_path / "data"
    older = start_served(serve_args(data, *KEYS, "--root-key-file", str(data / "root.key")))  # the old default place
    try:
        s3 = client_for(older.url, ACCESS_KEY, SECRET_KEY)
        s3.create_bucket(Bucket="kept")
        s3.put_object(Bucket="kept", Key="k", Body=b"from before", ServerSideEncryption="aws:kms")
    finally:
        older.stop()
    served = start_served(serve_args(data, *KEYS))
    try:
        line = served.wait_line(r"^root key: .*inside the data dir", timeout=30)
        assert line and f"mv {data / 'root.key'} {tmp_path / 'data.root.key'}" in line.string, served.lines
        s3 = client_for(served.url, ACCESS_KEY, SECRET_KEY)
        assert s3.get_object(Bucket="kept", Key="k")["Body"].read() == b"from before"
    finally:
        code, err = served.stop()
    assert code == 0, err
    assert not (tmp_path / "data.root.key").exists()  # no second key was made beside it

    # moved as the line says: the next start uses it from there
    (data / "root.key").rename(tmp_path / "data.root.key")
    served = start_served(serve_args(data, *KEYS))
    try:
        assert served.wait_line(r"^root key: \S+data\.root\.key \(back it up", timeout=30), served.lines
        assert client_for(served.url, ACCESS_KEY, SECRET_KEY).get_object(Bucket="kept", Key="k")["Body"].read() == b"from before"
    finally:
        served.stop()


def test_two_root_keys_refuse_to_start_with_one_line(tmp_path):
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    for path in (data / "root.key", tmp_path / "data.root.key"):
        path.write_bytes(os.urandom(32))
        path.chmod(0o600)
    proc = _cli("serve", "--port", "0", "--data-dir", str(data), *KEYS)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert [line for line in proc.stderr.splitlines() if line.strip()] == [
        line for line in proc.stderr.splitlines() if "two root keys" in line]


# --- shutdown: drain for shutdown_grace seconds, and say so ---------------------------------------------


class SlowUpload:
    """A signed PUT whose body is sent in two pieces, on a socket of its own."""

    def __init__(self, url: str, bucket: str, key: str, body: bytes) -> None:
        self.body = body
        target = f"/{bucket}/{key}"
        headers = sigv4_headers("PUT", url + target, body=body)
        host = url.split("://")[1]
        head = f"PUT {target} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {len(body)}\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in headers.items() if k != "host") + "\r\n"
        self.sock = socket.create_connection(("127.0.0.1", int(host.rsplit(":", 1)[1])), timeout=30)
        self.sock.sendall(head.encode() + body[: len(body) // 2])

    def finish(self) -> int:
        self.sock.sendall(self.body[len(self.body) // 2:])
        response = HTTPResponse(self.sock, method="PUT")
        response.begin()
        response.read()
        return response.status

    def __enter__(self) -> SlowUpload:
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()


def _bucket(url: str) -> str:
    client_for(url, ACCESS_KEY, SECRET_KEY).create_bucket(Bucket="drain")
    return "drain"


@pytest.mark.parametrize("workers", ["1", "2"])
def test_sigterm_lets_a_request_in_flight_finish_within_the_grace_period_and_says_so(tmp_path, workers):
    served = start_served(serve_args(tmp_path / "data", *KEYS, "--shutdown-grace", "20", "--workers", workers))
    body = os.urandom(256 * 1024)
    signalled = False
    try:
        with SlowUpload(served.url, _bucket(served.url), "slow.bin", body) as upload:
            time.sleep(0.3)  # the request has started: headers and half the body are in
            served.proc.send_signal(signal.SIGTERM)
            signalled = True
            stopping = served.wait_line(r"^s3proxy stopping \(SIGTERM\): no new connections; (.*) within 20 s", timeout=10)
            assert stopping, served.lines
            assert ("1 request in flight" if workers == "1" else "2 workers finish") in stopping.group(1)
            time.sleep(0.5)
            with pytest.raises(OSError):  # no new connections meanwhile
                socket.create_connection(("127.0.0.1", int(served.url.rsplit(":", 1)[1])), timeout=2).close()
            assert upload.finish() == 200
        assert served.wait_line(r"^s3proxy stopped after [\d.]+ s: every request finished", timeout=20), served.lines
    finally:
        code, err = served.stop(signalled=signalled)
    assert code == 0, err
    again = start_served(serve_args(tmp_path / "data", *KEYS))
    try:
        got = client_for(again.url, ACCESS_KEY, SECRET_KEY).get_object(Bucket="drain", Key="slow.bin")["Body"].read()
        assert hashlib.sha256(got).digest() == hashlib.sha256(body).digest()
    finally:
        again.stop()


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_request_still_running_after_the_grace_period_is_cut_off_and_reported(tmp_path, workers):
    served = start_served(serve_args(tmp_path / "data", *KEYS, "--shutdown-grace", "1", "--workers", workers))
    try:
        with SlowUpload(served.url, _bucket(served.url), "stalled.bin", os.urandom(64 * 1024)):
            time.sleep(0.3)
            began = time.monotonic()
            served.proc.send_signal(signal.SIGTERM)
            if workers == "1":
                assert served.wait_line(r"^s3proxy stopped after [\d.]+ s: 1 request still running after 1 s cut off", timeout=15)
            else:
                assert served.wait_line(r"^s3proxy stopped after [\d.]+ s: 1 worker\(s\) cut off requests", timeout=25)
            code, err = served.stop(signalled=True)
            assert time.monotonic() - began < 15
            assert code == 0, err
            if workers == "2":
                assert "1 request still running after 1 s cut off" in err  # the worker's own log line
    finally:
        served.stop()


# --- TLS in one step ----------------------------------------------------------------------------------


def _exports(served) -> dict[str, str]:
    """The variables the printed export lines set (values unquoted as a shell would)."""
    import shlex

    assert served.wait_line(r"^stop with Ctrl-C", timeout=30), served.lines
    found = {}
    for line in served.lines:
        if line.strip().startswith("export "):
            for word in shlex.split(line.strip())[1:]:
                name, _, value = word.partition("=")
                found[name] = value
    return found


def test_tls_self_signed_serves_https_that_awscli_and_boto3_trust_through_the_printed_lines(tmp_path):
    data = tmp_path / "data"
    served = start_served(serve_args(data, "--tls", "self-signed"))
    try:
        env = _exports(served)
        assert env["AWS_ENDPOINT_URL"] == served.url and served.url.startswith("https://127.0.0.1:")
        assert env["AWS_CA_BUNDLE"] == str(data / "tls" / "ca.pem") and env["AWS_DEFAULT_REGION"] == REGION
        assert served.wait_line(r"^TLS: made a certificate for localhost, 127\.0\.0\.1, ::1 signed by a local CA", 1)
        # boto3, configured from the environment alone, with SSE-C
        run_env = {**{k: v for k, v in os.environ.items() if not k.startswith("AWS_")}, **env,
                   "AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull}
        script = (
            "import os, boto3\n"
            "s3 = boto3.client('s3')\n"
            "s3.create_bucket(Bucket='tls')\n"
            "key = os.urandom(32)\n"
            "s3.put_object(Bucket='tls', Key='c', Body=b'over https', SSECustomerAlgorithm='AES256', SSECustomerKey=key)\n"
            "got = s3.get_object(Bucket='tls', Key='c', SSECustomerAlgorithm='AES256', SSECustomerKey=key)\n"
            "assert got['Body'].read() == b'over https'\n"
            "print(boto3.client('kms').list_keys()['Keys'])\n"
        )
        ran = subprocess.run([sys.executable, "-c", script], env=run_env, capture_output=True, text=True, timeout=60)
        assert ran.returncode == 0, ran.stderr
        # awscli: SSE-C with a key file, through the same environment
        (tmp_path / "sse-c.key").write_bytes(os.urandom(32))
        (tmp_path / "secret.txt").write_text("my secret\n")
        for args in (["s3", "cp", "secret.txt", "s3://tls/cli.txt"], ["s3", "cp", "s3://tls/cli.txt", "-"]):
            ran = subprocess.run([sys.executable, "-m", "awscli", *args, "--sse-c", "AES256", "--sse-c-key", "fileb://sse-c.key"],
                                 env=run_env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
            assert ran.returncode == 0, ran.stderr
        assert ran.stdout == "my secret\n"
        # an untrusting client is refused: the certificate is not from a public CA
        with socket.create_connection(("127.0.0.1", int(served.url.rsplit(":", 1)[1])), timeout=10) as raw:
            with pytest.raises(ssl.SSLError):
                ssl.create_default_context().wrap_socket(raw, server_hostname="127.0.0.1").close()
    finally:
        code, err = served.stop()
    assert code == 0, err
    # a restart reuses the same CA: the bundle clients were given stays good
    ca = (data / "tls" / "ca.pem").read_bytes()
    again = start_served(serve_args(data, "--tls", "self-signed"))
    try:
        assert again.wait_line(r"^TLS: reusing a certificate", timeout=30), again.lines
        s3 = boto3.client("s3", endpoint_url=again.url, region_name=REGION, verify=str(data / "tls" / "ca.pem"),
                          aws_access_key_id=env["AWS_ACCESS_KEY_ID"], aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
                          config=Config(retries={"max_attempts": 1}))
        assert [b["Name"] for b in s3.list_buckets()["Buckets"]] == ["tls"]
    finally:
        again.stop()
    assert (data / "tls" / "ca.pem").read_bytes() == ca
