"""The pipeline's stages (authenticate -> route -> authorize -> dispatch) and the KMS API's own route,
through a real socket: what each stage decides, in which order, and what reaches the next."""

from __future__ import annotations

import json

import pytest

from s3proxy import errors
from s3proxy.auth.credentials import Credential
from s3proxy.ops.call import Call
from s3proxy.ops.reply import Reply, empty_reply
from tests.twins import ALICE, BOB, World

from .helpers import frontend, sample, served


class Recorder:
    """An Authorizer (and the operations behind it) that records what each stage handed on."""

    def __init__(self, deny: set[str] = frozenset()) -> None:
        self.deny = deny
        self.authorized: list[tuple[str, str | None, str | None, str]] = []
        self.dispatched: list[Call] = []

    async def authorize(self, call: Call, operation: str) -> None:
        self.authorized.append((operation, call.bucket, call.key, call.user_name))
        if operation in self.deny:
            raise errors.AccessDenied()

    def operations(self, *names: str):
        async def handler(call: Call) -> Reply:
            self.dispatched.append(call)
            return empty_reply()

        return {name: handler for name in names}

ROUTES = [
    ("GET", "/", {}, "ListBuckets", None, None),
    ("GET", "/bucket?list-type=2&prefix=a", {}, "ListObjectsV2", "bucket", None),
    ("PUT", "/bucket/a/b%20c", {}, "PutObject", "bucket", "a/b c"),  # the key decoded once
    ("PUT", "/bucket/k", {"x-amz-copy-source": "/other/src"}, "CopyObject", "bucket", "k"),
    ("POST", "/bucket/k?uploads", {}, "CreateMultipartUpload", "bucket", "k"),
    ("PUT", "/bucket/k?partNumber=1&uploadId=u", {}, "UploadPart", "bucket", "k"),
    ("DELETE", "/bucket?encryption", {}, "DeleteBucketEncryption", "bucket", None),
]


@pytest.mark.parametrize(("method", "path", "headers", "operation", "bucket", "key"), ROUTES, ids=[r[3] for r in ROUTES])
async def test_the_authorizer_sees_the_routed_operation_and_resource(world: World, method, path, headers, operation,
                                                                      bucket, key) -> None:
    recorder = Recorder()
    front = frontend(world, operations=recorder.operations(operation), authorizer=recorder)
    async with served(front) as client:
        answer = await client.send(method, path, headers, b"x" if method in ("PUT", "POST") else b"", credential=BOB)
    assert answer.status == 200
    assert recorder.authorized == [(operation, bucket, key, "bob")]
    (call,) = recorder.dispatched
    assert (call.caller.user_name, call.caller.via_service) == ("bob", "s3.us-east-1.amazonaws.com")
    assert call.loopback and not call.secure and call.remote == "127.0.0.1"


async def test_a_denying_authorizer_answers_403_before_dispatch(world: World) -> None:
    recorder = Recorder(deny={"DeleteObject"})
    front = frontend(world, operations=recorder.operations("DeleteObject", "GetObject"), authorizer=recorder)
    async with served(front) as client:
        denied = await client.send("DELETE", "/bucket/k")
        allowed = await client.send("GET", "/bucket/k")
    assert (denied.status, b"<Code>AccessDenied</Code>" in denied.body) == (403, True)
    assert allowed.status == 200
    assert [c.key for c in recorder.dispatched] == ["k"] and len(recorder.authorized) == 2
    assert sample(front, "s3proxy_requests_total", operation="DeleteObject", status="403", mode="none") == 1


async def test_authentication_comes_first(world: World) -> None:
    """A wrongly signed request never reaches routing, authorization or an operation; an unsigned one
    reaches authorization only as the anonymous principal (no access key, no user), which only a
    public grant admits (the S3 authorizer's rule, tests/http/test_authorize*.py)."""
    recorder = Recorder()
    front = frontend(world, operations=recorder.operations("GetObject"), authorizer=recorder)
    async with served(front) as client:
        unsigned = await client.send("GET", "/bucket/k", sign=False)
        forged = await client.send("GET", "/bucket/k", credential=Credential(ALICE.access_key, "not alice's", "alice"))
        unknown = await client.send("GET", "/bucket/k", credential=Credential("AKIANOBODY0000000000", "x" * 30, "x"))
    assert [(a.status, a.body.split(b"<Code>")[1].split(b"<")[0]) for a in (forged, unknown)] == [
        (403, b"SignatureDoesNotMatch"), (403, b"InvalidAccessKeyId")]
    assert unsigned.status == 200  # this recorder admits everyone; the S3 authorizer admits anonymous only publicly
    assert recorder.authorized == [("GetObject", "bucket", "k", "")]
    (call,) = recorder.dispatched
    assert call.auth.credential.access_key == "" and call.auth.credential.account == ""


