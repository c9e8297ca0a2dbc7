"""The connection guard: what one TCP connection may cost the proxy before any request on it is
authenticated.

aiohttp bounds each header line and the number of header fields, not the header block as a whole,
and waits for a header block as long as the connection stays open. GuardedProtocol is aiohttp's
RequestHandler (the asyncio protocol of one connection) with these limits added where the bytes
arrive, in `data_received`:

- header bytes: the request line and header fields of each request are counted before the parser
  sees them; past `header_bytes` the request is answered 400 RequestHeaderSectionTooLarge (as S3
  does) and the connection closed, so a connection buffers at most the limit. Body bytes are told
  apart from header bytes exactly: a Content-Length body is fed by its length, a chunked body up to
  each CRLF CRLF until the parser reports its end.
- header time: a header block must be complete within `header_timeout` of its first byte
  (slowloris); else 400 RequestTimeout and close.
- idle time: a kept-alive connection waits at most `idle_timeout` for its next request (aiohttp's
  keep-alive timer, which also runs while a header block arrives).
- connections: past `max_connections` open at once, a new connection is answered 503 SlowDown and
  closed at once, before it is read.

A refusal is written straight to the socket, then the write side is shut and what the client still
sends is read and dropped for up to `linger` seconds, so the client reads the answer instead of a
reset. This module leans on aiohttp 3.14 internals (RequestHandler's message queue and flags), and
its tests (tests/hardening/test_exhaustion.py) are what notice when they move.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler, _ErrInfo

from ..ops import xml
from . import listener

HEADER_END = b"\r\n\r\n"


@dataclass(frozen=True)
class Limits:
    header_bytes: int = 32 * 1024
    header_timeout: float = 20.0
    idle_timeout: float = 60.0
    max_connections: int = 1024
    linger: float = 2.0


class Gate:
    """The limits and the live state every connection of one listener shares. `on_refuse(reason)`
    is told of each refusal; reason is one of REFUSALS."""

    def __init__(self, limits: Limits, on_refuse: Callable[[str], None] | None = None) -> None:
        self.limits = limits
        self.on_refuse = on_refuse or (lambda reason: None)
        self.open = 0  # connections admitted and not yet closed
        self.lingering: set[asyncio.BaseTransport] = set()  # refused, answered, closing

    def close_lingering(self) -> None:
        for transport in list(self.lingering):
            transport.close()
        self.lingering.clear()


REFUSALS = ("connections", "header_bytes", "header_timeout")


def refusal(status: int, reason: str, code: str, message: str, **fields: str) -> bytes:
    """A complete HTTP/1.1 error response in S3's XML form that closes the connection."""
    request_id = os.urandom(8).hex().upper()
    body = xml.render("Error", {"Code": code, "Message": message, **fields, "RequestId": request_id, "HostId": request_id},
                      namespace=None)
    head = (f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/xml\r\nContent-Length: {len(body)}\r\n"
            f"Connection: close\r\nx-amz-request-id: {request_id}\r\nx-amz-id-2: {request_id}\r\n\r\n")
    return head.encode() + body


def _through_end(tail: bytes, data: bytes) -> int:
    """How many bytes of `data` run through the first CRLF CRLF of `tail + data` (-1: none);
    `tail` is the last 3 bytes already seen."""
    if tail:
        joined = tail + data[:3]
        at = joined.find(HEADER_END)
        if at >= 0:
            return at + len(HEADER_END) - len(tail)
    at = data.find(HEADER_END)
    return -1 if at < 0 else at + len(HEADER_END)


