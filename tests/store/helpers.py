"""What the store tests share: a verified request body, a write in a mode, a read drained whole."""

from __future__ import annotations

import os
from collections.abc import AsyncIterable, Mapping

from multidict import CIMultiDict

from s3proxy.auth.body import open_body
from s3proxy.backends.base import ObjectMeta
from s3proxy.modes.base import ObjectRef
from s3proxy.modes.resolve import ModeResolver
from s3proxy.store import Written
from tests.twins import BytesStream, World, auth_context, make_call


def data_of(size: int) -> bytes:
    return os.urandom(size)


def modes(world: World, headers: Mapping[str, str] | None = None, **call: object) -> ModeResolver:
    """The resolver of a request with these headers, as Services.modes builds it."""
    return world.services.modes(make_call("b", "k", headers=headers, **call))  # type: ignore[arg-type]


async def put(world: World, ref: ObjectRef, data: bytes, headers: Mapping[str, str] | None = None,
              metadata: Mapping[str, str] | None = None) -> Written:
    """PutObject as the operation does it: the mode for the bucket, then the verified body stored."""
    resolver = modes(world, headers)
    mode = await world.store.mode_for_write(ref.bucket, resolver)
    sent = CIMultiDict({"Content-Length": str(len(data))})
    body = open_body(auth_context(), sent, BytesStream(data, step=777), want_md5=world.store.md5_wanted(mode, None))
    return await world.store.put_object(ref, body, mode, ObjectMeta(metadata=dict(metadata or {})))


async def drain(body: AsyncIterable[bytes]) -> bytes:
    return b"".join([bytes(piece) async for piece in body])
