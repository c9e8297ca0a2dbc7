"""Fixtures for the client-side encryption tests: an S3 + KMS endpoint, a bucket on it, a KMS key."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import boto3
import pytest


@dataclass(frozen=True)
class Endpoint:
    """Where the tests talk S3 and KMS; the lead adds an s3proxy variant by adding a param below."""

    name: str
    s3_url: str
    kms_url: str
    region: str = "us-east-1"
    access_key: str = "testing"
    secret_key: str = "testing"

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


@pytest.fixture(scope="session", params=["moto"])
def endpoint(request: pytest.FixtureRequest, moto_server: str) -> Endpoint:
    if request.param == "moto":
        return Endpoint("moto", moto_server, moto_server)
    raise AssertionError(request.param)


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
