"""Rules the embedded backends (fs, memory) share: ids, times, versioning, multipart checks, tags.

These are the S3 semantics a backend that stores objects itself must reproduce; the S3 backend
gets them from its server instead.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import urllib.parse
from collections.abc import AsyncIterator, Callable, Mapping, Sequence

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from s3proxy import errors
from s3proxy.backends.base import ListResult, ObjectInfo, StoredRange, VersionListResult, WriteCondition
from s3proxy.backends.listing import Page, common_prefix
from s3proxy.buffers import Body, Buffer

MIN_PART_SIZE = 5 * 1024 * 1024  # every part but the last, as S3 requires
MAX_PART_NUMBER = 10_000
NULL_VERSION = "null"  # the version id of objects written while versioning was never on or suspended
VERSIONING_STATES = ("Enabled", "Suspended")

Rand = Callable[[int], bytes]
Clock = Callable[[], float]


def new_id(rand: Rand) -> str:
    """A fresh opaque id (version, upload, blob, or opaque ETag): 32 hex characters."""
    return rand(16).hex()


def timestamp(clock: Clock) -> dt.datetime:
    """Now, aware UTC, at the millisecond precision S3 shows."""
    now = dt.datetime.fromtimestamp(clock(), dt.UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def from_epoch(seconds: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(seconds, dt.UTC)


class VersionIds:
    """Version ids that name their own position: the order of a write among all writes.

    A version-id-marker must keep marking a position after its version is deleted (a tool that
    empties a bucket deletes each page before asking for the next), so an embedded backend's
    version id is its write sequence number, sealed: one AES block of a fixed tag and the number
    under a key kept with the index. Nobody without the key learns how many writes other people
    made, and `position` recognises the ids it made (any other string, "null" included, gives None).
    """

    _TAG = b"s3p-vid\x01"

    def __init__(self, key: bytes) -> None:
        self._cipher = Cipher(algorithms.AES(key), modes.ECB())  # one block: a keyed permutation

    def make(self, position: int) -> str:
        sealer = self._cipher.encryptor()
        return (sealer.update(self._TAG + position.to_bytes(8, "big")) + sealer.finalize()).hex()

    def position(self, version_id: str) -> int | None:
        try:
            block = bytes.fromhex(version_id)
        except ValueError:
            return None
        if len(block) != 16:
            return None
        opener = self._cipher.decryptor()
        plain = opener.update(block) + opener.finalize()
        return int.from_bytes(plain[8:], "big") if plain[:8] == self._TAG else None


def resumes_inside(key_marker: str, version_id_marker: str, prefix: str, delimiter: str) -> bool:
    """Whether a version listing resumes among the versions of `key_marker` itself (rather than at
    the keys after it): a version-id-marker was given, and that key is listed as itself."""
    return bool(version_id_marker) and key_marker.startswith(prefix) and common_prefix(key_marker, prefix, delimiter) is None


def shown_version_id(status: str | None, version_id: str) -> str | None:
    """The version id S3 shows on PUT/GET/HEAD: none in a bucket that never had versioning."""
    return None if status is None else version_id


def check_versioning_status(status: str) -> None:
    if status not in VERSIONING_STATES:
        raise errors.IllegalVersioningConfiguration()


def check_condition(condition: WriteCondition | None, current: str | None, key: str) -> None:
    """A conditional write's condition against the current object's ETag (None: no current object,
    or a delete marker). The caller checks and writes as one step."""
    if condition is None:
        return
    if condition.if_none_match and current is not None:
        raise errors.PreconditionFailed(Condition="If-None-Match")
    if condition.if_match is not None:
        if current is None:
            raise errors.NoSuchKey(Key=key)
        if current != condition.if_match:
            raise errors.PreconditionFailed(Condition="If-Match")


def check_part_number(part_number: int) -> None:
    if not 1 <= part_number <= MAX_PART_NUMBER:
        raise errors.InvalidArgument("Part number must be an integer between 1 and 10000, inclusive")


def resolve_range(range: StoredRange, size: int) -> tuple[int, int]:
    """The inclusive stored offsets `range` names in an object of `size` bytes, clamped as S3 clamps
    them; InvalidRange when no byte satisfies it."""
    first, last = range
    if first is None:  # a suffix
        if not last or not size:
            raise errors.InvalidRange()
        return max(0, size - last), size - 1
    if first >= size or (last is not None and last < first):
        raise errors.InvalidRange()
    return first, size - 1 if last is None else min(last, size - 1)


def unquote_etag(etag: str) -> str:
    return etag.strip().strip('"')


def check_complete(
    requested: Sequence[tuple[int, str]], stored: Mapping[int, tuple[str, int]], min_part_size: int
) -> list[int]:
    """The part numbers a CompleteMultipartUpload names, after S3's checks; `stored`: num -> (etag, size)."""
    if not requested:
        raise errors.MalformedXML()
    numbers = [n for n, _ in requested]
    if any(b <= a for a, b in itertools.pairwise(numbers)):
        raise errors.InvalidPartOrder()
    for number, etag in requested:
        have = stored.get(number)
        if have is None or have[0] != unquote_etag(etag):
            raise errors.InvalidPart()
    for number in numbers[:-1]:
        if stored[number][1] < min_part_size:
            raise errors.EntityTooSmall()
    return numbers


