"""Fixtures of the hardening tests: a proxy whose S3 backend sits behind a fault-injecting hop."""

from __future__ import annotations

import uuid

import pytest

from tests.e2e.conftest import start_proxy

from .harness import FaultHop


@pytest.fixture(scope="module")
def hop(moto_server):
    """The fault hop in front of the session's moto server."""
    hop = FaultHop(moto_server).start()
    yield hop
    hop.stop()


@pytest.fixture(scope="module")
def faulty(hop, tmp_path_factory):
    """(ProxyThread, Endpoint) of a proxy with backend=s3 reaching moto only through the hop."""
    thread, endpoint = start_proxy(tmp_path_factory.mktemp("faulty"), "s3", hop.url)
    yield thread, endpoint
    thread.stop()


@pytest.fixture
def hop_clean(hop):
    """Every test starts and ends with no fault armed and nothing stalled."""
    hop.clear()
    yield hop
    hop.clear()


@pytest.fixture
def fbucket(faulty, hop_clean):
    name = f"h-{uuid.uuid4().hex[:16]}"
    faulty[1].client().create_bucket(Bucket=name)
    return name
