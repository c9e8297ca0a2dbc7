"""Decode and verify a request body as it streams: aws-chunked framing, signatures, digests.

`open_body(auth, headers, stream)` reads the request headers once (raising at once on malformed
ones) and returns a RequestBody: an async iterator of decoded payload bytes. The mode comes from
`auth.content_sha256` (the x-amz-content-sha256 the signature covered):

    <64 hex>                                    plain body, its SHA-256 must match
    UNSIGNED-PAYLOAD                            plain body, nothing to match
    STREAMING-AWS4-HMAC-SHA256-PAYLOAD          aws-chunked, every chunk signature verified
    STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER  the same, then signed trailing headers
    STREAMING-UNSIGNED-PAYLOAD-TRAILER          aws-chunked without signatures, then trailers

Wire format (S3 API reference, "Transferring Payload in Multiple Chunks" and "Signature
calculations for trailing headers"): `hex-size[;chunk-signature=sig]\r\n<data>\r\n` repeated,
a zero-size chunk, then either `\r\n` or trailer lines `name:value\r\n` (plus
`x-amz-trailer-signature:sig\r\n` when signed) and an optional closing `\r\n`.

Also verified, on the decoded bytes: Content-MD5 (malformed: InvalidDigest, mismatch:
BadDigest), one flexible checksum from an `x-amz-checksum-<alg>` header or a trailer declared in
`x-amz-trailer` (malformed: InvalidRequest, mismatch: BadDigest "The CRC32 you specified did not
match the calculated checksum."), the decoded length against Content-Length or
x-amz-decoded-content-length (IncompleteBody).

Contract: iteration ends normally only if every check passed; otherwise it raises the S3Error.
The last decoded piece is held back until all checks passed, so a consumer writing into a
length-delimited sink never completes an unverified body (a consumer must still drain the
iterator to the end, also for an empty body, to learn the verdict). Memory is bounded by
PIECE_SIZE whatever the chunk sizes the client chooses; chunk-size and trailer lines are limited
to MAX_LINE bytes. Only the digests the request needs are computed; pieces of
THREAD_THRESHOLD bytes or more are hashed in a worker thread (hashlib releases the GIL).
Callers must strip `aws-chunked` from Content-Encoding before storing it: use
`RequestBody.content_encoding`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import re
from collections.abc import AsyncIterator, Awaitable, Iterable, Mapping
from typing import Protocol, TypeVar

import aiohttp
from aiohttp import http_exceptions

from s3proxy import errors
from s3proxy.auth import checksums
from s3proxy.auth.sigv4 import (
    EMPTY_SHA256,
    STREAMING_SIGNED,
    STREAMING_SIGNED_TRAILER,
    STREAMING_UNSIGNED_TRAILER,
    UNSIGNED_PAYLOAD,
    AuthContext,
    chunk_string_to_sign,
    sha256_mismatch,
    sign,
    signatures_equal,
    trailer_string_to_sign,
)

PIECE_SIZE = 1 << 20  # largest decoded piece handed to the consumer
THREAD_THRESHOLD = 1 << 20  # pieces this large are hashed off the event loop
MAX_LINE = 4096  # a chunk-size line or a trailer line, CRLF included
MAX_TRAILERS = 8
MIN_SIGNED_CHUNK = 8192  # every signed chunk but the last (S3 API, chunked upload)
_SIGNED_LINE = re.compile(rb"([0-9a-fA-F]{1,16});chunk-signature=([0-9a-fA-F]{64})\r\n\Z")
_UNSIGNED_LINE = re.compile(rb"([0-9a-fA-F]{1,16})\r\n\Z")
_TRAILER_SIGNATURE = "x-amz-trailer-signature"
_T = TypeVar("_T")
_NOT_CHECKSUM_HEADERS = frozenset({"x-amz-checksum-type", "x-amz-checksum-algorithm", "x-amz-checksum-mode"})


MalformedTrailerError = errors.MalformedTrailer


class BodyStream(Protocol):
    """What open_body needs of aiohttp's StreamReader (request.content)."""

    async def read(self, n: int = -1) -> bytes: ...

    async def readexactly(self, n: int) -> bytes: ...

    async def readuntil(self, separator: bytes = b"\n", *, max_size: int | None = None) -> bytes: ...


