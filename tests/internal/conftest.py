"""The internal records over the in-memory backend; async tests run on a fresh event loop each."""

from tests.twins import pytest_pyfunc_call  # noqa: F401 - the hook, registered by name
