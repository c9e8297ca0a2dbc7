"""Sending a Reply over aiohttp: the one place that owns streaming, write coalescing and abort.

Rules every streamed body follows (an object GET, today):
* the first piece is produced before the headers go out: a body that fails at once (a damaged
  first chunk, a backend that answers and drops) still gets an S3 error document, built by the
  caller's `on_error`, instead of a broken transfer;
* a body whose first piece is all of it (a small object) is verified to its end before anything
  is sent, and goes out with its head in one write: one send per small GET instead of two;
* pieces are coalesced into writes of about WRITE_SIZE: a socket write costs per call, not per
  byte, and a large piece is written as it is, without a copy;
* the body must be exactly `length` bytes; a failure after the headers went out (a backend drop,
  a tag that fails mid-stream, a short or a long body) aborts the connection, so the client sees
  a broken transfer, never a clean short body, nor the first `length` bytes of a longer one;
* the body is closed whatever happens.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable

from aiohttp import web

from .. import errors
from ..buffers import Buffer
from ..format.errors import IntegrityError
from ..ops.reply import Reply

log = logging.getLogger("s3proxy.http")
integrity_log = logging.getLogger("s3proxy.integrity")

WRITE_SIZE = 1024 * 1024


def log_integrity_failure(request_id: str, method: str, path: str, exc: IntegrityError) -> None:
    """The one loud line of a stored object or record that failed its integrity check (FORMAT.md
    §17): the request, the object's path (bucket and key) and which check failed (never in a response)."""
    integrity_log.error("request %s: %s %s: stored data failed its integrity check (%s); refused",
                        request_id, method, path, exc.field or "unnamed check")


async def close_body(body: object) -> None:
    aclose = getattr(body, "aclose", None)
    if aclose is not None:
        await aclose()


def _within(length: int, produced: int) -> None:
    """A body longer than its length fails before its `length`-th byte is written: the transport
    would cut it at Content-Length, and the client would take the first `length` bytes for the whole."""
    if produced > length:
        raise errors.InternalError(f"body longer than its {length} bytes")


async def send(request: web.Request, reply: Reply, *, on_error: Callable[[BaseException], Reply],
               request_id: str) -> web.StreamResponse:
    """Send `reply` as the response to `request` (see the module's rules for streamed bodies)."""
    if not reply.streamed:
        if reply.body is None and reply.length is not None:  # HEAD: the length GET would send, no body
            response = web.StreamResponse(status=reply.status, headers=reply.headers)
            response.content_length = reply.length
            return response
        return web.Response(status=reply.status, headers=reply.headers, body=reply.body)
    body: AsyncIterator[Buffer] = reply.body  # type: ignore[assignment]  # streamed: an async iterator
    pieces = body.__aiter__()
    try:
        first = await anext(pieces, None)
    except Exception as exc:  # nothing sent yet: the client gets an error document
        await close_body(body)
        return await send(request, on_error(exc), on_error=on_error, request_id=request_id)
    except BaseException:
        await close_body(body)
        raise
    length = reply.length if reply.length is not None else 0
    if first is not None and len(first) == length:
        try:
            rest = await anext(pieces, None)  # the stream's own verdict on its end (a final chunk's tag)
        except Exception as exc:
            await close_body(body)
            return await send(request, on_error(exc), on_error=on_error, request_id=request_id)
        except BaseException:
            await close_body(body)
            raise
        if rest is None:
            await close_body(body)
            return web.Response(status=reply.status, headers=reply.headers, body=bytes(first))
        first = bytes(first) + bytes(rest)  # longer than announced: the streaming path below refuses it
    response = web.StreamResponse(status=reply.status, headers=reply.headers)
    response.content_length = length
    sent = 0
    try:
        await response.prepare(request)
        pending = bytearray(first or b"")
        _within(length, sent + len(pending))
        async for piece in pieces:
            _within(length, sent + len(pending) + len(piece))
            if not pending and len(piece) >= WRITE_SIZE:  # already a large piece: no copy
                sent += len(piece)
                await response.write(piece)
                continue
            pending += piece
            if len(pending) >= WRITE_SIZE:
                sent += len(pending)
                await response.write(pending)  # sent or copied by the transport before this returns
                pending = bytearray()
        if pending:
            sent += len(pending)
            await response.write(pending)
        if sent != length:
            raise errors.InternalError(f"body ended after {sent} of {length} bytes")
        await response.write_eof()
    except BaseException as exc:
        # the headers are on the wire: the only honest signal left is a broken connection
        if isinstance(exc, IntegrityError):
            log_integrity_failure(request_id, request.method, request.path, exc)
        log.warning("request %s: %s %s aborted after %d of %d bytes", request_id, request.method, request.path, sent, length)
        if request.transport is not None:
            request.transport.abort()
        raise
    finally:
        await close_body(body)
    return response
