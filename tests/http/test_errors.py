"""Error rendering (Frontend.error_reply): AWS's XML error document for an S3Error, lower-layer errors
mapped through errors.to_s3_error, anything unmapped an InternalError logged once with its
traceback, and nothing of a request's secrets in any of it."""

from __future__ import annotations

import logging
import xml.etree.ElementTree as ET

import pytest

from s3proxy import errors
from s3proxy.format.errors import IntegrityError
from s3proxy.format.ranges import RangeNotSatisfiable
from s3proxy.kms import errors as kms_errors
from s3proxy.ops.call import Call
from s3proxy.ops.reply import Reply
from tests.twins import World, ssec_headers

from .helpers import frontend, served

CUSTOMER_KEY = bytes(range(7, 39))


def raising(exc: BaseException):
    async def handler(call: Call) -> Reply:
        raise exc

    return {"ListBuckets": handler}


def traceback_of(record: logging.LogRecord) -> str:
    """A record's traceback, as a handler would print it (s3proxy.redact, once installed by a proxy
    in this process, has already turned it into scrubbed text)."""
    if record.exc_info:
        return logging.Formatter().formatException(record.exc_info)
    return record.exc_text or ""


def fields(body: bytes) -> dict[str, str]:
    root = ET.fromstring(body)
    assert root.tag == "Error" and root.attrib == {}  # AWS's error document has no namespace
    return {child.tag: child.text or "" for child in root}


@pytest.mark.parametrize(("exc", "status", "expected"), [
    # an S3Error as it is: its code, message and extra elements, then the request id twice
    (errors.NoSuchBucket(BucketName="gone"), 404,
     {"Code": "NoSuchBucket", "Message": "The specified bucket does not exist", "BucketName": "gone"}),
    (errors.AccessDenied("Nope.", resource="/bucket/key"), 403,
     {"Code": "AccessDenied", "Message": "Nope.", "Resource": "/bucket/key"}),
    # the format's integrity failure: a 500 that says nothing about which check failed
    (IntegrityError(), 500,
     {"Code": "InternalError", "Message": "The stored object failed its integrity check and was not returned."}),
    # an unsatisfiable range: 416 naming the size and the range as S3 does
    (RangeNotSatisfiable(10, "bytes=20-"), 416,
     {"Code": "InvalidRange", "Message": "The requested range is not satisfiable", "ActualObjectSize": "10",
      "RangeRequested": "bytes=20-"}),
    # the KMS's errors as the S3 data path names them: KMS.<code>, its status; AccessDenied stays S3's
    (kms_errors.DisabledException("arn:aws:kms:us-east-1:000000000000:key/x is disabled."), 400,
     {"Code": "KMS.DisabledException", "Message": "arn:aws:kms:us-east-1:000000000000:key/x is disabled."}),
    (kms_errors.AccessDeniedException("User is not authorized."), 403,
     {"Code": "AccessDenied", "Message": "User is not authorized."}),
], ids=["s3-error", "resource", "integrity", "range", "kms-disabled", "kms-access-denied"])
async def test_errors_render_as_aws_error_documents(world: World, exc: BaseException, status: int,
                                                   expected: dict[str, str]) -> None:
    async with served(frontend(world, operations=raising(exc))) as client:
        answer = await client.send("GET", "/")
    request_id = answer.headers["x-amz-request-id"]
    assert answer.status == status and answer.headers["Content-Type"] == "application/xml"
    assert fields(answer.body) == {**expected, "RequestId": request_id, "HostId": request_id}


async def test_an_unmapped_error_is_an_internal_error_logged_once_with_its_traceback(
        world: World, caplog: pytest.LogCaptureFixture) -> None:
    async with served(frontend(world, operations=raising(RuntimeError("a detail for the log only")))) as client:
        with caplog.at_level(logging.DEBUG, logger="s3proxy"):
            answer = await client.send("GET", "/")
    assert answer.status == 500
    assert fields(answer.body)["Code"] == "InternalError" and b"detail" not in answer.body
    traced = [r for r in caplog.records if traceback_of(r)]
    assert len(traced) == 1 and "RuntimeError: a detail for the log only" in traceback_of(traced[0])
    assert answer.headers["x-amz-request-id"] in traced[0].getMessage()


async def test_a_mapped_error_is_logged_without_a_traceback(world: World, caplog: pytest.LogCaptureFixture) -> None:
    async with served(frontend(world, operations=raising(IntegrityError()))) as client:
        with caplog.at_level(logging.DEBUG, logger="s3proxy"):
            assert (await client.send("GET", "/")).status == 500
    assert [r for r in caplog.records if traceback_of(r)] == []
    # one loud line on the integrity logger names the failure; the client is told only InternalError
    assert [r.levelname for r in caplog.records if r.name == "s3proxy.integrity"] == ["ERROR"]


@pytest.mark.parametrize(("exc", "status"), [(errors.NoSuchKey(), 404), (errors.NotModified(), 304)])
async def test_head_and_not_modified_answers_carry_no_body(world: World, exc: errors.S3Error, status: int) -> None:
    async def handler(call: Call) -> Reply:
        raise exc

    async with served(frontend(world, operations={"HeadObject": handler, "GetObject": handler})) as client:
        head = await client.send("HEAD", "/bucket/key")
        got = await client.send("GET", "/bucket/key")
    assert head.status == status and head.body == b""
    assert got.status == status and (got.body == b"") == (status == 304)


async def test_error_headers_reach_the_client(world: World) -> None:
    exc = errors.NoSuchKey(headers={"x-amz-delete-marker": "true"})
    async with served(frontend(world, operations={"GetObject": raising(exc)["ListBuckets"]})) as client:
        answer = await client.send("GET", "/bucket/key")
    assert answer.status == 404 and answer.headers["x-amz-delete-marker"] == "true"


async def test_a_request_secret_quoted_by_an_error_never_reaches_the_document(world: World) -> None:
    """Whatever path built the error, the SSE-C key and the signature it quotes are scrubbed (s3proxy.redact)."""
    async def quoting(call: Call) -> Reply:
        key = call.headers["x-amz-server-side-encryption-customer-key"]
        signature = call.headers["authorization"].rpartition("Signature=")[2]
        raise errors.InvalidArgument(f"did not like {key}", ArgumentValue=key, SignatureProvided=signature)

    headers = ssec_headers(CUSTOMER_KEY)
    async with served(frontend(world, operations={"GetObject": quoting})) as client:
        signed = client.signed("GET", "/bucket/key", headers)
        answer = await client.send("GET", "/bucket/key", signed, sign=False)
    document = fields(answer.body)
    assert answer.status == 400 and document["Code"] == "InvalidArgument"
    signature = signed["Authorization"].rpartition("Signature=")[2]
    for secret in (headers["x-amz-server-side-encryption-customer-key"], CUSTOMER_KEY.hex(), signature):
        assert secret not in answer.body.decode()
    assert "did not like" in document["Message"]
