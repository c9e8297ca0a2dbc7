"""The clients people bring, run for real against the proxy: rclone and s3cmd (Debian's), minio-py
and s3fs (PyPI; s3fs from its own virtualenv, tests/interop/s3fs_env.py).

Each runs against the proxy in front of the filesystem backend and in front of a real moto server,
both served over HTTPS with `tls = self-signed` exactly as a newcomer starts it, and the clients
trust its CA the way the proxy tells them to (AWS_CA_BUNDLE, rclone --ca-cert, s3cmd ca_certs_file,
minio's http client): most clients refuse SSE-C over plain HTTP. boto3 is the referee: it checks
the mode each client's upload was stored under and reads every object back."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import boto3
import pytest
from botocore.config import Config

from tests.e2e.conftest import ACCESS_KEY, ACCOUNT, REGION, SECRET_KEY, start_proxy
from tests.interop import s3fs_env
from tests.system_packages import command, require

MiB = 1024 * 1024


@dataclass
class Proxy:
    """A proxy served over HTTPS with its self-signed CA, and boto3 as the referee."""

    url: str
    backend: str
    ca: Path
    work: Path
    access_key: str = ACCESS_KEY
    secret_key: str = field(default=SECRET_KEY, repr=False)
    principal: str = f"arn:aws:iam::{ACCOUNT}:user/alice"  # how the access log names the signer

    @property
    def hostport(self) -> str:
        return self.url.split("://", 1)[1]

    def client(self, service: str = "s3"):
        return boto3.client(service, endpoint_url=self.url, aws_access_key_id=self.access_key,
                            aws_secret_access_key=self.secret_key, region_name=REGION, verify=str(self.ca),
                            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}))

    def bucket(self) -> str:
        name = f"i-{uuid.uuid4().hex[:16]}"
        self.client().create_bucket(Bucket=name)
        return name

    def kms_key(self) -> str:
        return self.client("kms").create_key(Description="interop")["KeyMetadata"]["KeyId"]

    def tree(self, name: str, big: int = 0) -> Path:
        """A local directory of a few files (one of `big` bytes when given) to sync."""
        root = self.work / f"{name}-{uuid.uuid4().hex[:8]}"
        (root / "sub").mkdir(parents=True)
        (root / "a.txt").write_bytes(b"alpha\n" * 100)
        (root / "sub" / "b.txt").write_bytes(os.urandom(3000))
        if big:
            (root / "big.bin").write_bytes(os.urandom(big))
        return root

    # --- the clients -------------------------------------------------------------------------

    def rclone(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
        """rclone with an `p:` remote set by environment (no config file); --ca-cert, not AWS_CA_BUNDLE:
        rclone's own HTTP transport makes the AWS SDK refuse a CA bundle from the environment."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update(RCLONE_CONFIG=str(self.work / "rclone.conf"), RCLONE_CONFIG_P_TYPE="s3", RCLONE_CONFIG_P_PROVIDER="Other",
                   RCLONE_CONFIG_P_ENDPOINT=self.url, RCLONE_CONFIG_P_REGION=REGION,
                   RCLONE_CONFIG_P_ACCESS_KEY_ID=self.access_key, RCLONE_CONFIG_P_SECRET_ACCESS_KEY=self.secret_key)
        proc = subprocess.run([command("rclone") or "rclone", "--ca-cert", str(self.ca), "--retries", "1",
                               "--low-level-retries", "1", *args], env=env, capture_output=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"rclone {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr.decode(errors='replace')}")
        return proc

    def s3cmd(self, *args: str, sigv2: bool = False, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
        """Debian's s3cmd with a config file of its own (HTTPS, the proxy's CA, path-style)."""
        config = self.work / ("s3cfg-v2" if sigv2 else "s3cfg")
        config.write_text("[default]\n"
                          f"access_key = {self.access_key}\nsecret_key = {self.secret_key}\n"
                          f"host_base = {self.hostport}\nhost_bucket = {self.hostport}\nbucket_location = {REGION}\n"
                          f"use_https = True\nca_certs_file = {self.ca}\ncheck_ssl_certificate = True\n"
                          f"signature_v2 = {sigv2}\n")
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        proc = subprocess.run([command("s3cmd") or "s3cmd", "-c", str(config), *args], env=env, capture_output=True,
                              timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"s3cmd {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr.decode(errors='replace')}")
        return proc

    def minio(self, http):
        """minio-py's client, its requests through `http` (a urllib3 PoolManager trusting the proxy's CA)."""
        from minio import Minio

        return Minio(self.hostport, access_key=self.access_key, secret_key=self.secret_key, secure=True, region=REGION,
                     http_client=http)

    def s3fs(self, script: str, **params) -> dict:
        """Run `script` with the s3fs virtualenv's python: `fs` is an S3FileSystem on this proxy (with
        params["extra"] as s3_additional_kwargs), `params` the rest; what it assigns to `result` comes back."""
        prelude = (
            "import base64, json, os, sys, s3fs\n"
            "params = json.loads(sys.stdin.read())\n"
            "extra = {k: base64.b64decode(v[4:]) if isinstance(v, str) and v.startswith('b64:') else v\n"
            "         for k, v in params.pop('extra', {}).items()}\n"
            "fs = s3fs.S3FileSystem(endpoint_url=params['url'], key=params['key'], secret=params['secret'],\n"
            "    client_kwargs={'region_name': params['region'], 'verify': params['ca']}, s3_additional_kwargs=extra,\n"
            "    config_kwargs={'s3': {'addressing_style': 'path'}, 'retries': {'max_attempts': 1}})\n"
            "result = None\n"
        )
        coda = "\nprint(json.dumps(result))\n"
        params = {"url": self.url, "key": self.access_key, "secret": self.secret_key, "region": REGION, "ca": str(self.ca),
                  **params}
        proc = subprocess.run([str(s3fs_env.PYTHON), "-c", prelude + script + coda], input=json.dumps(params).encode(),
                              capture_output=True, timeout=120, cwd=self.work, env=s3fs_env.clean_env())
        assert proc.returncode == 0, proc.stderr.decode(errors="replace")[-4000:]
        return json.loads(proc.stdout.decode().strip().splitlines()[-1])


@pytest.fixture(scope="session", params=["fs", "s3"], ids=["fs-backend", "moto-backend"])
def tls_proxy(request, tmp_path_factory, moto_server):
    """The proxy over HTTPS (`tls = self-signed`) in front of each backend, for the whole session."""
    tmp = tmp_path_factory.mktemp(f"interop-{request.param}")
    (tmp / "data").mkdir()
    thread, endpoint = start_proxy(tmp / "data", request.param, moto_server, tls="self-signed")
    work = tmp / "work"
    work.mkdir()
    yield Proxy(endpoint.url, request.param, tmp / "data" / "tls" / "ca.pem", work)
    thread.stop()


@pytest.fixture
def minio(tls_proxy):
    """minio-py on the proxy; its connection pool closed after the test."""
    import urllib3

    http = urllib3.PoolManager(cert_reqs="CERT_REQUIRED", ca_certs=str(tls_proxy.ca), retries=False)
    yield tls_proxy.minio(http)
    http.clear()


@pytest.fixture
def rclone_ok():
    require("rclone")


@pytest.fixture
def s3cmd_ok():
    require("s3cmd")


@pytest.fixture
def s3fs_ok():
    s3fs_env.require()


class AccessLog(logging.Handler):
    """The proxy's JSON access-log lines (the `s3proxy.access` logger, in this process)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[dict] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(json.loads(record.getMessage()))


@pytest.fixture
def access_log():
    logger = logging.getLogger("s3proxy.access")
    handler = AccessLog()
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(level)


def mode_of(proxy: Proxy, bucket: str, key: str, **sse_c) -> str:
    """The mode the proxy reports for an object: AES256, aws:kms, or SSE-C."""
    head = proxy.client().head_object(Bucket=bucket, Key=key, **sse_c)
    return "SSE-C" if head.get("SSECustomerAlgorithm") else head.get("ServerSideEncryption", "none")


def ssec_args(key: bytes) -> dict:
    return {"SSECustomerAlgorithm": "AES256", "SSECustomerKey": key}