def _incomplete() -> errors.S3Error:
    return errors.IncompleteBody("The request body terminated unexpectedly")


def _framing(detail: str) -> errors.S3Error:
    return errors.InvalidRequest(f"Invalid aws-chunked body: {detail}")


class _Reader:
    """The stream with transport failures turned into IncompleteBody."""

    def __init__(self, stream: BodyStream) -> None:
        self._stream = stream

    async def _call(self, pending: Awaitable[_T]) -> _T:
        try:
            return await pending
        except asyncio.IncompleteReadError:
            raise _incomplete() from None
        except http_exceptions.LineTooLong:
            raise _framing("a chunk header or trailer line is too long") from None
        except (ConnectionError, aiohttp.ClientPayloadError, http_exceptions.HttpProcessingError, EOFError):
            raise _incomplete() from None

    async def read(self, n: int) -> bytes:
        return await self._call(self._stream.read(n))

    async def exactly(self, n: int) -> bytes:
        return await self._call(self._stream.readexactly(n))

    async def line(self) -> bytes:
        """One line with its CRLF; what is left (maybe b"") at end of stream."""
        data = await self._call(self._stream.readuntil(b"\r\n", max_size=MAX_LINE))
        if len(data) > MAX_LINE:
            raise _framing("a chunk header or trailer line is too long")
        return data


class _Digests:
    """The running digests a request needs, updated together."""

    def __init__(self, algorithms: Iterable[str], *, md5: bool, sha256: bool) -> None:
        self.checksums = {name: checksums.new_hasher(name) for name in algorithms}
        self.md5 = hashlib.md5() if md5 else None
        self.sha256 = hashlib.sha256() if sha256 else None
        self._all: list[checksums.Hasher] = list(self.checksums.values())
        self._all += [h for h in (self.md5, self.sha256) if h is not None]

    def add(self, hasher: checksums.Hasher) -> None:
        self._all.append(hasher)

    def remove(self, hasher: checksums.Hasher) -> None:
        self._all.remove(hasher)

    def update(self, data: bytes) -> None:
        for hasher in self._all:
            hasher.update(data)

    async def feed(self, data: bytes) -> None:
        if not self._all:
            return
        if len(data) >= THREAD_THRESHOLD:
            await asyncio.to_thread(self.update, data)
        else:
            self.update(data)


def _one_header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    return None if value is None else value.strip()


def _parse_length(value: str | None, name: str) -> int | None:
    if value is None:
        return None
    if not (value.isascii() and value.isdigit()) or len(value) > 19:  # HTTP digits are ASCII: "²" is not 2
        raise errors.InvalidArgument(f"Invalid {name}", ArgumentName=name, ArgumentValue=value)
    return int(value)


def _parse_md5(headers: Mapping[str, str]) -> bytes | None:
    value = _one_header(headers, "content-md5")
    if value is None:
        return None
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != 16:
        raise errors.InvalidDigest()
    return raw


def _invalid_checksum_value(algorithm: str, where: str = "header") -> errors.S3Error:
    return errors.InvalidRequest(f"Value for x-amz-checksum-{algorithm} {where} is invalid.")


