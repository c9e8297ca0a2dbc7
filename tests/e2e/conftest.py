"""The proxy, running for real on loopback, in front of each real backend; clients are real boto3 and awscli."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import boto3
import pytest
from botocore.config import Config

from s3proxy.app import ProxyThread
from s3proxy.kms.keystore import sqlite_path
from s3proxy.settings import load
from tests.conftest import register_secret

ACCESS_KEY = "AKIAS3PROXYTEST0001"
SECRET_KEY = "s3proxy-test-secret-key-0001/abcdefghij"
OTHER_ACCESS_KEY = "AKIAS3PROXYTEST0002"
OTHER_SECRET_KEY = "s3proxy-test-secret-key-0002/abcdefghij"
REGION = "us-east-1"
ACCOUNT = "000000000000"  # alice and bob: two users of one account
register_secret(SECRET_KEY)
register_secret(OTHER_SECRET_KEY)


@dataclass
class Endpoint:
    """A running proxy and how to reach it and what is behind it."""

    url: str
    backend_kind: str
    data_dir: Path
    backend_url: str | None = None
    access_key: str = ACCESS_KEY
    secret_key: str = field(default=SECRET_KEY, repr=False)

    def client(self, service: str = "s3", *, access_key: str | None = None, secret_key: str | None = None, **config):
        return boto3.client(
            service,
            endpoint_url=self.url,
            aws_access_key_id=access_key or self.access_key,
            aws_secret_access_key=secret_key or self.secret_key,
            region_name=REGION,
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}, **config),
        )

    def backend_client(self):
        """A client for the backend itself (moto), bypassing the proxy; None for the fs backend."""
        if self.backend_url is None:
            return None
        return boto3.client(
            "s3", endpoint_url=self.backend_url, aws_access_key_id="backend", aws_secret_access_key="backend", region_name=REGION
        )

    def aws(
        self, *args: str, check: bool = True, input: bytes | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess:
        """Run the real awscli (v1, from PyPI) against the proxy."""
        env = dict(os.environ)
        env.update(
            AWS_ACCESS_KEY_ID=self.access_key,
            AWS_SECRET_ACCESS_KEY=self.secret_key,
            AWS_DEFAULT_REGION=REGION,
            AWS_CONFIG_FILE=os.devnull,
            AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        )
        cmd = [sys.executable, "-m", "awscli", "--endpoint-url", self.url, *args]
        proc = subprocess.run(cmd, env=env, input=input, capture_output=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"aws {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr.decode(errors='replace')}")
        return proc


def start_proxy(tmp: Path, backend: str, moto_url: str | None, **extra: str) -> tuple[ProxyThread, Endpoint]:
    flags = {
        "host": "127.0.0.1",
        "port": "0",
        "data_dir": str(tmp),
        "access_key": ACCESS_KEY,
        "secret_key": SECRET_KEY,
        "backend": backend,
        **extra,
    }
    if backend == "s3":
        flags.update(backend_url=moto_url, backend_access_key="backend", backend_secret_key="backend")
    credentials_file = tmp / "users.toml"
    credentials_file.write_text(
        f'[[credentials]]\naccess_key = "{ACCESS_KEY}"\nsecret_key = "{SECRET_KEY}"\nuser = "alice"\naccount = "{ACCOUNT}"\n'
        f'[[credentials]]\naccess_key = "{OTHER_ACCESS_KEY}"\nsecret_key = "{OTHER_SECRET_KEY}"\n'
        f'user = "bob"\naccount = "{ACCOUNT}"\n'
    )
    flags.pop("access_key")
    flags.pop("secret_key")
    flags["config"] = str(credentials_file)
    settings = load(flags, env={})
    thread = ProxyThread(settings).start()
    return thread, Endpoint(thread.url, backend, tmp, moto_url if backend == "s3" else None)


def start_peer(of: Path, backend: str, moto_url: str | None, **extra: str) -> tuple[ProxyThread, Endpoint]:
    """Another proxy as on another host: its own data dir (audit log, credentials), the same backend,
    and the keystore and root key of the proxy on `of`, which scale-out shares (a process has its
    own audit chain, so two proxies never share one data dir: kms/audit.py)."""
    own = Path(tempfile.mkdtemp(prefix="peer-", dir=of.parent))
    first = load({"data_dir": str(of)}, env={})  # where that proxy keeps its root key by default
    return start_proxy(own, backend, moto_url, keystore_url=f"sqlite:///{sqlite_path(None, of)}",
                       root_key_file=str(first.root_key_path), **extra)


@pytest.fixture(scope="session", params=["fs", "s3"], ids=["fs-backend", "moto-backend"])
def proxy(request, tmp_path_factory, moto_server):
    """The proxy in front of the filesystem backend and in front of a real moto server."""
    tmp = tmp_path_factory.mktemp(f"proxy-{request.param}")
    thread, endpoint = start_proxy(tmp, request.param, moto_server)
    yield endpoint
    thread.stop()


@pytest.fixture
def s3(proxy):
    return proxy.client()


@pytest.fixture
def bucket(s3):
    name = f"t-{uuid.uuid4().hex[:16]}"
    s3.create_bucket(Bucket=name)
    return name
