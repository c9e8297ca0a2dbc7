"""One authenticated, routed S3 request as the operations see it: plain values, no HTTP server object.

The front door (s3proxy.http.server) builds a Call once per request, after the signature was
verified and the request routed; the operations read it and open its body. Nothing here reaches
back into the server: the body stream is the one piece of the connection a Call holds.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from multidict import MultiDict

from .. import errors
from ..auth.body import BodyStream, RequestBody, open_body
from ..auth.context import AuthContext
from ..auth.form import Form
from ..kms.caller import Caller
from . import xml

MAX_SMALL_BODY = xml.MAX_XML_BODY


@dataclass
class Call:
    request_id: str
    auth: AuthContext
    caller: Caller  # the requester as the KMS sees it when S3 calls it on their behalf
    bucket: str | None
    key: str | None
    query: MultiDict[str]  # exactly the query the signature covers (AuthContext.query)
    headers: Mapping[str, str]  # case-insensitive
    content: BodyStream  # the request body as it arrives, still aws-chunked or not
    secure: bool  # TLS
    loopback: bool  # the client is on this host
    remote: str | None = None
    form: Form | None = None  # POST Object: the form, read up to its file (the file is `content`)
    endpoint: str = ""  # POST Object: the URL the object's Location starts with (scheme, host, path-style bucket)
    bucket_owner: str | None = None  # the account owning `bucket`, as the authorizer found it
    # set by the front door's authorizer: raise AccessDenied unless this request may do `action`
    # (e.g. "s3:DeleteObject") on the object `key` of its bucket (DeleteObjects, whose keys are in its body)
    authorize_key: Callable[[str, str], Awaitable[None]] | None = None
    _small: bytes | None = None

    @property
    def account(self) -> str:
        """The caller's account ("" for an anonymous request)."""
        return self.auth.credential.account

    @property
    def user_name(self) -> str:
        return self.auth.credential.user_name

    def body(self, *, want_md5: bool = False) -> RequestBody:
        """The decoded, verified request body (a single-use async iterator with `.size`)."""
        return open_body(self.auth, self.headers, self.content, want_md5=want_md5)

    async def read_small(self, limit: int = MAX_SMALL_BODY) -> bytes:
        """A small request body (XML documents), fully verified; MalformedXML past `limit`. Read once:
        a second call (the operation, after the authorizer read it for a condition key) returns it again."""
        if self._small is not None:
            return self._small
        chunks = bytearray()
        async for piece in self.body(want_md5="content-md5" in self.headers):
            chunks += piece
            if len(chunks) > limit:
                raise errors.MalformedXML()
        self._small = bytes(chunks)
        return self._small

    async def read_xml(self, root: str) -> dict[str, Any]:
        """The request body as the XML document `root` (fully verified), parsed as it arrives in
        slices with a turn of the event loop between them, within that document's xml.Limits."""
        reader = xml.Reader(root)
        async for piece in self.body(want_md5="content-md5" in self.headers):
            for start in range(0, len(piece), xml.SLICE):
                reader.feed(piece[start:start + xml.SLICE])
                await asyncio.sleep(0)
        return reader.close()
