"""Prometheus /metrics, /healthz, /readyz, and the JSON access log."""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
import uuid

from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.conftest import start_proxy


def _samples(url: str) -> dict[tuple[str, tuple], float]:
    text = urllib.request.urlopen(url + "/metrics").read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value for fam in text_string_to_metric_families(text) for s in fam.samples
    }


def test_metrics_count_requests_by_operation_status_and_mode_bytes_and_kms(fs_proxy):
    s3 = fs_proxy.client()
    bucket = f"m-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket)
    before = _samples(fs_proxy.url)
    s3.put_object(Bucket=bucket, Key="k", Body=b"x" * 1000, ServerSideEncryption="aws:kms")
    s3.get_object(Bucket=bucket, Key="k")["Body"].read()
    after = _samples(fs_proxy.url)

    def delta(name, **labels):
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0) - before.get(key, 0)

    assert delta("s3proxy_requests_total", operation="PutObject", status="200", mode="aws:kms") == 1
    assert delta("s3proxy_requests_total", operation="GetObject", status="200", mode="aws:kms") == 1
    assert delta("s3proxy_received_bytes_total", operation="PutObject") >= 1000
    assert delta("s3proxy_sent_bytes_total", operation="GetObject") == 1000
    assert delta("s3proxy_kms_operations_total", operation="GenerateDataKey", outcome="ok") == 1
    assert delta("s3proxy_kms_operations_total", operation="Decrypt", outcome="ok") == 1
    assert delta("s3proxy_request_duration_seconds_count", operation="GetObject") == 1
    assert after[("s3proxy_inflight_requests", ())] == 0


def test_health_and_readiness(fs_proxy):
    assert json.loads(urllib.request.urlopen(fs_proxy.url + "/healthz").read())["status"] == "alive"
    assert json.loads(urllib.request.urlopen(fs_proxy.url + "/readyz").read())["status"] == "ready"


def test_readyz_answers_503_naming_the_backend_when_it_is_unreachable(tmp_path):
    thread, endpoint = start_proxy(tmp_path, "s3", "http://127.0.0.1:9")  # discard port: nothing listens
    try:
        try:
            urllib.request.urlopen(endpoint.url + "/readyz")
            raise AssertionError("readyz said ready with no backend")
        except urllib.error.HTTPError as exc:
            assert exc.code == 503
            assert "backend" in json.loads(exc.read())["problems"]
        assert urllib.request.urlopen(endpoint.url + "/healthz").status == 200  # alive all the same
    finally:
        thread.stop()


def test_operational_paths_do_not_shadow_authenticated_s3_requests(fs_proxy):
    s3 = fs_proxy.client()
    s3.create_bucket(Bucket="metrics")
    s3.put_object(Bucket="metrics", Key="k", Body=b"v")
    assert [o["Key"] for o in s3.list_objects_v2(Bucket="metrics")["Contents"]] == ["k"]


def test_access_log_is_json_with_request_id_and_access_key_but_no_secret(fs_proxy, caplog):
    s3 = fs_proxy.client()
    with caplog.at_level(logging.INFO, logger="s3proxy.access"):
        s3.list_buckets()
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "s3proxy.access"]
    assert lines and lines[-1]["op"] == "ListBuckets" and lines[-1]["status"] == 200
    assert len(lines[-1]["request_id"]) == 16 and lines[-1]["access_key"] == fs_proxy.access_key
    assert all(fs_proxy.secret_key not in r.getMessage() for r in caplog.records)


def test_backend_retries_are_counted_by_method_and_reason():
    """A backend that throttles once (503 SlowDown) is retried, and the retry shows in the counter."""
    import asyncio

    from aiohttp import web

    from s3proxy.backends.s3 import S3Backend
    from s3proxy.http.metrics import Metrics

    calls = []

    async def handler(request: web.Request) -> web.Response:
        calls.append(request.method)
        if len(calls) == 1:
            return web.Response(status=503, body=b"<Error><Code>SlowDown</Code><Message>slow</Message></Error>")
        return web.Response(status=200)

    async def go() -> None:
        server = web.Server(handler)
        runner = web.ServerRunner(server)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        metrics = Metrics()
        backend = S3Backend(f"http://127.0.0.1:{port}", region="us-east-1", access_key="a", secret_key="b", backoff=0.001,
                            on_retry=lambda method, reason: metrics.backend_retries.labels(method, reason).inc())
        await backend.start()
        try:
            await backend.head_bucket("bucket")
        finally:
            await backend.close()
            await runner.cleanup()
        assert metrics.registry.get_sample_value("s3proxy_backend_retries_total", {"method": "HEAD", "reason": "503"}) == 1

    asyncio.run(go())
    assert calls == ["HEAD", "HEAD"]
