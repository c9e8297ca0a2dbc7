"""The middleware around the pipeline (Frontend.handle): a request id on every answer, metrics by
operation, status and mode, and one JSON access-log line per request naming its principal."""

from __future__ import annotations

import json
import logging
import re

import pytest

from s3proxy.auth.credentials import Credential
from tests.twins import ALICE, BOB, World

from .helpers import frontend, sample, served

REQUEST_ID = re.compile(r"^[0-9A-F]{16}$")


async def test_every_answer_has_a_request_id_and_an_error_document_repeats_it(world: World) -> None:
    front = frontend(world)
    async with served(front) as client:
        answers = [
            await client.send("GET", "/"),  # 200
            await client.send("GET", "/no-such-bucket"),  # 404 from the operation
            await client.send("HEAD", "/no-such-bucket"),  # an error without a body
            await client.send("GET", "/", sign=False, headers={"Authorization": "AWS4-HMAC-SHA256 nonsense"}),  # 400 before auth
            await client.send("GET", "/", credential=Credential(BOB.access_key, "not-bobs-secret", "bob")),  # 403 signature
        ]
    ids = [a.headers.get("x-amz-request-id", "") for a in answers]
    assert [a.status for a in answers] == [200, 404, 404, 400, 403]
    assert all(REQUEST_ID.match(i) for i in ids) and len(set(ids)) == len(ids), ids
    assert all(a.headers["x-amz-id-2"] == a.headers["x-amz-request-id"] for a in answers)
    for answer in answers[1:]:
        if answer.body:
            assert f"<RequestId>{answer.headers['x-amz-request-id']}</RequestId>".encode() in answer.body
    assert answers[2].body == b""


async def test_the_kms_route_names_its_request_id_as_aws_json_services_do(world: World) -> None:
    async with served(frontend(world)) as client:
        answer = await client.kms("ListKeys", b"{}")
    assert answer.status == 200 and REQUEST_ID.match(answer.headers["x-amzn-RequestId"])
    assert "x-amz-request-id" not in answer.headers


async def test_metrics_count_by_operation_status_and_mode(world: World) -> None:
    front = frontend(world)
    async with served(front) as client:
        assert (await client.send("PUT", "/bucket")).status == 200
        put = await client.send("PUT", "/bucket/k", {"x-amz-server-side-encryption": "aws:kms"}, b"x" * 1000)
        assert put.status == 200
        got = await client.send("GET", "/bucket/k")
        assert got.status == 200 and got.body == b"x" * 1000
        missing = await client.send("GET", "/bucket/none")
        assert missing.status == 404
        assert (await client.send("GET", "/bucket?lifecycle")).status == 501
        assert (await client.send("GET", "/", sign=False, headers={"Authorization": "junk"})).status == 400
    assert sample(front, "s3proxy_requests_total", operation="PutObject", status="200", mode="aws:kms") == 1
    assert sample(front, "s3proxy_requests_total", operation="GetObject", status="200", mode="aws:kms") == 1
    assert sample(front, "s3proxy_requests_total", operation="GetObject", status="404", mode="none") == 1
    assert sample(front, "s3proxy_requests_total", operation="NotImplemented", status="501", mode="none") == 1
    assert sample(front, "s3proxy_requests_total", operation="unknown", status="400", mode="none") == 1  # never a request's bytes
    assert sample(front, "s3proxy_sent_bytes_total", operation="GetObject") == 1000 + len(missing.body)  # error documents too
    assert sample(front, "s3proxy_received_bytes_total", operation="PutObject") == 1000
    assert sample(front, "s3proxy_inflight_requests") == 0


async def test_the_access_log_has_one_json_line_per_request_with_its_principal(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    async with served(frontend(world)) as client:
        with caplog.at_level(logging.INFO, logger="s3proxy.access"):
            ok = await client.send("GET", "/", credential=BOB)
            refused = await client.send("GET", "/", credential=Credential(ALICE.access_key, "wrong secret", "alice"))
            kms = await client.kms("ListKeys", b"{}")
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "s3proxy.access"]
    assert [(e["request_id"], e["op"], e["status"], e["access_key"], e["principal"]) for e in lines] == [
        (ok.headers["x-amz-request-id"], "ListBuckets", 200, BOB.access_key, "arn:aws:iam::000000000000:user/bob"),
        (refused.headers["x-amz-request-id"], "-", 403, ALICE.access_key, None),  # named by its header, not proven
        (kms.headers["x-amzn-RequestId"], "kms:ListKeys", 200, ALICE.access_key, "arn:aws:iam::000000000000:user/alice"),
    ]
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert ALICE.secret_key not in text and BOB.secret_key not in text and "Signature=" not in text
