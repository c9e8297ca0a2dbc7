"""Operational endpoints and counters: Prometheus `/metrics`, `/healthz` (alive), `/readyz` (can serve).

They answer only anonymous GETs (no Authorization header, no presigned query), which S3 would
refuse anyway, so no authenticated S3 request changes meaning, even for buckets named `metrics`.
Counters live in a registry owned by one proxy (no process globals), labelled by S3 operation,
status and encryption mode.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Awaitable, Callable, Mapping

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

OPERATIONAL_PATHS = ("/metrics", "/healthz", "/readyz")


def is_operational(method: str, path: str, headers: Mapping[str, str], query: str) -> bool:
    return (
        method == "GET"
        and path in OPERATIONAL_PATHS
        and "authorization" not in headers
        and "X-Amz-Signature" not in query
    )


def mode_label(headers: Mapping[str, str]) -> str:
    """The encryption mode a response reports (what S3 echoes), for labelling."""
    if "x-amz-server-side-encryption-customer-algorithm" in headers:
        return "SSE-C"
    return headers.get("x-amz-server-side-encryption", "none")


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("s3proxy_requests", "Requests answered", ["operation", "status", "mode"], registry=r)
        self.latency = Histogram(
            "s3proxy_request_duration_seconds", "Time to answer (headers and body)", ["operation"], registry=r,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
        )
        self.bytes_in = Counter("s3proxy_received_bytes", "Request body bytes received", ["operation"], registry=r)
        self.bytes_out = Counter("s3proxy_sent_bytes", "Response body bytes sent", ["operation"], registry=r)
        self.inflight = Gauge("s3proxy_inflight_requests", "Requests being served", registry=r)
        self.kms = Counter("s3proxy_kms_operations", "KMS operations (API and data path)", ["operation", "outcome"], registry=r)
        self.backend_errors = Counter("s3proxy_backend_errors", "Errors from backend calls", ["call", "code"], registry=r)
        self.backend_retries = Counter("s3proxy_backend_retries", "Backend requests retried", ["method", "reason"], registry=r)

    def observe(self, operation: str, status: int, headers: Mapping[str, str], seconds: float, received: int, sent: int) -> None:
        self.requests.labels(operation, str(status), mode_label(headers)).inc()
        self.latency.labels(operation).observe(seconds)
        if received:
            self.bytes_in.labels(operation).inc(received)
        if sent:
            self.bytes_out.labels(operation).inc(sent)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class CountingAuditSink:
    """An AuditSink that counts each KMS event by operation and outcome, then passes it on."""

    def __init__(self, inner: Any, metrics: Metrics) -> None:
        self.inner = inner
        self.metrics = metrics

    def emit(self, record: Mapping[str, Any]) -> Any:
        outcome = record.get("errorCode") or "ok"
        self.metrics.kms.labels(str(record.get("eventName", "?")), str(outcome)).inc()
        return self.inner.emit(record)

    def __getattr__(self, name: str) -> Any:  # close(), path, ... of the wrapped sink
        return getattr(self.inner, name)


class InstrumentedBackend:
    """Wraps a Backend and counts the S3 errors its calls raise (404s included, by code)."""

    def __init__(self, inner: Any, metrics: Metrics) -> None:
        self._inner = inner
        self._metrics = metrics
        self.capabilities = inner.capabilities

    def __getattr__(self, name: str) -> Any:
        target = getattr(self._inner, name)
        if not asyncio.iscoroutinefunction(target):
            return target

        async def call(*args: Any, **kwargs: Any) -> Any:
            try:
                return await target(*args, **kwargs)
            except Exception as exc:
                self._metrics.backend_errors.labels(name, getattr(exc, "code", type(exc).__name__)).inc()
                raise

        return call


async def operational_response(
    path: str, metrics: Metrics, ready: Callable[[], Awaitable[dict[str, str]]]
) -> web.Response:
    if path == "/metrics":
        return web.Response(body=metrics.render(), headers={"Content-Type": CONTENT_TYPE_LATEST})
    if path == "/healthz":
        return web.json_response({"status": "alive"})
    started = time.monotonic()
    problems = await ready()
    body = {"status": "ready" if not problems else "not ready", "problems": problems, "ms": round((time.monotonic() - started) * 1000, 1)}
    return web.json_response(body, status=200 if not problems else 503)
