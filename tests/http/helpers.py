"""The front door served for real (aiohttp's TestServer: a socket on loopback, in this process) over
the in-memory twins, and a client that signs its requests with botocore's SigV4 signer."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp.test_utils import TestClient, TestServer
from botocore.auth import S3SigV4Auth, SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from s3proxy import ops
from s3proxy.auth.context import AuthContext
from s3proxy.auth.credentials import Credential, CredentialStore
from s3proxy.http.metrics import Metrics
from s3proxy.http.server import Authorizer, Frontend, Handler, Origin, build_web_app
from s3proxy.kms.api import HANDLERS as KMS_OPERATIONS
from s3proxy.kms.api import KmsApi
from s3proxy.kms.caller import Caller
from tests.twins import ALICE, BOB, REGION, World


def caller_of(auth: AuthContext, origin: Origin, request_id: str, via_service: str | None) -> Caller:
    """What app.Proxy's caller_for builds: the requester as the KMS judges and audits them."""
    credential = auth.credential
    return Caller(access_key=credential.access_key, user_name=credential.user_name, account_id=credential.account,
                  source_ip=origin.remote, user_agent=origin.user_agent, request_id=request_id, via_service=via_service,
                  secure=origin.secure, region=auth.region or REGION, identity=credential.policy)


def frontend(world: World, *, operations: Mapping[str, Handler] | None = None, authorizer: Authorizer | None = None,
             kms: bool = True, **options: Any) -> Frontend:
    """The Frontend as app.Proxy builds it, over `world`; `operations` replaces the S3 operations."""
    return Frontend(
        operations if operations is not None else ops.table(world.services),
        CredentialStore([ALICE, BOB]),
        region=REGION,
        caller_of=caller_of,
        authorizer=authorizer,
        kms_api=KmsApi(world.kms) if kms else None,
        metrics=Metrics([*ops.NAMES, "NotImplemented", *("kms:" + name for name in KMS_OPERATIONS)]),
        **options,
    )


@dataclass
class Answer:
    status: int
    headers: Mapping[str, str]
    body: bytes


class Client:
    """Requests to the served front door, signed (or not) as a real client signs them."""

    def __init__(self, client: TestClient) -> None:
        self.client = client
        self.base = f"http://{client.host}:{client.port}"

    def signed(self, method: str, path: str, headers: Mapping[str, str] | None = None, body: bytes = b"",
               credential: Credential = ALICE, service: str = "s3") -> dict[str, str]:
        request = AWSRequest(method=method, url=self.base + path, data=body, headers=dict(headers or {}))
        signer = S3SigV4Auth if service == "s3" else SigV4Auth
        signer(Credentials(credential.access_key, credential.secret_key), service, REGION).add_auth(request)
        return dict(request.headers.items())

    async def send(self, method: str, path: str, headers: Mapping[str, str] | None = None, body: bytes = b"", *,
                   sign: bool = True, credential: Credential = ALICE, service: str = "s3") -> Answer:
        sent = self.signed(method, path, headers, body, credential, service) if sign else dict(headers or {})
        async with self.client.request(method, path, headers=sent, data=body or None, skip_auto_headers=("Content-Type",),
                                       allow_redirects=False) as response:
            return Answer(response.status, response.headers, await response.read())

    async def kms(self, target: str, payload: bytes, credential: Credential = ALICE, *, sign: bool = True) -> Answer:
        headers = {"X-Amz-Target": f"TrentService.{target}", "Content-Type": "application/x-amz-json-1.1"}
        return await self.send("POST", "/", headers, payload, sign=sign, credential=credential, service="kms")


@contextlib.asynccontextmanager
async def served(front: Frontend) -> AsyncIterator[Client]:
    client = TestClient(TestServer(build_web_app(front)))
    await client.start_server()
    try:
        yield Client(client)
    finally:
        await client.close()


def sample(front: Frontend, name: str, **labels: str) -> float:
    return front.metrics.registry.get_sample_value(name, labels) or 0.0

