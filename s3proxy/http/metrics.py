"""Operational endpoints and counters: Prometheus `/metrics`, `/healthz` (alive), `/readyz` (can serve).

They answer only anonymous GETs (no Authorization header, no presigned query), which S3 would
refuse anyway, so no authenticated S3 request changes meaning, even for buckets named `metrics`.
Counters live in a registry owned by one proxy (no process globals), labelled by S3 operation,
status and encryption mode.

Anonymous requests cost O(1) here and leave no state: every label value comes from a fixed
vocabulary (the operation names the proxy serves, known statuses, modes and error codes, else
`unknown`/`other`), never from request bytes; `/metrics` renders in a worker thread, one render
at a time; `/readyz` answers the last result of a probe that runs on a timer, so no request
causes a backend or keystore call.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from .. import errors
from ..kms.errors import KmsError

OPERATIONAL_PATHS = ("/metrics", "/healthz", "/readyz")

UNKNOWN = "unknown"  # an operation outside the vocabulary (unrouted, unauthenticated, unknown target)
OTHER = "other"  # a mode or error code outside its fixed set
STATUSES = frozenset("200 204 206 304 400 403 404 405 409 411 412 416 499 500 501 503".split())
MODES = frozenset(("none", "AES256", "aws:kms", "aws:kms:dsse", "SSE-C"))
S3_CODES = frozenset(errors.BY_CODE)
KMS_CODES = frozenset({KmsError.code, *(cls.code for cls in KmsError.__subclasses__())})


def is_operational(method: str, path: str, headers: Mapping[str, str], query: str,
                   paths: Iterable[str] = OPERATIONAL_PATHS) -> bool:
    return (
        method == "GET"
        and path in paths
        and "authorization" not in headers
        and "X-Amz-Signature" not in query
    )


def mode_label(headers: Mapping[str, str]) -> str:
    """The encryption mode a response reports (what S3 echoes), for labelling."""
    if "x-amz-server-side-encryption-customer-algorithm" in headers:
        return "SSE-C"
    mode = headers.get("x-amz-server-side-encryption", "none")
    return mode if mode in MODES else OTHER


def status_label(status: int) -> str:
    text = str(status)
    return text if text in STATUSES else f"{status // 100}xx"


class Metrics:
    def __init__(self, operations: Iterable[str] = ()) -> None:
        """`operations`: the operation label vocabulary (S3 names, `kms:`-prefixed KMS names)."""
        self.operations = frozenset(operations) | {UNKNOWN}
        self._render_task: asyncio.Future[bytes] | None = None
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
        self.connections = Gauge("s3proxy_open_connections", "Client connections open on the main listener", registry=r)
        self.refused = Counter(
            "s3proxy_connections_refused", "Connections answered and closed by a limit", ["reason"], registry=r
        )
        self.kms = Counter("s3proxy_kms_operations", "KMS operations (API and data path)", ["operation", "outcome"], registry=r)
        self.backend_errors = Counter("s3proxy_backend_errors", "Errors from backend calls", ["call", "code"], registry=r)
        self.backend_retries = Counter("s3proxy_backend_retries", "Backend requests retried", ["method", "reason"], registry=r)

    def operation(self, name: str) -> str:
        """`name` when it is in the vocabulary, else `unknown`."""
        return name if name in self.operations else UNKNOWN

    def observe(self, operation: str, status: int, headers: Mapping[str, str], seconds: float, received: int, sent: int) -> None:
        operation = self.operation(operation)
        self.requests.labels(operation, status_label(status), mode_label(headers)).inc()
        self.latency.labels(operation).observe(seconds)
        if received:
            self.bytes_in.labels(operation).inc(received)
        if sent:
            self.bytes_out.labels(operation).inc(sent)

    def render(self) -> bytes:
        return generate_latest(self.registry)

    async def exposition(self) -> bytes:
        """render() in a worker thread; scrapes that arrive during a render share it."""
        if self._render_task is None or self._render_task.done():
            self._render_task = asyncio.ensure_future(asyncio.to_thread(self.render))
        return await asyncio.shield(self._render_task)


class CountingAuditSink:
    """An AuditSink that counts each KMS event by operation and outcome, then passes it on."""

    def __init__(self, inner: Any, metrics: Metrics) -> None:
        self.inner = inner
        self.metrics = metrics

    def emit(self, record: Mapping[str, Any]) -> Any:
        name = str(record.get("eventName"))
        code = record.get("errorCode")
        outcome = "ok" if not code else code if code in KMS_CODES else OTHER
        self.metrics.kms.labels(name if "kms:" + name in self.metrics.operations else UNKNOWN, outcome).inc()
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
                code = getattr(exc, "code", None)  # a backend's error code is clamped; a class name is ours
                label = type(exc).__name__ if code is None else code if code in S3_CODES else OTHER
                self._metrics.backend_errors.labels(name, label).inc()
                raise

        return call


class Readiness:
    """What keeps the proxy from serving (`probe()`: problems by component, empty when ready), asked
    every `interval` seconds by a background task; requests read the last answer and never probe."""

    def __init__(self, probe: Callable[[], Awaitable[dict[str, str]]], interval: float) -> None:
        self.probe = probe
        self.interval = interval
        self.problems: dict[str, str] = {"probe": "pending"}
        self._answered = asyncio.Event()
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="s3proxy-readiness")

    async def stop(self) -> None:
        """Ends the timer; a probe in flight is let finish (its calls may be in worker threads
        that must not outlive what they use)."""
        self._stopping.set()
        if self._task is not None:
            await self._task
            self._task = None

    async def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                self.problems = await self.probe()
            except Exception as exc:  # a probe that fails is an answer too
                self.problems = {"probe": type(exc).__name__}
            self._answered.set()
            try:
                await asyncio.wait_for(self._stopping.wait(), self.interval)
            except TimeoutError:
                pass

    async def __call__(self) -> dict[str, str]:
        """The last answer (waits for the first probe only while it has not answered yet)."""
        if not self._answered.is_set():
            try:
                await asyncio.wait_for(self._answered.wait(), 15)
            except TimeoutError:
                pass
        return self.problems


def build_operational_app(metrics: Metrics, ready: Callable[[], Awaitable[dict[str, str]]]) -> web.Application:
    """The separate listener (setting metrics_listen): only the operational endpoints, anonymous."""

    async def handle(request: web.Request) -> web.Response:
        return await operational_response(request.path, metrics, ready)

    app = web.Application()
    for path in OPERATIONAL_PATHS:
        app.router.add_get(path, handle, allow_head=False)
    return app


async def operational_response(
    path: str, metrics: Metrics, ready: Callable[[], Awaitable[dict[str, str]]]
) -> web.Response:
    if path == "/metrics":
        return web.Response(body=await metrics.exposition(), headers={"Content-Type": CONTENT_TYPE_LATEST})
    if path == "/healthz":
        return web.json_response({"status": "alive"})
    started = time.monotonic()
    problems = await ready()
    body = {
        "status": "ready" if not problems else "not ready",
        "problems": problems,
        "ms": round((time.monotonic() - started) * 1000, 1),
    }
    return web.json_response(body, status=200 if not problems else 503)
