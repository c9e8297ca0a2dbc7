"""The front door: a pipeline from an HTTP request to an operation's Reply, with its middleware.

Stages, in order, each a method of Frontend:

    authenticate   the signature (SigV4 header or presigned, SigV2): who asks, and the query it signed
    route          method + bucket/key + query -> the S3 operation (pure: no I/O)
    authorize      may this principal run this operation on this resource (the Authorizer seam)
    dispatch       the operation's handler -> a Reply (status, headers, body)

Routing comes before authorization because an authorization decision is about an action
(s3:GetObject) on a resource (the object's ARN), which routing names. The KMS API is a route of
its own (X-Amz-Target: TrentService.*): SigV4 service `kms`, JSON errors, and the key service's
own policy decisions. So is POST Object (a browser upload): it is authenticated by the fields of
its form (auth/post_policy.py), then authorized and dispatched as PostObject. Around the pipeline,
as middleware: the request id, metrics, the access log and error rendering (AWS's XML error
document; nothing of a secret in it, s3proxy.redact). The Reply is sent by s3proxy.http.respond,
which owns streaming and abort.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import os
import re
import time
import urllib.parse
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from aiohttp import web
from multidict import CIMultiDict, MultiDict

from .. import errors, redact
from ..auth.context import AuthContext
from ..auth.credentials import CredentialStore
from ..auth.form import SMALL_FILE, read_form
from ..auth.post_policy import authenticate_post
from ..auth.verify import authenticate
from ..format.errors import IntegrityError
from ..kms.caller import Caller
from ..ops import xml
from ..ops.call import Call
from ..ops.reply import Reply
from . import listener, respond
from .metrics import OPERATIONAL_PATHS, Metrics, is_operational, operational_response
from .respond import log_integrity_failure
from .routes import ROUTED_SUBRESOURCES, route

log = logging.getLogger("s3proxy.http")
access_log = logging.getLogger("s3proxy.access")

MAX_KMS_BODY = 1024 * 1024
KMS_CONTENT_TYPE = "application/x-amz-json-1.1"

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

Handler = Callable[[Call], Awaitable[Reply]]
# (who signed, the facts of the connection, request id, via_service) -> the Caller the KMS judges
CallerFactory = Callable[[AuthContext, "Origin", str, "str | None"], Caller]


@dataclass(frozen=True)
class Origin:
    """Where a request came from, as policies and the audit log see it."""

    remote: str | None
    user_agent: str | None
    secure: bool


class Authorizer(Protocol):
    """The authorization stage: raise errors.AccessDenied when `call` may not run `operation`."""

    async def authorize(self, call: Call, operation: str) -> None: ...


class AllowAuthenticated:
    """Every authenticated user may run every operation: the behaviour before accounts and
    policies (the access-control work fills this stage)."""

    async def authorize(self, call: Call, operation: str) -> None:
        return None


@dataclass
class Exchange:
    """What the middleware records about one request while the pipeline runs."""

    request_id: str
    operation: str = "-"
    access_key: str | None = None
    principal: str | None = None


class Frontend:
    """The pipeline and its middleware, for every request arriving on the listener."""

    def __init__(
        self,
        operations: Mapping[str, Handler],
        credentials: CredentialStore,
        *,
        region: str,
        caller_of: CallerFactory,
        authorizer: Authorizer | None = None,
        kms_api: Any = None,
        clock: Callable[[], float] = time.time,
        rand: Callable[[int], bytes] = os.urandom,
        metrics: Metrics | None = None,
        ready: Callable[[], Awaitable[dict[str, str]]] | None = None,
        virtual_host_domains: tuple[str, ...] = (),
        sigv2: bool = True,
        operational_paths: tuple[str, ...] = OPERATIONAL_PATHS,
    ) -> None:
        self.operations = operations
        self.credentials = credentials
        self.region = region
        self.caller_of = caller_of
        self.authorizer: Authorizer = authorizer or AllowAuthenticated()
        self.kms_api = kms_api
        self.clock = clock
        self.rand = rand
        self.metrics = metrics or Metrics(operations)
        self.ready = ready or _always_ready
        self.virtual_host_domains = virtual_host_domains
        self.sigv2 = sigv2
        self.operational_paths = operational_paths
        self.via_s3 = f"s3.{region}.amazonaws.com"

    def request_id(self) -> str:
        return self.rand(8).hex().upper()

    # --- middleware ---------------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """The aiohttp handler: request id, metrics, access log and error rendering around the pipeline."""
        raw_path, _, raw_query = request.raw_path.partition("?")
        if is_operational(request.method, raw_path, request.headers, raw_query, self.operational_paths):
            return await operational_response(raw_path, self.metrics, self.ready)
        exchange = Exchange(self.request_id())
        started = time.monotonic()
        status, sent = 499, 0
        response_headers: Mapping[str, str] = {}
        self.metrics.inflight.inc()
        try:
            kms = "x-amz-target" in request.headers
            try:
                if is_form_post(request.method, raw_path, raw_query, request.headers):
                    reply = await self.form_route(request, raw_path, exchange)
                elif kms:
                    reply = await self.kms_route(request, raw_path, raw_query, exchange)
                else:
                    reply = await self.pipeline(request, raw_path, raw_query, exchange)
            except Exception as exc:
                reply = self.error_reply(request, raw_query, exc, exchange)
            self._stamp(reply, exchange, kms)
            status, response_headers = reply.status, reply.headers
            response = await respond.send(
                request, reply, request_id=exchange.request_id,
                on_error=lambda exc: self._stamp(self.error_reply(request, raw_query, exc, exchange), exchange, kms),
            )
            status, response_headers = response.status, response.headers
            sent = (response.content_length or 0) if request.method != "HEAD" else 0
            return response
        finally:
            self.metrics.inflight.dec()
            elapsed = time.monotonic() - started
            received = request.content_length or 0
            self.metrics.observe(exchange.operation, status, response_headers, elapsed, received, sent)
            access_log.info(json.dumps({
                "request_id": exchange.request_id, "op": exchange.operation, "method": request.method, "status": status,
                "remote": request.remote, "access_key": exchange.access_key or _access_key_of(request.headers),
                "principal": exchange.principal, "received": received, "sent": sent, "ms": round(elapsed * 1000, 2),
            }))

    @staticmethod
    def _stamp(reply: Reply, exchange: Exchange, kms: bool) -> Reply:
        headers = CIMultiDict(reply.headers)
        if kms:
            headers["x-amzn-RequestId"] = exchange.request_id
        else:
            headers["x-amz-request-id"] = exchange.request_id
            headers.setdefault("x-amz-id-2", exchange.request_id)
        reply.headers = headers
        return reply

    def error_reply(self, request: web.Request, raw_query: str, exc: BaseException, exchange: Exchange) -> Reply:
        """AWS's XML error document for `exc` (mapped through errors.to_s3_error); only unmapped
        errors are logged with a traceback, and nothing of a secret reaches the document."""
        mapped = errors.to_s3_error(exc)
        if mapped is None:
            log.error("request %s: unexpected error in %s", exchange.request_id, exchange.operation, exc_info=exc)
            mapped = errors.InternalError()
        elif isinstance(exc, IntegrityError):
            log_integrity_failure(exchange.request_id, request.method, request.path, exc)
        elif mapped is not exc and mapped.status >= 500:
            log.warning("request %s: %s: %s", exchange.request_id, exchange.operation, type(exc).__name__)
        if mapped.status >= 500:
            log.warning("request %s: %s %s", exchange.request_id, mapped.code, mapped.text)
        headers = dict(mapped.headers)
        if mapped.status == 304 or request.method == "HEAD":
            return Reply(mapped.status, headers)
        message, extra = redact.scrub_error(mapped.text, mapped.fields, request.headers, raw_query)
        fields: dict[str, Any] = {"Code": mapped.code, "Message": message, **extra}
        if mapped.resource:
            fields["Resource"] = mapped.resource
        fields["RequestId"] = exchange.request_id
        fields["HostId"] = exchange.request_id
        headers["Content-Type"] = "application/xml"
        return Reply(mapped.status, headers, xml.render("Error", fields, namespace=None))

    # --- the S3 pipeline ----------------------------------------------------------------------

    async def pipeline(self, request: web.Request, raw_path: str, raw_query: str, exchange: Exchange) -> Reply:
        host_bucket = virtual_host_bucket(request.headers.get("host", ""), self.virtual_host_domains)
        auth = self.authenticate(request, raw_path, raw_query, host_bucket)
        exchange.access_key, exchange.principal = principal_of(auth)
        operation, bucket, key, query = self.route(request, raw_path, host_bucket, auth)
        exchange.operation = operation
        origin = Origin(request.remote, request.headers.get("user-agent"), request.secure)
        call = Call(
            request_id=exchange.request_id, auth=auth, caller=self.caller_of(auth, origin, exchange.request_id, self.via_s3),
            bucket=bucket, key=key, query=query, headers=request.headers, content=request.content,
            secure=request.secure, loopback=is_loopback(request.remote), remote=request.remote,
        )
        await self.authorizer.authorize(call, operation)
        return await self.dispatch(operation, call)

    def authenticate(self, request: web.Request, raw_path: str, raw_query: str, host_bucket: str | None) -> AuthContext:
        return authenticate(
            request.method, raw_path, raw_query, request.headers, self.credentials, now=self.clock(),
            region=self.region, service="s3", v2_resource=f"/{host_bucket}{raw_path}" if host_bucket else None,
            sigv2_enabled=self.sigv2, routed_subresources=ROUTED_SUBRESOURCES, anonymous=True,
        )

    def route(self, request: web.Request, raw_path: str, host_bucket: str | None,
              auth: AuthContext) -> tuple[str, str | None, str | None, MultiDict[str]]:
        bucket, key = split_path(f"/{urllib.parse.quote(host_bucket)}{raw_path}" if host_bucket else raw_path)
        query = MultiDict(auth.query)  # exactly the query the signature covers
        return route(request.method, bucket, key, query, request.headers), bucket, key, query

    async def dispatch(self, operation: str, call: Call) -> Reply:
        handler = self.operations.get(operation)
        if handler is None:
            raise errors.NotImplemented()
        return await handler(call)

    # --- the POST Object route -------------------------------------------------------------------

    async def form_route(self, request: web.Request, raw_path: str, exchange: Exchange) -> Reply:
        """POST Object: the form is read up to its file and authenticates the request by its fields;
        the operation then stores the file it streams."""
        exchange.operation = "PostObject"
        host_bucket = virtual_host_bucket(request.headers.get("host", ""), self.virtual_host_domains)
        bucket, key = split_path(f"/{urllib.parse.quote(host_bucket)}{raw_path}" if host_bucket else raw_path)
        if bucket is None or key is not None or "PostObject" not in self.operations:  # not to a bucket: unsigned
            raise errors.AccessDenied()
        form = await read_form(request.content, request.headers.get("content-type"), request.content_length,
                               small_body=SMALL_FILE)
        auth = authenticate_post(form.fields, bucket=bucket, size=form.size, store=self.credentials, now=self.clock(),
                                 region=self.region, sigv2_enabled=self.sigv2)
        exchange.access_key, exchange.principal = principal_of(auth)
        if any(h.lower().startswith("x-amz-") for h in request.headers):  # the request's own headers are not signed
            raise errors.InvalidRequest("Conflicting values provided in HTTP headers and POST form fields.")
        origin = Origin(request.remote, request.headers.get("user-agent"), request.secure)
        host = request.headers.get("host", "")
        endpoint = f"{request.scheme}://{host}" + ("" if host_bucket else f"/{urllib.parse.quote(bucket)}")
        call = Call(
            request_id=exchange.request_id, auth=auth, caller=self.caller_of(auth, origin, exchange.request_id, self.via_s3),
            bucket=bucket, key=form.get("key"), query=MultiDict(), headers=CIMultiDict(form.fields), content=form.stream,
            secure=request.secure, loopback=is_loopback(request.remote), remote=request.remote, form=form,
            endpoint=endpoint,
        )
        await self.authorizer.authorize(call, "PostObject")
        return await self.dispatch("PostObject", call)

    # --- the KMS API route ----------------------------------------------------------------------

    async def kms_route(self, request: web.Request, raw_path: str, raw_query: str, exchange: Exchange) -> Reply:
        """The KMS JSON API (X-Amz-Target: TrentService.*), SigV4 service `kms`, on this listener."""
        exchange.operation = self.metrics.operation("kms:" + request.headers.get("x-amz-target", "").rpartition(".")[2])
        if self.kms_api is None:
            return kms_error_reply("UnknownOperationException", 400, "KMS is not enabled on this endpoint")
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
            message, _ = redact.scrub_error(exc.text, {}, request.headers, raw_query)
            return kms_error_reply(code, status, message)
        exchange.access_key, exchange.principal = principal_of(auth)
        origin = Origin(request.remote, request.headers.get("user-agent"), request.secure)
        caller = self.caller_of(auth, origin, exchange.request_id, None)
        status, payload = await asyncio.to_thread(self.kms_api.dispatch, request.headers.get("x-amz-target", ""), body, caller)
        return Reply(status, {"Content-Type": KMS_CONTENT_TYPE}, payload)


def principal_of(auth: AuthContext) -> tuple[str | None, str]:
    """(access key, principal) as the access log names them: the user's ARN, or `anonymous`."""
    if auth.anonymous:
        return None, "anonymous"
    return auth.credential.access_key, auth.credential.arn


