"""The front door: one aiohttp handler that authenticates, routes to an S3 or KMS operation, renders errors.

Every response carries `x-amz-request-id`. Errors raised before the response starts become AWS
XML error documents; a failure after the headers were sent aborts the connection, so a client
sees a broken transfer, never a clean short body.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Mapping

from aiohttp import web
from multidict import CIMultiDict, MultiDict

from .. import errors
from ..auth.body import open_body
from ..auth.credentials import CredentialStore
from ..auth.context import AuthContext
from ..auth.post_policy import authenticate_post
from ..auth.verify import authenticate
from . import xml
from .form import SMALL_FILE, Form, read_form
from .metrics import Metrics, is_operational, operational_response
from .routes import ROUTED_SUBRESOURCES, route

log = logging.getLogger("s3proxy.http")
access_log = logging.getLogger("s3proxy.access")

MAX_SMALL_BODY = xml.MAX_XML_BODY
MAX_KMS_BODY = 1024 * 1024

# How AWS's JSON services name the authentication failures S3 calls by other codes.
KMS_AUTH_ERRORS = {
    "AccessDenied": ("MissingAuthenticationTokenException", 400),
    "InvalidAccessKeyId": ("UnrecognizedClientException", 400),
    "SignatureDoesNotMatch": ("InvalidSignatureException", 400),
    "RequestTimeTooSkewed": ("InvalidSignatureException", 400),
    "AuthorizationHeaderMalformed": ("IncompleteSignatureException", 400),
    "IncompleteSignature": ("IncompleteSignatureException", 400),
    "InvalidRequest": ("IncompleteSignatureException", 400),  # SigV2, which the KMS API never accepted
    "IncompleteBody": ("SerializationException", 400),
}


def kms_error_response(code: str, status: int, message: str, request_id: str) -> web.Response:
    return web.Response(
        status=status,
        body=json.dumps({"__type": code, "message": message}).encode(),
        headers={"Content-Type": "application/x-amz-json-1.1", "x-amzn-RequestId": request_id},
    )


@dataclass
class Call:
    """One authenticated S3 request, as the operations see it."""

    request: web.Request
    request_id: str
    auth: AuthContext
    bucket: str | None
    key: str | None
    query: MultiDict[str]
    headers: Mapping[str, str]
    secure: bool
    loopback: bool
    response_headers: CIMultiDict[str] = field(default_factory=CIMultiDict)
    form: Form | None = None  # POST Object: the form, read up to its file
    _body_opened: bool = False

    @property
    def user_name(self) -> str:
        return self.auth.credential.user_name

    def body(self, *, want_md5: bool = False):
        """The decoded, verified request body (a single use async iterator with `.size`)."""
        self._body_opened = True
        body = open_body(self.auth, self.headers, self.request.content, want_md5=want_md5)
        return body

    async def read_small(self, limit: int = MAX_SMALL_BODY) -> bytes:
        """A small request body (XML documents), fully verified; EntityTooLarge past `limit`."""
        body = self.body(want_md5="content-md5" in self.headers)
        chunks = bytearray()
        async for piece in body:
            chunks += piece
            if len(chunks) > limit:
                raise errors.MalformedXML()
        return bytes(chunks)


Handler = Callable[[Call], Awaitable[web.StreamResponse]]


class Frontend:
    """Authenticates and dispatches every request arriving on the listener."""

    def __init__(
        self,
        operations: Mapping[str, Handler],
        credentials: CredentialStore,
        *,
        region: str,
        kms_api: Any = None,
        kms_caller: Callable[[AuthContext, web.Request, str], Any] | None = None,
        clock: Callable[[], float] = time.time,
        rand: Callable[[int], bytes] = os.urandom,
        metrics: Metrics | None = None,
        ready: Callable[[], Awaitable[dict[str, str]]] | None = None,
        virtual_host_domains: tuple[str, ...] = (),
        sigv2: bool = True,
    ) -> None:
        self.virtual_host_domains = virtual_host_domains
        self.sigv2 = sigv2
        self.metrics = metrics or Metrics()
        self.ready = ready or _always_ready
        self.operations = operations
        self.credentials = credentials
        self.region = region
        self.kms_api = kms_api
        self.kms_caller = kms_caller
        self.clock = clock
        self.rand = rand

    def request_id(self) -> str:
        return self.rand(8).hex().upper()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        raw_path, _, raw_query = request.raw_path.partition("?")
        if is_operational(request.method, raw_path, request.headers, raw_query):
            return await operational_response(raw_path, self.metrics, self.ready)
        self.metrics.inflight.inc()
        try:
            return await self._handle(request, raw_path, raw_query)
        finally:
            self.metrics.inflight.dec()

    async def _handle(self, request: web.Request, raw_path: str, raw_query: str) -> web.StreamResponse:
        request_id = self.request_id()
        started = time.monotonic()
        op_name = "-"
        response: web.StreamResponse | None = None
        try:
            if is_form_post(request.method, raw_path, raw_query, request.headers):
                op_name = "PostObject"  # a browser upload: signed by the fields of its form, not by headers
                response = await self.form_upload(request, raw_path, request_id)
            elif "x-amz-target" in request.headers:
                op_name = "kms:" + request.headers.get("x-amz-target", "").rpartition(".")[2]
                response = await self.handle_kms(request, raw_path, raw_query, request_id)
            else:
                host_bucket = virtual_host_bucket(request.headers.get("host", ""), self.virtual_host_domains)
                auth = authenticate(
                    request.method, raw_path, raw_query, request.headers, self.credentials, now=self.clock(),
                    region=self.region, service="s3", v2_resource=f"/{host_bucket}{raw_path}" if host_bucket else None,
                    sigv2_enabled=self.sigv2, routed_subresources=ROUTED_SUBRESOURCES,
                )
                bucket, key = split_path(f"/{urllib.parse.quote(host_bucket)}{raw_path}" if host_bucket else raw_path)
                query = MultiDict(auth.query)  # exactly the query the signature covers
                op_name = route(request.method, bucket, key, query, request.headers)
                call = Call(
                    request=request,
                    request_id=request_id,
                    auth=auth,
                    bucket=bucket,
                    key=key,
                    query=query,
                    headers=request.headers,
                    secure=request.secure,
                    loopback=is_loopback(request.remote),
                )
                handler = self.operations.get(op_name)
                if handler is None:
                    raise errors.NotImplemented()
                response = await handler(call)
        except errors.S3Error as exc:
            response = self.error_response(request, exc, request_id)
        except asyncio.CancelledError:
            raise
        except ConnectionResetError:
            raise
        except Exception as exc:
            if response is not None and response.prepared:
                log.warning("request %s failed after the response started; connection aborted", request_id)
                _abort(request)
                raise
            mapped = errors.to_s3_error(exc)
            if mapped is None:  # unmapped: log with traceback, answer InternalError
                log.exception("request %s: unexpected error in %s", request_id, op_name)
                mapped = errors.InternalError()
            else:
                log.warning("request %s: %s: %s", request_id, op_name, type(exc).__name__)
            response = self.error_response(request, mapped, request_id)
        finally:
            status = getattr(response, "status", 499)
            elapsed = time.monotonic() - started
            received = request.content_length or 0
            sent = (response.content_length or 0) if response is not None and request.method != "HEAD" else 0
            self.metrics.observe(op_name, status, response.headers if response is not None else {}, elapsed, received, sent)
            access_log.info(
                json.dumps(
                    {
                        "request_id": request_id,
                        "op": op_name,
                        "method": request.method,
                        "status": status,
                        "remote": request.remote,
                        "access_key": _access_key_of(request.headers),
                        "received": received,
                        "sent": sent,
                        "ms": round(elapsed * 1000, 2),
                    }
                )
            )
        if not response.prepared:
            response.headers["x-amz-request-id"] = request_id
            response.headers.setdefault("x-amz-id-2", request_id)
            response.headers.setdefault("Server", "s3proxy")
        return response

    async def form_upload(self, request: web.Request, raw_path: str, request_id: str) -> web.StreamResponse:
        """POST Object: the form is read up to its file and authenticates the request by its fields
        (auth/post_policy.py); the operation then stores the file it streams."""
        host_bucket = virtual_host_bucket(request.headers.get("host", ""), self.virtual_host_domains)
        bucket, key = split_path(f"/{urllib.parse.quote(host_bucket)}{raw_path}" if host_bucket else raw_path)
        handler = self.operations.get("PostObject")
        if bucket is None or key is not None or handler is None:  # not to a bucket: unsigned, as any other request
            raise errors.AccessDenied()
        form = await read_form(request.content, request.headers.get("content-type"), request.content_length, small_body=SMALL_FILE)
        auth = authenticate_post(form.fields, bucket=bucket, size=form.size, store=self.credentials, now=self.clock(),
                                 region=self.region, sigv2_enabled=self.sigv2)
        call = Call(request=request, request_id=request_id, auth=auth, bucket=bucket, key=form.get("key"), query=MultiDict(),
                    headers=CIMultiDict(form.fields), secure=request.secure, loopback=is_loopback(request.remote), form=form)
        return await handler(call)

    async def handle_kms(self, request: web.Request, raw_path: str, raw_query: str, request_id: str) -> web.Response:
        """The KMS JSON API (X-Amz-Target: TrentService.*), SigV4 service `kms`, on this listener."""
        if self.kms_api is None:
            return kms_error_response("UnknownOperationException", 400, "KMS is not enabled on this endpoint", request_id)
        try:
            if request.method != "POST":
                raise errors.MethodNotAllowed()
            body = await read_json_body(request, MAX_KMS_BODY)
            auth = authenticate(
                request.method, raw_path, raw_query, request.headers, self.credentials, now=self.clock(),
                region=self.region, service="kms", body=body,
            )
        except errors.S3Error as exc:
            code, status = KMS_AUTH_ERRORS.get(exc.code, (exc.code, exc.status))
            if "HeadersNotSigned" in exc.fields:  # AWS's JSON services: a signature that leaves out a header it must cover
                code, status = "IncompleteSignatureException", 400
            return kms_error_response(code, status, exc.text, request_id)
        caller = self.kms_caller(auth, request, request_id) if self.kms_caller else None
        status, payload = await asyncio.to_thread(
            self.kms_api.dispatch, request.headers.get("x-amz-target", ""), body, caller
        )
        return web.Response(
            status=status,
            body=payload,
            headers={"Content-Type": "application/x-amz-json-1.1", "x-amzn-RequestId": request_id},
        )

    def error_response(self, request: web.Request, exc: errors.S3Error, request_id: str) -> web.Response:
        if exc.status >= 500:
            log.warning("request %s: %s %s", request_id, exc.code, exc.text)
        headers = {"x-amz-request-id": request_id, **exc.headers}
        if exc.status == 304 or request.method == "HEAD":
            return web.Response(status=exc.status, headers=headers)
        fields: dict[str, Any] = {"Code": exc.code, "Message": exc.text}
        fields.update(exc.fields)
        if exc.resource:
            fields["Resource"] = exc.resource
        fields["RequestId"] = request_id
        fields["HostId"] = request_id
        headers["Content-Type"] = "application/xml"
        return web.Response(status=exc.status, body=xml.render("Error", fields, namespace=None), headers=headers)


async def _always_ready() -> dict[str, str]:
    return {}


def _access_key_of(headers: Mapping[str, str]) -> str | None:
    """The access key id named by an Authorization header (never the signature or a secret)."""
    auth = headers.get("authorization", "")
    start = auth.find("Credential=")
    if start < 0:
        return None
    return auth[start + len("Credential="):].split("/", 1)[0][:128] or None


def is_form_post(method: str, raw_path: str, raw_query: str, headers: Mapping[str, str]) -> bool:
    """POST Object: a POST to a bucket (no key, no query) that carries no signature of its own."""
    return (method == "POST" and not raw_query and "authorization" not in headers and "x-amz-target" not in headers
            and "/" not in raw_path.strip("/"))


def virtual_host_bucket(host: str, domains: tuple[str, ...]) -> str | None:
    """Virtual-hosted-style addressing: `bucket.DOMAIN[:port]` names the bucket when DOMAIN is one
    of the configured endpoint domains (else the request is path-style)."""
    name = host.rsplit(":", 1)[0].lower() if not host.startswith("[") else ""
    for domain in domains:
        if name.endswith("." + domain) and len(name) > len(domain) + 1:
            return name[: -len(domain) - 1]
    return None


def split_path(raw_path: str) -> tuple[str | None, str | None]:
    """Path-style addressing: /bucket/key..., the key percent-decoded exactly once."""
    path = raw_path[1:] if raw_path.startswith("/") else raw_path
    if not path:
        return None, None
    bucket, sep, key = path.partition("/")
    bucket = urllib.parse.unquote(bucket)
    if not sep or key == "":
        return bucket, None
    try:
        return bucket, urllib.parse.unquote(key, errors="strict")
    except UnicodeDecodeError:
        raise errors.InvalidURI() from None


async def read_json_body(request: web.Request, limit: int) -> bytes:
    """A small request body read whole, however the client's TCP segments split it: to
    Content-Length when one is given (EntityTooLarge before reading past `limit`), else to the
    end of a chunked body. A body that ends early is IncompleteBody."""
    declared = request.content_length
    if declared is not None and declared > limit:
        raise errors.EntityTooLarge()
    try:
        if declared is not None:
            return await request.content.readexactly(declared)
        body = bytearray()
        while piece := await request.content.read(limit + 1 - len(body)):
            body += piece
            if len(body) > limit:
                raise errors.EntityTooLarge()
        return bytes(body)
    except (asyncio.IncompleteReadError, ConnectionError):
        raise errors.IncompleteBody() from None


def is_loopback(remote: str | None) -> bool:
    import ipaddress

    try:
        return remote is not None and ipaddress.ip_address(remote).is_loopback
    except ValueError:
        return False


def _abort(request: web.Request) -> None:
    transport = request.transport
    if transport is not None:
        transport.abort()


def build_web_app(frontend: Frontend) -> web.Application:
    app = web.Application(client_max_size=1024**4, handler_args={"max_field_size": 16 * 1024, "max_headers": 256})
    app.router.add_route("*", "/{tail:.*}", frontend.handle)
    return app
