"""What an operation answers: a status, headers and a body, as a value the front door sends.

Operations never touch the HTTP server. A small body is bytes; an object body is an async
iterator of buffers with its exact `length` known before the first byte (the front door streams
it: s3proxy.http.respond). A HEAD answer has no body but the `length` a GET would send.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..buffers import Buffer
from . import xml


@dataclass
class Reply:
    status: int = 200
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes | AsyncIterator[Buffer] | None = None
    length: int | None = None  # a streamed body's exact length; for HEAD, the length GET would send

    @property
    def streamed(self) -> bool:
        return self.body is not None and not isinstance(self.body, bytes)


def xml_reply(root: str, body: Mapping[str, Any], *, status: int = 200, headers: Mapping[str, str] | None = None) -> Reply:
    return Reply(status, {"Content-Type": "application/xml", **(headers or {})}, xml.render(root, body))


def empty_reply(status: int = 200, headers: Mapping[str, str] | None = None) -> Reply:
    return Reply(status, dict(headers or {}))
