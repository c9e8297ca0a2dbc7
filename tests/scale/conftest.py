"""Fixtures for scale-out: several proxies over one S3 backend (a real moto server) and one real
PostgreSQL keystore, each proxy with its own data dir (its own audit chain) and the same root key."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from s3proxy.kms.errors import KmsError
from tests.e2e.conftest import Endpoint, start_proxy

BOUND = 1.0  # seconds: every change made on one proxy shows on every other within this (docs/SCALING.md)


def within(bound: float, check: Callable[[], Any]) -> float:
    """Poll `check` (an assertion) until it passes; fail unless it passed within `bound` seconds. The time taken."""
    began = time.monotonic()
    while True:
        try:
            check()
            return time.monotonic() - began
        except (AssertionError, ClientError, KmsError):  # not yet
            if time.monotonic() - began > bound:
                raise
            time.sleep(0.01)


@pytest.fixture
def proxies(tmp_path: Path, moto_server: str, pg_url: str) -> Iterator[Callable[[int], list[Endpoint]]]:
    """`proxies(n)`: n proxies sharing the moto backend and one fresh PostgreSQL keystore."""
    threads = []

    def start(n: int) -> list[Endpoint]:
        out = []
        for i in range(n):
            data = tmp_path / f"node{i}"
            data.mkdir()
            if i:
                shutil.copy2(tmp_path / "node0.root.key", tmp_path / f"node{i}.root.key")  # one root key, as a mounted secret
            thread, endpoint = start_proxy(data, "s3", moto_server, keystore_url=pg_url)
            threads.append(thread)
            out.append(endpoint)
        return out

    yield start
    for t in threads:
        t.stop()
