"""The S3 operations called directly over the in-memory twins (tests/twins): a fresh World per test."""

from __future__ import annotations

import pytest

from tests.twins import World, pytest_pyfunc_call  # noqa: F401 - the hook, registered by name


@pytest.fixture
def world() -> World:
    return World.build()
