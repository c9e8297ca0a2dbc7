"""The modes tests run `async def` tests on a fresh event loop each (tests/twins)."""

from tests.twins import pytest_pyfunc_call  # noqa: F401 - the hook, registered by name
