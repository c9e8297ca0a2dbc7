"""What the listener itself says, beside the operations: the Server header, and aiohttp's own errors.

* `Server: s3proxy` on every response, no versions (aiohttp would name Python's and its own). One
  function stamps it: the on_response_prepare signal calls it for every routed response (streamed,
  error, operational, KMS), and the error answer below for requests that never reached routing.
* A request aiohttp's parser refuses (a control byte or non-ASCII in a header, a line too long, a
  bad request line) is answered with a minimal S3 error document, `400 BadRequest` "An error
  occurred when parsing the HTTP request." as S3 words it, instead of aiohttp's text/plain body,
  which quotes the offending request line, SSE-C key or signature included. Any other status
  aiohttp answers by itself (a handler failing outside the front door's own error handling) is an
  InternalError document. aiohttp's log line for these is scrubbed by s3proxy.redact.

aiohttp has no public seam for its error answer: the connection guard (guard.GuardedProtocol, the
RequestHandler of every connection) overrides RequestHandler.handle_error to answer with
`error_document` (aiohttp 3.x).
"""

from __future__ import annotations

import os

from aiohttp import web

from ..ops import xml

SERVER = "s3proxy"
# aiohttp's own error statuses -> S3's code and message for them
_AIOHTTP_ERRORS = {
    400: ("BadRequest", "An error occurred when parsing the HTTP request."),
    500: ("InternalError", "We encountered an internal error. Please try again."),
}


def stamp_server(response: web.StreamResponse) -> None:
    response.headers["Server"] = SERVER


async def on_response_prepare(request: web.Request, response: web.StreamResponse) -> None:
    stamp_server(response)


def error_document(status: int) -> web.Response:
    """An S3 error document for a status aiohttp answers by itself; nothing of the request in it."""
    code, message = _AIOHTTP_ERRORS[400 if status == 400 else 500]
    request_id = os.urandom(8).hex().upper()
    body = xml.render("Error", {"Code": code, "Message": message, "RequestId": request_id, "HostId": request_id}, namespace=None)
    response = web.Response(status=status, body=body, headers={"Content-Type": "application/xml", "x-amz-request-id": request_id})
    stamp_server(response)
    return response