def kms_error_reply(code: str, status: int, message: str) -> Reply:
    return Reply(status, {"Content-Type": KMS_CONTENT_TYPE}, json.dumps({"__type": code, "message": message}).encode())


async def _always_ready() -> dict[str, str]:
    return {}


_ACCESS_KEY = re.compile(r"[A-Za-z0-9_.+=@-]{1,128}(?=/)")  # an id, up to the '/' of the scope, or nothing


def _access_key_of(headers: Mapping[str, str]) -> str | None:
    """The access key id named by an Authorization header (never the signature or a secret)."""
    auth = headers.get("authorization", "")
    start = auth.find("Credential=")
    if start < 0:
        return None
    found = _ACCESS_KEY.match(auth, start + len("Credential="))
    return found.group(0) if found else None


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
    try:
        return remote is not None and ipaddress.ip_address(remote).is_loopback
    except ValueError:
        return False


def build_web_app(frontend: Frontend) -> web.Application:
    # sizes of the request line and header fields are the connection guard's (http/guard.py)
    app = web.Application(client_max_size=1024**4, handler_args={"max_headers": 256})
    app.router.add_route("*", "/{tail:.*}", frontend.handle)
    app.on_response_prepare.append(listener.on_response_prepare)  # Server: s3proxy, never versions
    return app
