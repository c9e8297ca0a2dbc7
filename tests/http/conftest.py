"""The front door over the in-memory twins (tests/twins); async tests run on a fresh event loop each."""

from __future__ import annotations

import pytest

from tests.twins import World, pytest_pyfunc_call  # noqa: F401 - the hook, registered by name


@pytest.fixture
def world() -> World:
    return World.build()
