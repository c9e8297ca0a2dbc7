"""Fixtures for the client-side encryption tests: an S3 + KMS endpoint, a bucket on it, a KMS key, Ruby.

Every test that takes `endpoint` runs twice: against a plain moto server (S3 and KMS), and through
s3proxy, which is then both the S3 endpoint and the KMS (its AWS KMS JSON API on the same listener).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest

from tests.e2e.conftest import ACCESS_KEY, SECRET_KEY, start_proxy
from tests.system_packages import require


@dataclass(frozen=True)
class Endpoint:
    """Where the tests talk S3 and KMS."""

    name: str
    s3_url: str
    kms_url: str
    region: str = "us-east-1"
    access_key: str = "testing"
    secret_key: str = field(default="testing", repr=False)

    def _kw(self, url: str) -> dict[str, Any]:
        return {"endpoint_url": url, "region_name": self.region, "aws_access_key_id": self.access_key,
                "aws_secret_access_key": self.secret_key}

    def s3(self) -> Any:
        return boto3.client("s3", **self._kw(self.s3_url))

    def kms(self) -> Any:
        return boto3.client("kms", **self._kw(self.kms_url))

    def env(self) -> dict[str, str]:
        """Environment for subprocesses (the CLI, Ruby) to reach this endpoint."""
        return {"AWS_ACCESS_KEY_ID": self.access_key, "AWS_SECRET_ACCESS_KEY": self.secret_key,
                "AWS_DEFAULT_REGION": self.region, "AWS_REGION": self.region}


@pytest.fixture(scope="session", params=["moto", "s3proxy"])
def endpoint(request: pytest.FixtureRequest, moto_server: str, tmp_path_factory: pytest.TempPathFactory) -> Endpoint:
    if request.param == "moto":
        return Endpoint("moto", moto_server, moto_server)
    # s3proxy on its embedded filesystem backend; the moto backend is covered by test_proxy_passthrough.py
    thread, proxy = start_proxy(tmp_path_factory.mktemp("cse-s3proxy"), "fs", None)
    request.addfinalizer(thread.stop)
    return Endpoint("s3proxy", proxy.url, proxy.url, access_key=ACCESS_KEY, secret_key=SECRET_KEY)


@pytest.fixture
def bucket(endpoint: Endpoint) -> str:
    name = f"cse-{uuid.uuid4().hex[:20]}"
    endpoint.s3().create_bucket(Bucket=name)
    return name


@pytest.fixture(scope="session")
def kms_key_id(endpoint: Endpoint) -> str:
    return endpoint.kms().create_key(Description="s3proxy cse tests")["KeyMetadata"]["KeyId"]


@pytest.fixture(scope="session")
def other_kms_key_id(endpoint: Endpoint) -> str:
    return endpoint.kms().create_key(Description="s3proxy cse tests, second key")["KeyMetadata"]["KeyId"]


# --- Ruby (Debian's ruby-aws-sdk-s3, installed by the set-up: scripts/test) ------------------------------


@pytest.fixture(scope="session")
def ruby_tool() -> None:
    """Debian's Ruby S3 Encryption Client, or a skip that says how to get it."""
    require("ruby-aws-sdk-s3")
