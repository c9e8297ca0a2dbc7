"""A proxy per module for the operations tests, in front of a real moto server (so the backend
can be written to directly, as a pre-existing bucket would be)."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import start_proxy


@pytest.fixture(scope="module")
def moto_proxy(tmp_path_factory, moto_server):
    thread, endpoint = start_proxy(tmp_path_factory.mktemp("ops"), "s3", moto_server)
    yield endpoint
    thread.stop()


@pytest.fixture(scope="module")
def fs_proxy(tmp_path_factory):
    thread, endpoint = start_proxy(tmp_path_factory.mktemp("ops-fs"), "fs", None)
    yield endpoint
    thread.stop()