def _parse_checksum_claims(headers: Mapping[str, str], trailer_mode: bool) -> tuple[str | None, bytes | None, bool]:
    """(client's algorithm, its value from a header or None, whether it comes in a trailer)."""
    sent = sorted(
        {
            k.lower()[len(checksums.HEADER_PREFIX) :]
            for k in headers.keys()
            if k.lower().startswith(checksums.HEADER_PREFIX) and k.lower() not in _NOT_CHECKSUM_HEADERS
        }
    )
    declared = [t.strip().lower() for t in (headers.get("x-amz-trailer") or "").split(",") if t.strip()]
    sdk = _one_header(headers, "x-amz-sdk-checksum-algorithm")
    sdk = sdk.lower() if sdk is not None else None
    if len(sent) + len(declared) > 1:
        raise errors.InvalidRequest(
            "Expecting a single x-amz-checksum- header. Multiple checksum Types are not allowed."
        )
    if sdk is not None and (sdk not in checksums.supported() or (sent and sent[0] != sdk)):
        raise errors.InvalidRequest("Value for x-amz-sdk-checksum-algorithm header is invalid.")
    if declared:
        name = declared[0]
        algorithm = name[len(checksums.HEADER_PREFIX) :] if name.startswith(checksums.HEADER_PREFIX) else ""
        if not trailer_mode or algorithm not in checksums.supported():
            raise errors.InvalidRequest("The value specified in the x-amz-trailer header is not supported")
        if sdk is not None and sdk != algorithm:
            raise errors.InvalidRequest("Value for x-amz-sdk-checksum-algorithm header is invalid.")
        return algorithm, None, True
    if sent:
        algorithm = sent[0]
        if algorithm not in checksums.supported():
            raise _invalid_checksum_value(algorithm)
        value = checksums.decode_value(headers.get(checksums.HEADER_PREFIX + algorithm) or "", checksums.DIGEST_SIZES[algorithm])
        if value is None:
            raise _invalid_checksum_value(algorithm)
        return algorithm, value, False
    return sdk, None, False


def open_body(
    auth: AuthContext,
    headers: Mapping[str, str],
    stream: BodyStream,
    *,
    want_md5: bool = False,
    want_checksums: Iterable[str] = (),
) -> RequestBody:
    """Prepare to decode and verify the body of an authenticated request (see module docstring).

    want_md5 computes md5_hex (an ETag) even without Content-MD5; want_checksums names extra
    flexible checksums to compute (e.g. what the bucket records) beside the client's own.
    """
    return RequestBody(auth, headers, stream, want_md5=want_md5, want_checksums=tuple(want_checksums))