class GuardedProtocol(RequestHandler):
    """One client connection, with the gate's limits enforced on the bytes as they arrive."""

    __slots__ = ("_gate", "_admitted", "_refused", "_head", "_tail", "_body", "_body_left", "_head_timer", "_linger")

    def __init__(self, manager: web.Server, gate: Gate, **kwargs: Any) -> None:
        limits = gate.limits
        # the total header limit governs; per-line and per-field limits only as large as it
        kwargs.update(keepalive_timeout=limits.idle_timeout, max_line_size=limits.header_bytes,
                      max_field_size=limits.header_bytes)
        super().__init__(manager, **kwargs)
        self._gate = gate
        self._admitted = False
        self._refused = False
        self._head = 0  # bytes of the header block being received
        self._tail = b""  # its last 3 bytes, to find a CRLF CRLF split across reads
        self._body: Any = None  # the payload of the request whose body is arriving
        self._body_left = 0  # its bytes still to come; -1: chunked, until the parser says it ended
        self._head_timer: asyncio.TimerHandle | None = None
        self._linger: tuple[asyncio.BaseTransport, asyncio.TimerHandle] | None = None  # after a refusal

    # --- connections ---

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        gate = self._gate
        if gate.open >= gate.limits.max_connections:
            self._manager = None  # never handed to the server: no request on it is parsed or served
            self.transport = transport  # type: ignore[assignment]
            self._refuse("connections", 503, "Service Unavailable", "SlowDown", "Please reduce your request rate.")
            return
        gate.open += 1
        self._admitted = True
        super().connection_made(transport)

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._admitted:
            self._admitted = False
            self._gate.open -= 1
        self._cancel_head_timer()
        if self._linger is not None:
            transport, timer = self._linger
            timer.cancel()
            self._gate.lingering.discard(transport)
            self._linger = None
        if self._manager is None:  # refused at accept: aiohttp never saw it
            self.transport = None
        super().connection_lost(exc)

    # --- bytes ---

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return  # answered and closing: what still arrives is dropped
        if self._force_close or self._close or self._upgraded or self._payload_parser is not None:
            super().data_received(data)
            return
        if not data:  # aiohttp resuming its parser on what it held back (flow control): nothing new
            self._feed(data)
            return
        while data and not self._refused and not self._force_close:
            data = self._feed_body(data) if self._body_left else self._feed_head(data)
            if self._upgraded:  # an Upgrade request (S3 has none): answer it, then close
                self.close()
                return

    def _feed_head(self, data: bytes) -> bytes:
        limit = self._gate.limits.header_bytes
        end = _through_end(self._tail, data)
        take = len(data) if end < 0 else end
        if self._head + take > limit:
            self._refuse("header_bytes", 400, "Bad Request", "RequestHeaderSectionTooLarge",
                         "Your request header section exceeds the maximum allowed size.", MaxSizeAllowed=str(limit))
            return b""
        piece = data if take == len(data) else data[:take]
        if not self._feed(piece):  # the block goes on (or was only blank lines)
            self._head += take
            self._tail = (self._tail + piece)[-3:]
            if self._head_timer is None:
                self._head_timer = self._loop.call_later(self._gate.limits.header_timeout, self._header_timed_out)
        return data[take:]

    def _feed_body(self, data: bytes) -> bytes:
        if self._body_left > 0:
            take = min(len(data), self._body_left)
            self._body_left -= take
        else:  # chunked: the body can only end with CRLF CRLF (the last chunk and its trailers)
            end = _through_end(self._tail, data)
            take = len(data) if end < 0 else end
        piece = data if take == len(data) else data[:take]
        if not self._feed(piece) and self._body_left < 0:
            body = self._body
            if body is None or body.is_eof() or body.exception() is not None:
                self._body, self._body_left, self._tail = None, 0, b""
            else:
                self._tail = (self._tail + piece)[-3:]
        return data[take:]

    def _feed(self, piece: bytes) -> bool:
        """Hand `piece` to aiohttp's parser; True when that completed a request (whose body, if
        any, comes next)."""
        before = self._request_count
        super().data_received(piece)
        if self._request_count == before:
            return False
        self._head, self._tail = 0, b""
        self._cancel_head_timer()
        message, payload = self._messages[-1]
        self._body, self._body_left = None, 0
        if isinstance(message, _ErrInfo) or payload.is_eof() or payload.exception() is not None:
            return True
        self._body = payload
        if message.chunked:
            self._body_left = -1
        else:
            self._body_left = max(0, int(message.headers.get("Content-Length", "0")) - payload.total_bytes)
        return True

    # --- aiohttp's own error answers ---

    def handle_error(self, request: Any, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        """aiohttp's answer to a request it could not parse or serve quotes `message` (the offending
        line: an SSE-C key or a signature, say): log through the redacting filter as aiohttp does,
        answer an S3 error document with nothing of the request in it instead (listener.py)."""
        super().handle_error(request, status, exc, None)
        response = listener.error_document(status)
        response.force_close()
        return response

    # --- refusals ---

    def _header_timed_out(self) -> None:
        self._head_timer = None
        if self._head and not self._refused and not self._force_close:
            self._refuse("header_timeout", 400, "Bad Request", "RequestTimeout",
                         "Your socket connection to the server was not read from or written to within the timeout period.")

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _refuse(self, why: str, status: int, reason: str, code: str, message: str, **fields: str) -> None:
        """Answer and close. Mid-conversation (a request still in flight or queued on this
        connection: pipelining) no answer fits in cleanly: the requests already read are answered,
        nothing more is read, and then the connection closes."""
        self._cancel_head_timer()
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        self._gate.on_refuse(why)
        if self._manager is not None and (self._request_in_progress or self._messages):
            self.close()
            return
        self._refused = True
        self._force_close = True  # RequestHandler.start() stops waiting for a request
        if self._waiter is not None:
            self._waiter.cancel()
        if self._keepalive_handle is not None:
            self._keepalive_handle.cancel()
            self._keepalive_handle = None
        transport.write(refusal(status, reason, code, message, **fields))
        if transport.can_write_eof():
            transport.write_eof()
        self._gate.lingering.add(transport)
        self._linger = (transport, self._loop.call_later(self._gate.limits.linger, transport.close))


class GuardedServer(web.Server):
    """aiohttp's low-level server, making a GuardedProtocol for each connection."""

    def __init__(self, handler: Any, *, gate: Gate, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self.gate = gate

    def __call__(self) -> GuardedProtocol:
        return GuardedProtocol(self, self.gate, loop=self._loop, **self._kwargs)


class GuardedRunner(web.AppRunner):
    """An AppRunner whose server is a GuardedServer (the application and its routes unchanged)."""

    def __init__(self, app: web.Application, gate: Gate, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self.gate = gate

    async def _make_server(self) -> web.Server:
        plain = await super()._make_server()
        return GuardedServer(plain.request_handler, gate=self.gate, request_factory=plain.request_factory,
                             handler_cancellation=plain.handler_cancellation, loop=plain._loop, **plain._kwargs)

    async def cleanup(self) -> None:
        await super().cleanup()
        self.gate.close_lingering()