def multipart_etag(part_etags: Sequence[str]) -> str:
    """S3's multipart ETag: MD5 of the concatenated binary part ETags, then "-N"."""
    digest = hashlib.md5(usedforsecurity=False)
    for etag in part_etags:
        try:
            digest.update(bytes.fromhex(etag))
        except ValueError:
            digest.update(etag.encode())
    return f"{digest.hexdigest()}-{len(part_etags)}"


def parse_tagging(tagging: str | None) -> list[tuple[str, str]]:
    """The tag set of an `x-amz-tagging` header value (URL-encoded query form)."""
    if not tagging:
        return []
    return urllib.parse.parse_qsl(tagging, keep_blank_values=True)


async def sized(body: Body, size: int) -> Body:
    """Pass `body` through, raising IncompleteBody if it is shorter or longer than `size`."""
    seen = 0
    async for chunk in body:
        seen += len(chunk)
        if seen > size:
            raise errors.IncompleteBody("The request body is longer than its declared length.")
        yield chunk
    if seen != size:
        raise errors.IncompleteBody()


def list_result(page: Page[ObjectInfo]) -> ListResult:
    """A ListResult from a listing page of (key, object info) entries."""
    return ListResult(
        [i for _, i in page.entries], page.common_prefixes, page.is_truncated, page.last if page.is_truncated else None
    )


def version_list_result(page: Page[ObjectInfo]) -> VersionListResult:
    """A VersionListResult from a listing page of (key, version info) entries, newest first per key."""
    versions = [i for _, i in page.entries]
    next_key = next_vid = None
    if page.is_truncated:
        next_key = page.last
        if versions and versions[-1].key == page.last:
            next_vid = versions[-1].version_id
    return VersionListResult(versions, page.common_prefixes, page.is_truncated, next_key, next_vid)


class ClosingBody:
    """A GET body that runs `release` exactly once: at its end, on error, on aclose(), or when dropped unread.

    fs bodies release their blob pins, S3 bodies their pooled connection, even if nobody iterates them.
    """

    def __init__(self, chunks: AsyncIterator[Buffer], release: Callable[[], None]) -> None:
        self._chunks = chunks
        self._release: Callable[[], None] | None = release

    def __aiter__(self) -> ClosingBody:
        return self

    async def __anext__(self) -> Buffer:
        try:
            return await self._chunks.__anext__()
        except BaseException:
            self.release()
            raise

    async def aclose(self) -> None:
        try:
            close = getattr(self._chunks, "aclose", None)
            if close is not None:
                await close()
        finally:
            self.release()

    def release(self) -> None:
        release, self._release = self._release, None
        if release is not None:
            release()

    def __del__(self) -> None:
        self.release()
