"""Fixtures for the KMS tests: the key service served as the AWS KMS JSON API on loopback.

`KmsServer` runs a small aiohttp app in a background thread that calls `KmsApi.dispatch`. It takes
the access key from the Authorization header's `Credential=<AK>/...` WITHOUT verifying the
signature: the lead swaps this for the real app (which verifies SigV4) when merging.
"""

from __future__ import annotations

import asyncio
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from aiohttp import web
from botocore.config import Config as BotoConfig

from s3proxy.kms.api import CONTENT_TYPE, KmsApi
from s3proxy.kms.caller import Caller
from s3proxy.kms.service import KeyService

ACCOUNT = "000000000000"
REGION = "us-east-1"
USERS = {"AKIAALICE000000000001": "alice", "AKIABOB00000000000002": "bob", "AKIAADMIN000000000003": "admin"}
SECRET = "secret-key-not-verified-by-this-fixture"
_CREDENTIAL = re.compile(r"Credential=([^/,\s]+)/")


class KmsServer:
    """A KMS endpoint over one data dir. `.client(user)` gives a boto3 KMS client for that user."""

    def __init__(self, data_dir: Path, *, clock: Callable[[], float] = time.time) -> None:
        self.data_dir = data_dir
        self.service = KeyService.open(data_dir, region=REGION, account_id=ACCOUNT,
                                       administrators=["arn:aws:iam::000000000000:user/admin"], clock=clock)
        self.api = KmsApi(self.service)
        self.access_key = "AKIAALICE000000000001"
        self.secret_key = SECRET
        self._clients: list[Any] = []
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        self._ready.wait(10)
        self.endpoint = f"http://127.0.0.1:{self._port}"

    async def _handle(self, request: web.Request) -> web.Response:
        found = _CREDENTIAL.search(request.headers.get("Authorization", ""))
        user = USERS.get(found.group(1)) if found else None
        if user is None:
            return web.Response(
                status=400,
                content_type=CONTENT_TYPE.split(";")[0],
                body=b'{"__type":"UnrecognizedClientException",'
                b'"message":"The security token included in the request is invalid."}',
            )
        caller = Caller(found.group(1), user, ACCOUNT, source_ip=request.remote,
                        user_agent=request.headers.get("User-Agent"), request_id=None, secure=request.secure, region=REGION)
        body = await request.read()
        status, out = await asyncio.to_thread(self.api.dispatch, request.headers.get("X-Amz-Target", ""), body, caller)
        return web.Response(status=status, body=out, headers={"Content-Type": CONTENT_TYPE})

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application()
        app.router.add_post("/", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        self._loop.run_until_complete(self._runner.setup())
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        self._loop.run_until_complete(site.start())
        self._port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self._ready.set()
        self._loop.run_forever()

    def client(self, user: str = "alice") -> Any:
        ak = next(k for k, v in USERS.items() if v == user)
        client = boto3.client(
            "kms", endpoint_url=self.endpoint, region_name=REGION, aws_access_key_id=ak, aws_secret_access_key=SECRET,
            config=BotoConfig(retries={"max_attempts": 1}),
        )
        self._clients.append(client)  # closed with the server: no sockets left for the GC to warn about
        return client

    def cli_env(self, user: str = "alice") -> dict[str, str]:
        ak = next(k for k, v in USERS.items() if v == user)
        return {**os.environ, "AWS_ACCESS_KEY_ID": ak, "AWS_SECRET_ACCESS_KEY": SECRET, "AWS_DEFAULT_REGION": REGION}

    def close(self) -> None:
        if self._loop.is_closed():
            return
        for client in self._clients:
            client.close()
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()
        self.service.close()


@pytest.fixture(scope="session")
def kms(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KmsServer]:
    server = KmsServer(tmp_path_factory.mktemp("kms-session"))
    yield server
    server.close()


@pytest.fixture
def kms_factory(tmp_path: Path) -> Iterator[Callable[..., KmsServer]]:
    """Start (and restart) servers over this test's own data dir."""
    started: list[KmsServer] = []

    def start(**kwargs: Any) -> KmsServer:
        server = KmsServer(tmp_path, **kwargs)
        started.append(server)
        return server

    yield start
    for s in started:
        s.close()


@pytest.fixture
def alice(kms: KmsServer) -> Iterator[Any]:
    client = kms.client("alice")
    yield client
    client.close()


@pytest.fixture
def bob(kms: KmsServer) -> Iterator[Any]:
    client = kms.client("bob")
    yield client
    client.close()
from tests.kms.softhsm import softhsm  # noqa: E402,F401  (the SoftHSM2 fixture)
