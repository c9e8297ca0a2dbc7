"""Conditional writes (If-None-Match: *, If-Match: <ETag>) made atomic by the backend itself.

The client's condition is about what it sees: the key's current object and that object's client
ETag, which is not the backend's (the backend holds ciphertext). So a condition is turned into the
backend's own, on the object as it is now: If-None-Match stays "no current object"; If-Match
becomes "the current object still has backend ETag E", E being the one whose client ETag matched
(`resolve`). The backend decides that together with the write, so two proxies in front of one
backend cannot both win. What the backend refuses is then answered as S3 does: 412
PreconditionFailed when another create won (If-None-Match), 409 ConditionalRequestConflict when the
object changed or went away during this write (If-Match) (`refusal`).

An S3 server's support differs by operation (moto enforces If-Match on PUT but not on Complete, and
neither header on CopyObject), and a condition the server ignores would be a silent lie. So each
(operation, header) is probed once, in the proxy's internal bucket, by a write whose condition is
false (`Enforcement`); what the backend does not refuse there is refused here, 501 NotImplemented.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

from .. import errors
from ..backends.base import Backend, ObjectInfo, ObjectMeta, WriteCondition
from ..modes.base import ObjectRef

T = TypeVar("T")

IF_NONE_MATCH, IF_MATCH = "If-None-Match", "If-Match"
OPERATIONS = {"put": "PutObject", "complete": "CompleteMultipartUpload", "copy": "CopyObject"}
_NO_ETAG = "0" * 32  # an ETag no object has


@dataclass(frozen=True)
class Precondition:
    """A write's condition as the client sent it."""

    if_none_match: bool = False
    if_match: tuple[str, ...] = ()  # client ETags, unquoted; ("*",) for any current object

    @property
    def header(self) -> str:
        return IF_NONE_MATCH if self.if_none_match else IF_MATCH


def parse(headers: Mapping[str, str]) -> Precondition | None:
    """If-None-Match / If-Match of a PutObject, CompleteMultipartUpload or CopyObject (destination).
    S3 takes only `*` for If-None-Match, and not both headers at once: 501 NotImplemented otherwise."""
    none_match, match = headers.get("if-none-match"), headers.get("if-match")
    if none_match is None and match is None:
        return None
    if none_match is not None and match is not None:
        raise errors.NotImplemented(Header=IF_MATCH)
    if none_match is not None:
        if none_match.strip() != "*":
            raise errors.NotImplemented(Header=IF_NONE_MATCH)
        return Precondition(if_none_match=True)
    tags = tuple(t.strip().removeprefix("W/").strip('"') for t in (match or "").split(",") if t.strip())
    if not tags:
        raise errors.PreconditionFailed(Condition=IF_MATCH)
    return Precondition(if_match=tags)


async def resolve(pre: Precondition, current: ObjectInfo | None, client_etag: Callable[[ObjectInfo], Awaitable[str]],
                  key: str) -> WriteCondition:
    """The backend condition that holds exactly while the client's does, for the key's `current`
    object (None: none, or a delete marker); the client's condition is checked here first (412,
    or 404 NoSuchKey for If-Match without an object), so a false one costs no upload."""
    if pre.if_none_match:
        if current is not None:
            raise errors.PreconditionFailed(Condition=IF_NONE_MATCH)
        return WriteCondition(if_none_match=True)
    if current is None:
        raise errors.NoSuchKey(Key=key)
    if "*" not in pre.if_match and await client_etag(current) not in pre.if_match:
        raise errors.PreconditionFailed(Condition=IF_MATCH)
    return WriteCondition(if_match=current.etag)


def refusal(pre: Precondition, exc: errors.S3Error) -> errors.S3Error | None:
    """What the client is told when the backend refused a conditional write (None: not a refusal)."""
    if exc.code not in ("PreconditionFailed", "ConditionalRequestConflict", "NoSuchKey"):
        return None
    if pre.if_none_match and exc.code == "PreconditionFailed":
        return errors.PreconditionFailed(Condition=IF_NONE_MATCH)  # another create finished first
    return errors.ConditionalRequestConflict()  # changed or gone while this write ran


