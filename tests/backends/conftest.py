"""Backend fixtures: one un-started instance per kind; async tests run on a fresh event loop each.

The hook below runs `async def` tests (no pytest-asyncio here) and starts/closes any Backend
fixture around the test body, inside the test's own loop (aiohttp sessions belong to one loop).
"""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

import pytest

from s3proxy.backends.base import Backend
from s3proxy.backends.fs import FsBackend
from s3proxy.backends.s3 import S3Backend
from tests.twins.backend import MemoryBackend

KINDS = ["fs", "memory", "s3"]


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    if not inspect.iscoroutinefunction(pyfuncitem.obj):
        return None
    args = {name: pyfuncitem.funcargs[name] for name in pyfuncitem._fixtureinfo.argnames}
    asyncio.run(_run(pyfuncitem.obj, args))
    return True


async def _run(test: Any, args: dict[str, Any]) -> None:
    backends = [v for v in args.values() if isinstance(v, Backend)]
    for b in backends:
        await b.start()
    try:
        await test(**args)
    finally:
        for b in backends:
            await b.close()


def make_backend(kind: str, tmp_path: Any, request: pytest.FixtureRequest) -> Backend:
    if kind == "fs":
        return FsBackend(tmp_path / "store", fsync=False)
    if kind == "memory":
        return MemoryBackend()
    endpoint = request.getfixturevalue("moto_server")
    return S3Backend(endpoint, region="us-east-1", access_key="testing", secret_key="testing", retries=1)


@pytest.fixture(params=KINDS)
def backend(request: pytest.FixtureRequest, tmp_path: Any) -> Backend:
    return make_backend(request.param, tmp_path, request)