async def test_what_no_operation_serves_is_not_implemented(world: World) -> None:
    recorder = Recorder()
    async with served(frontend(world, operations=recorder.operations("GetObject"), authorizer=recorder)) as client:
        acl = await client.send("GET", "/bucket/k?lifecycle")  # a subresource s3proxy does not serve
        attributes = await client.send("GET", "/bucket/k?attributes")  # routed, but no operation behind it
        post = await client.send("POST", "/bucket/k")  # no operation at all
    assert (acl.status, attributes.status, post.status) == (501, 501, 405)
    assert [a for a, *_ in recorder.authorized] == ["NotImplemented", "GetObjectAttributes"]
    assert recorder.dispatched == []


async def test_the_query_an_operation_reads_is_exactly_the_signed_one(world: World) -> None:
    """SigV4 signs `+` as a plus: the operation must not see a space (auth.context)."""
    recorder = Recorder()
    async with served(frontend(world, operations=recorder.operations("ListObjectsV2"), authorizer=recorder)) as client:
        assert (await client.send("GET", "/bucket?list-type=2&prefix=a%2Bb+c")).status == 200
    (call,) = recorder.dispatched
    assert call.query["prefix"] == "a+b+c"


async def test_virtual_hosted_style_names_the_bucket_by_host(world: World) -> None:
    recorder = Recorder()
    front = frontend(world, operations=recorder.operations("GetObject"), authorizer=recorder,
                     virtual_host_domains=("s3.test",))
    async with served(front) as client:
        host = f"photos.s3.test:{client.client.port}"
        signed = client.signed("GET", "/cat.jpg", {"Host": host})
        answer = await client.send("GET", "/cat.jpg", {**signed, "Host": host}, sign=False)
    assert answer.status == 200 and recorder.authorized == [("GetObject", "photos", "cat.jpg", "alice")]


# --- the KMS API route --------------------------------------------------------------------------------------


def kms_error(answer) -> tuple[int, str, str]:  # noqa: ANN001
    assert answer.headers["Content-Type"] == "application/x-amz-json-1.1"
    document = json.loads(answer.body)
    return answer.status, document["__type"], document["message"]


async def test_the_kms_route_serves_the_key_service_as_the_signer(world: World) -> None:
    async with served(frontend(world)) as client:
        created = await client.kms("CreateKey", b'{"Description": "route"}', BOB)
        listed = await client.kms("ListKeys", b"{}", BOB)
        missing = await client.kms("DescribeKey", b'{"KeyId": "alias/none"}', BOB)
    assert created.status == 200
    key = json.loads(created.body)["KeyMetadata"]
    assert key["Description"] == "route" and key["KeyId"] in [k["KeyId"] for k in json.loads(listed.body)["Keys"]]
    assert kms_error(missing)[:2] == (400, "NotFoundException")
    assert [r["userIdentity"]["userName"] for r in world.kms.audit.records if r["eventName"] == "CreateKey"] == ["bob"]


async def test_the_kms_route_answers_authentication_failures_as_aws_json_services_do(world: World) -> None:
    async with served(frontend(world)) as client:
        unsigned = await client.kms("ListKeys", b"{}", sign=False)
        forged = await client.kms("ListKeys", b"{}", Credential(ALICE.access_key, "not alice's", "alice"))
        unknown = await client.kms("ListKeys", b"{}", Credential("AKIANOBODY0000000000", "x" * 30, "x"))
        as_s3 = await client.send("POST", "/", {"X-Amz-Target": "TrentService.ListKeys",
                                                "Content-Type": "application/x-amz-json-1.1"}, b"{}")  # signed for s3
    assert kms_error(unsigned)[:2] == (400, "MissingAuthenticationTokenException")
    assert kms_error(forged)[:2] == (400, "InvalidSignatureException")
    assert kms_error(unknown)[:2] == (400, "UnrecognizedClientException")
    assert kms_error(as_s3)[0] == 400 and b"<Error>" not in as_s3.body
    assert world.kms_calls() == []


async def test_without_a_key_service_the_kms_route_is_an_unknown_operation(world: World) -> None:
    async with served(frontend(world, kms=False)) as client:
        answer = await client.kms("ListKeys", b"{}")
    assert kms_error(answer) == (400, "UnknownOperationException", "KMS is not enabled on this endpoint")