class Enforcement:
    """Which conditions the backend enforces, per (operation, header): probed once each."""

    def __init__(self, backend: Backend, bucket: str, ensure_bucket: Callable[[], Awaitable[None]],
                 rand: Callable[[int], bytes] = os.urandom) -> None:
        self.backend = backend
        self.bucket = bucket
        self.ensure_bucket = ensure_bucket
        self.rand = rand
        self._known: dict[tuple[str, str], bool] = {}
        self._probing = asyncio.Lock()

    async def require(self, operation: str, pre: Precondition) -> None:
        """NotImplemented when the backend does not enforce `pre` on `operation` (put, complete, copy)."""
        if not await self.enforced(operation, pre.header):
            raise errors.NotImplemented(
                f"The storage backend does not enforce {pre.header} on {OPERATIONS[operation]}; "
                "s3proxy refuses the conditional write rather than write unconditionally.",
                Header=pre.header,
            )

    async def enforced(self, operation: str, header: str) -> bool:
        if (operation, header) not in self._known:
            async with self._probing:
                if (operation, header) not in self._known:  # a failed probe (backend down) is asked again next time
                    self._known[(operation, header)] = await self._probe(operation, header)
        return self._known[(operation, header)]

    async def _probe(self, operation: str, header: str) -> bool:
        """Write with a false condition onto an object that exists; enforced if the backend refuses."""
        await self.ensure_bucket()
        key = f"conditional-probe/{self.rand(8).hex()}"
        b = self.backend
        await b.put_object(self.bucket, key, _one(b"probe"), 5, ObjectMeta())
        condition = WriteCondition(if_none_match=True) if header == IF_NONE_MATCH else WriteCondition(if_match=_NO_ETAG)
        upload = None
        try:
            if operation == "put":
                await b.put_object(self.bucket, key, _one(b"wrong"), 5, ObjectMeta(), condition)
            elif operation == "copy":
                await b.copy_object(self.bucket, key, self.bucket, key, ObjectMeta({"probe": "1"}), condition=condition)
            else:
                upload = await b.create_multipart(self.bucket, key, ObjectMeta())
                part = await b.upload_part(self.bucket, key, upload, 1, _one(b"wrong"), 5)
                await b.complete_multipart(self.bucket, key, upload, [(1, part)], condition)
                upload = None
        except errors.S3Error as exc:
            if exc.code in ("PreconditionFailed", "ConditionalRequestConflict"):
                return True
            if exc.status >= 500 and exc.code != "NotImplemented":
                raise  # the backend is unwell: no verdict yet
            return False  # NotImplemented, InvalidArgument, ...: the server does not take the header
        finally:
            if upload is not None:
                await _quietly(b.abort_multipart(self.bucket, key, upload))
            await _quietly(b.delete_object(self.bucket, key))
        return False


class ConditionalWrites:
    """What the store's writers share (ObjectStore: PutObject, CopyObject; MultipartUploads: Complete):
    the backend's condition for a client's precondition, and the backend's refusal answered as S3 does."""

    def __init__(self, backend: Backend, client_etag: Callable[[str, ObjectInfo], Awaitable[str]],
                 enforcement: Enforcement) -> None:
        self.backend = backend
        self.client_etag = client_etag  # the ETag the client knows an object by (bucket, backend info)
        self.enforcement = enforcement

    async def condition(self, operation: str, ref: ObjectRef, pre: Precondition | None) -> WriteCondition | None:
        """The backend's own condition for the client's `pre` on `ref`'s current object (see `resolve`)."""
        if pre is None:
            return None
        await self.enforcement.require(operation, pre)
        try:
            current: ObjectInfo | None = await self.backend.head_object(ref.bucket, ref.key)
        except errors.NoSuchKey:
            current = None
        if current is not None and current.delete_marker:
            current = None
        return await resolve(pre, current, lambda info: self.client_etag(ref.bucket, info), ref.key)

    async def written(self, pre: Precondition | None, write: Awaitable[T]) -> T:
        """`write`, with a backend's refusal of its condition answered as S3 answers it."""
        try:
            return await write
        except errors.S3Error as exc:
            refused = refusal(pre, exc) if pre is not None else None
            if refused is None:
                raise
            raise refused from None


async def _one(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def _quietly(pending: Awaitable[object]) -> None:
    try:
        await pending
    except errors.S3Error:
        pass
