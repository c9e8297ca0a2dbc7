"""Async stream adapters: encrypt and decrypt async iterators of bytes in the at-rest format (docs/FORMAT.md).

Input pieces may have any sizes (1 byte or megabytes); they are regrouped into chunks with at most
one copy per chunk (zero copies when a piece holds whole chunks). Memory stays at about one input
piece plus one chunk. Plaintext is yielded only after its chunk authenticated, and the end of
every part read is checked (final chunk short, nothing after it), so a clean end of iteration
means every released byte was authentic. Any failure raises `IntegrityError`.

    encrypt_stream(body, key, part_number=p)            -> stored bytes of one part
    decrypt_stream(stored, key, plaintext_size=n, ...)   -> plaintext of one part (or its tail)
    decrypt_range(stored_range, key, plan)               -> plaintext of a planned range, across parts
"""

from __future__ import annotations

from dataclasses import replace
from typing import AsyncIterable, AsyncIterator

from s3proxy.format.chunks import DEFAULT_CHUNK_SIZE, TAG_SIZE, PartCipher
from s3proxy.format.errors import IntegrityError
from s3proxy.format.ranges import RangePlan, Segment, plan_object
from s3proxy.format.sizes import chunk_plaintext_size

Buffer = bytes | bytearray | memoryview


async def encrypt_stream(
    source: AsyncIterable[Buffer],
    data_key: bytes,
    *,
    part_number: int = 0,
    context: bytes = b"",
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> AsyncIterator[bytes]:
    """The stored bytes of one part: its plaintext cut into chunks, each sealed; the last one short.

    Yields one sealed chunk at a time. The stored size is `sizes.ciphertext_size(n, chunk_size)`.
    """
    cipher = PartCipher.for_part(data_key, part_number=part_number, chunk_size=chunk_size, context=context)
    buf = bytearray()
    index = 0
    async for piece in source:
        view = memoryview(piece).cast("B")
        if buf:
            need = chunk_size - len(buf)
            buf += view[:need]
            view = view[need:]
            if len(buf) < chunk_size:
                continue
            yield cipher.seal(index, buf)
            index += 1
            buf.clear()
        while len(view) >= chunk_size:
            yield cipher.seal(index, view[:chunk_size])
            index += 1
            view = view[chunk_size:]
        if view:
            buf += view
    yield cipher.seal(index, buf)  # the final chunk: shorter than a chunk, possibly empty


class _Reader:
    """Reads exact byte counts from an async iterator of pieces without quadratic copying."""

    def __init__(self, source: AsyncIterable[Buffer]) -> None:
        self._it = source.__aiter__()
        self._view = memoryview(b"")
        self._done = False

    async def _fill(self) -> bool:
        while not self._view:
            if self._done:
                return False
            try:
                piece = await self._it.__anext__()
            except StopAsyncIteration:
                self._done = True
                return False
            self._view = memoryview(piece).cast("B")
        return True

    async def read(self, n: int) -> Buffer:
        """Exactly n bytes, or fewer only at the end of the source."""
        if len(self._view) >= n:
            out, self._view = self._view[:n], self._view[n:]
            return out
        buf = bytearray()
        while len(buf) < n and await self._fill():
            take = self._view[: n - len(buf)]
            buf += take
            self._view = self._view[len(take) :]
        return buf

    async def at_end(self) -> bool:
        return not await self._fill()


async def _open_segment(reader: _Reader, cipher: PartCipher, segment: Segment) -> AsyncIterator[bytes]:
    skip, left = segment.skip, segment.take
    for index in range(segment.first_chunk, segment.last_chunk + 1):
        length = chunk_plaintext_size(index, segment.part_size, cipher.chunk_size) + TAG_SIZE
        sealed = await reader.read(length)
        if len(sealed) != length:
            raise IntegrityError()  # truncated
        plain = cipher.open(index, sealed, final=index == segment.final_chunk)
        if skip or len(plain) > left:
            plain = plain[skip : skip + left]
            skip = 0
        left -= len(plain)
        if plain:
            yield plain


async def _open_segments(
    source: AsyncIterable[Buffer], data_key: bytes, segments: tuple[Segment, ...], chunk_size: int, context: bytes
) -> AsyncIterator[bytes]:
    reader = _Reader(source)
    for segment in segments:
        cipher = PartCipher.for_part(data_key, part_number=segment.part_number, chunk_size=chunk_size, context=context)
        async for plain in _open_segment(reader, cipher, segment):
            yield plain
    if not await reader.at_end():
        raise IntegrityError()  # data after the last chunk planned


def decrypt_range(
    source: AsyncIterable[Buffer], data_key: bytes, plan: RangePlan, *, context: bytes = b""
) -> AsyncIterator[bytes]:
    """The plaintext of `plan` from exactly its stored bytes ciphertext_start..ciphertext_end.

    Each chunk is opened before its bytes are released; missing or extra stored bytes fail.
    """
    return _open_segments(source, data_key, plan.segments, plan.chunk_size, context)


async def decrypt_stream(
    source: AsyncIterable[Buffer],
    data_key: bytes,
    *,
    plaintext_size: int | None = None,
    part_number: int = 0,
    context: bytes = b"",
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    first_chunk: int = 0,
) -> AsyncIterator[bytes]:
    """The plaintext of one part from its stored bytes, starting at chunk `first_chunk`, to its end.

    With `plaintext_size` (from the envelope) every chunk length is known in advance. Without it
    the part must end with its one short chunk (a full last chunk is a truncation), as C2SP reads.
    """
    if plaintext_size is not None:
        whole = plan_object([plaintext_size], chunk_size, part_numbers=[part_number]).segments[0]
        if not 0 <= first_chunk <= whole.last_chunk:
            raise ValueError("first chunk past the end of the part")
        tail = replace(
            whole,
            first_chunk=first_chunk,
            take=plaintext_size - first_chunk * chunk_size,
            ciphertext_start=first_chunk * (chunk_size + TAG_SIZE),
        )
        async for plain in _open_segments(source, data_key, (tail,), chunk_size, context):
            yield plain
        return
    cipher = PartCipher.for_part(data_key, part_number=part_number, chunk_size=chunk_size, context=context)
    reader = _Reader(source)
    index = first_chunk
    while True:
        sealed = await reader.read(chunk_size + TAG_SIZE)
        final = len(sealed) < chunk_size + TAG_SIZE or await reader.at_end()
        plain = cipher.open(index, sealed, final=final)  # a full chunk at the end fails here
        index += 1
        if plain:
            yield plain
        if final:
            return
