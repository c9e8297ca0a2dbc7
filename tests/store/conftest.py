"""The object store over the in-memory twins (tests/twins): a fresh World per test, async tests run."""

from __future__ import annotations

import pytest

from tests.twins import World, pytest_pyfunc_call  # noqa: F401 - the hook, registered by name


@pytest.fixture
def world() -> World:
    return World.build(chunk_size=1024)  # small chunks: a few KiB cross many chunk edges