class RequestBody:
    """The decoded payload as an async iterator of bytes, verified as described in the module."""

    def __init__(
        self,
        auth: AuthContext,
        headers: Mapping[str, str],
        stream: BodyStream,
        *,
        want_md5: bool,
        want_checksums: tuple[str, ...],
    ) -> None:
        mode = auth.content_sha256
        self._auth = auth
        self._chunked = mode in (STREAMING_SIGNED, STREAMING_SIGNED_TRAILER, STREAMING_UNSIGNED_TRAILER)
        self._signed_chunks = mode in (STREAMING_SIGNED, STREAMING_SIGNED_TRAILER)
        self._trailer_mode = mode in (STREAMING_SIGNED_TRAILER, STREAMING_UNSIGNED_TRAILER)
        self._expected_sha256 = None if self._chunked or mode == UNSIGNED_PAYLOAD else mode.lower()
        self._reader = _Reader(stream)
        content_length = _parse_length(_one_header(headers, "content-length"), "Content-Length")
        if self._chunked:
            self.size = _parse_length(_one_header(headers, "x-amz-decoded-content-length"), "x-amz-decoded-content-length")
        else:
            self.size = content_length
        self._md5_expected = _parse_md5(headers)
        algorithm, self._checksum_value, self._checksum_in_trailer = _parse_checksum_claims(headers, self._trailer_mode)
        self.checksum_algorithm: str | None = algorithm
        unknown = set(want_checksums) - checksums.supported()
        if unknown:
            raise ValueError(f"unsupported checksum algorithms {sorted(unknown)}")
        wanted = set(want_checksums) | ({algorithm} if algorithm else set())
        self._digests = _Digests(
            sorted(wanted), md5=want_md5 or self._md5_expected is not None, sha256=self._expected_sha256 is not None
        )
        encodings = [e.strip() for e in (headers.get("content-encoding") or "").split(",") if e.strip()]
        kept = [e for e in encodings if e.lower() != "aws-chunked"]
        self.content_encoding: str | None = ",".join(kept) if kept else None
        self.md5_hex: str | None = None
        self.checksums: dict[str, str] = {}
        self.received = 0
        self._iterator: AsyncIterator[bytes] | None = None

    @property
    def checksum_from_headers(self) -> str | None:
        """The client's flexible checksum as its x-amz-checksum-<alg> header gave it (base64), so
        known before the body is read; None when it comes in a trailer, or the client sent only
        the algorithm (both known only at the end: `checksums`). Verified against the body at its end."""
        if self._checksum_value is None or self._checksum_in_trailer:
            return None
        return checksums.encode(self._checksum_value)

    def require_length(self) -> int:
        """The decoded length, or MissingContentLength (411) when the request does not say it."""
        if self.size is None:
            raise errors.MissingContentLength()
        return self.size

    def __aiter__(self) -> AsyncIterator[bytes]:
        if self._iterator is None:
            self._iterator = self._held_back()
        return self._iterator

    async def _held_back(self) -> AsyncIterator[bytes]:
        pending: bytes | None = None
        async for piece in self._decoded():
            if pending is not None:
                yield pending
            pending = piece
        if pending is not None:
            yield pending

    async def _decoded(self) -> AsyncIterator[bytes]:
        trailers: dict[str, str] = {}
        if self._chunked:
            async for piece in self._chunks(trailers):
                yield piece
        else:
            async for piece in self._plain():
                yield piece
        self._finish(trailers)

    async def _emit(self, piece: bytes) -> bytes:
        self.received += len(piece)
        if self.size is not None and self.received > self.size:
            raise errors.IncompleteBody("The decoded length of the body exceeds the length the request declared.")
        await self._digests.feed(piece)
        return piece

    async def _plain(self) -> AsyncIterator[bytes]:
        while True:
            if self.size is not None:
                remaining = self.size - self.received
                if remaining <= 0:
                    return
                try:
                    piece = await self._reader.exactly(min(remaining, PIECE_SIZE))
                except errors.IncompleteBody:  # a stream's own verdict (a form's file: MalformedPOSTRequest) stands
                    raise errors.IncompleteBody() from None
            else:
                piece = await self._reader.read(PIECE_SIZE)
                if not piece:
                    return
            yield await self._emit(piece)

    async def _chunks(self, trailers: dict[str, str]) -> AsyncIterator[bytes]:
        previous = self._auth.seed_signature
        index = 0
        previous_size = -1
        while True:
            index += 1
            size, provided = self._chunk_header(await self._reader.line())
            if self._signed_chunks and size > 0 and 0 <= previous_size < MIN_SIGNED_CHUNK:
                raise errors.InvalidChunkSize(Chunk=str(index - 1), BadChunkSize=str(previous_size))
            if self.size is not None and self.received + size > self.size:
                raise errors.IncompleteBody("The decoded length of the body exceeds the length the request declared.")
            chunk_hash = hashlib.sha256() if self._signed_chunks and size else None
            if chunk_hash is not None:
                self._digests.add(chunk_hash)
            left = size
            while left:
                piece = await self._reader.exactly(min(left, PIECE_SIZE))
                left -= len(piece)
                yield await self._emit(piece)
            if chunk_hash is not None:
                self._digests.remove(chunk_hash)
            if self._signed_chunks:
                digest = chunk_hash.hexdigest() if chunk_hash is not None else EMPTY_SHA256
                expected = sign(
                    self._auth.signing_key, chunk_string_to_sign(self._auth.amz_date, self._auth.scope, previous, digest)
                )
                if not signatures_equal(expected, provided):
                    raise errors.SignatureDoesNotMatch(
                        "The request signature we calculated does not match the signature you provided. "
                        "Check your key and signing method.",
                        Chunk=str(index),
                    )
                previous = provided.lower()
            if size == 0:
                break
            if await self._reader.exactly(2) != b"\r\n":
                raise _framing("chunk data is not followed by CRLF")
            previous_size = size
        if self._trailer_mode:
            await self._read_trailers(previous, trailers)
        else:
            end = await self._reader.line()
            if end not in (b"\r\n", b""):
                raise _framing("data after the final chunk")
        if await self._reader.read(1):
            raise _framing("data after the end of the body")

    def _chunk_header(self, line: bytes) -> tuple[int, str]:
        if not line.endswith(b"\r\n"):
            raise _incomplete()
        match = (_SIGNED_LINE if self._signed_chunks else _UNSIGNED_LINE).match(line)
        if match is None:
            raise _framing("malformed chunk header")
        provided = match.group(2).decode("ascii") if self._signed_chunks else ""
        return int(match.group(1), 16), provided

    async def _read_trailers(self, previous: str, trailers: dict[str, str]) -> None:
        signature: str | None = None
        for _ in range(MAX_TRAILERS + 1):
            line = await self._reader.line()
            if line in (b"", b"\r\n"):
                break
            if not line.endswith(b"\r\n"):
                raise MalformedTrailerError()
            try:
                text = line[:-2].decode("ascii")
            except UnicodeDecodeError:
                raise MalformedTrailerError() from None
            name, colon, value = text.partition(":")
            name, value = name.strip().lower(), value.strip()
            if not colon or not name or name in trailers:
                raise MalformedTrailerError()
            if name == _TRAILER_SIGNATURE:
                signature = value
            else:
                trailers[name] = value
        else:
            raise MalformedTrailerError()
        if self._signed_chunks:
            canonical = "".join(f"{name}:{value}\n" for name, value in trailers.items())
            digest = hashlib.sha256(canonical.encode("ascii")).hexdigest()
            expected = sign(
                self._auth.signing_key, trailer_string_to_sign(self._auth.amz_date, self._auth.scope, previous, digest)
            )
            if signature is None or not signatures_equal(expected, signature):
                raise errors.SignatureDoesNotMatch()
        elif signature is not None:
            raise MalformedTrailerError()

    def _finish(self, trailers: dict[str, str]) -> None:
        if self.size is not None and self.received != self.size:
            raise _incomplete() if self._chunked else errors.IncompleteBody()
        digests = self._digests
        if digests.sha256 is not None:
            computed = digests.sha256.hexdigest()
            if computed != self._expected_sha256:
                raise sha256_mismatch(self._expected_sha256 or "", computed)
        if digests.md5 is not None:
            md5 = digests.md5.digest()
            if self._md5_expected is not None and md5 != self._md5_expected:
                raise errors.BadDigest("The Content-MD5 you specified did not match what we received.")
            self.md5_hex = md5.hex()
        claimed = self._checksum_value
        if self._checksum_in_trailer:
            assert self.checksum_algorithm is not None
            name = checksums.HEADER_PREFIX + self.checksum_algorithm
            if set(trailers) != {name}:
                raise MalformedTrailerError()
            claimed = checksums.decode_value(trailers[name], checksums.DIGEST_SIZES[self.checksum_algorithm])
            if claimed is None:
                raise _invalid_checksum_value(self.checksum_algorithm, "trailing header")
        elif trailers:
            raise MalformedTrailerError()
        computed_all = {name: h.digest() for name, h in digests.checksums.items()}
        if claimed is not None and self.checksum_algorithm is not None:
            if computed_all[self.checksum_algorithm] != claimed:
                display = checksums.DISPLAY_NAMES[self.checksum_algorithm]
                raise errors.BadDigest(f"The {display} you specified did not match the calculated checksum.")
        self.checksums = {name: checksums.encode(value) for name, value in computed_all.items()}
