"""Async stream adapters: encrypt and decrypt async iterators of bytes in the at-rest format (docs/FORMAT.md).

Input pieces may have any sizes (1 byte or megabytes). A chunk lying inside one piece is sealed
or opened in one call on a slice of it (no copy); a chunk spanning pieces is gathered into one
reused buffer (one copy, no allocation). Incremental GCM was measured as the alternative and is
far slower when fragments do not end on 16-byte blocks. Memory stays at about one chunk plus the
current piece. Plaintext is yielded only after its chunk's tag verified, and the end of every part
read is checked (final chunk short, nothing after it): a clean end of iteration means every
released byte was authentic and none was missing. Every failure raises `IntegrityError`.

    encrypt_stream(body, key, part_number=p)            -> stored bytes of one part
    encrypt_stream(body, key, trailer=make)              -> ... then make()'s sealed trailer (FORMAT.md §9)
    decrypt_stream(stored, key, plaintext_size=n, ...)   -> plaintext of one part (or its tail)
    decrypt_range(stored_range, key, plan)               -> plaintext of a planned range, across parts
    decrypt_range(stored, key, plan_all, trailer=check)  -> ... whole object, its trailer checked at the end
    decrypt_chunks(stored, cipher, ...)                  -> decrypt_stream with a ready PartCipher

Yielded items are bytes-like (bytes or memoryview slices of bytes); `bytes(x)` if you need bytes.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Callable

from s3proxy.buffers import Buffer, Recycler
from s3proxy.format.chunks import DEFAULT_CHUNK_SIZE, TAG_SIZE, PartCipher
from s3proxy.format.errors import IntegrityError
from s3proxy.format.ranges import RangePlan, Segment
from s3proxy.format.sizes import chunk_plaintext_size
from s3proxy.format.trailer import TRAILER_SIZE

BATCH = 1024 * 1024  # what the object paths hand on at once: plaintext to a GET's response, ciphertext to the backend


async def encrypt_stream(
    source: AsyncIterable[Buffer],
    data_key: bytes,
    *,
    part_number: int = 0,
    context: bytes = b"",
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    batch_size: int = 0,
    trailer: Callable[[], bytes] | None = None,
) -> AsyncIterator[Buffer]:
    """The stored bytes of one part: its plaintext cut into chunks, each sealed; the last one short.

    The stored size is `sizes.ciphertext_size(n, chunk_size)` for n plaintext bytes, plus
    TRAILER_SIZE with `trailer`: called once the source is exhausted (so it may use what reading it
    taught, e.g. the body's MD5), its TRAILER_SIZE bytes follow the final chunk. Sealed chunks
    come one by one, or (batch_size > 0) sealed straight into fresh buffers of about batch_size
    bytes, so the layers below see few, large pieces (each a socket write or a file write).
    """
    cipher = PartCipher.for_part(data_key, part_number=part_number, chunk_size=chunk_size, context=context)
    out = _SealedBatches(cipher, batch_size)
    buf = bytearray(chunk_size)  # reused: filled by slice assignment, never resized
    fill = 0
    index = 0
    async for piece in source:
        view = memoryview(piece).cast("B")
        if fill:
            k = min(chunk_size - fill, len(view))
            buf[fill : fill + k] = view[:k]
            fill += k
            view = view[k:]
            if fill < chunk_size:
                continue
            if (ready := out.seal(index, buf)) is not None:
                yield ready
            index += 1
            fill = 0
        while len(view) >= chunk_size:  # whole chunks straight from the piece, no copy
            if (ready := out.seal(index, view[:chunk_size])) is not None:
                yield ready
            index += 1
            view = view[chunk_size:]
        if view:
            buf[: len(view)] = view
            fill = len(view)
    for ready in out.last(index, memoryview(buf)[:fill]):  # the final chunk: shorter than a chunk, possibly empty
        yield ready
    if trailer is not None:
        tail = trailer()
        if len(tail) != TRAILER_SIZE:
            raise ValueError("a trailer is TRAILER_SIZE bytes")
        yield tail


class _SealedBatches:
    """Seals chunks one by one (batch_size 0), or into buffers handed on once they hold batch_size
    bytes; a buffer is never written after it was handed on until no view of it is left."""

    def __init__(self, cipher: PartCipher, batch_size: int) -> None:
        self._cipher = cipher
        self._batch_size = batch_size
        # below batch_size, one more chunk always fits
        self._recycler = Recycler(batch_size + cipher.chunk_size + TAG_SIZE)
        self._raw = bytearray()
        self._out = memoryview(self._raw)
        self._end = 0

    def seal(self, index: int, chunk: Buffer) -> Buffer | None:
        """Seal chunk `index`; what is ready to hand on, if anything."""
        if not self._batch_size:
            return self._cipher.seal(index, chunk)
        if not self._out:
            self._raw = self._recycler.take()
            self._out = memoryview(self._raw)
        self._end += self._cipher.seal_into(index, chunk, self._out[self._end :])
        if self._end < self._batch_size:
            return None
        return self._take()

    def last(self, index: int, chunk: Buffer) -> list[Buffer]:
        """Seal the final chunk; everything still held, in order."""
        if not self._end:  # nothing held (e.g. a small object): no batch buffer for one short chunk
            return [self._cipher.seal(index, chunk)]
        ready = self.seal(index, chunk)
        return [ready if ready is not None else self._take()]

    def _take(self) -> Buffer:
        ready, self._out, self._end = self._out[: self._end].toreadonly(), memoryview(bytearray()), 0
        self._recycler.retire(self._raw)
        return ready


class _Reader:
    """Reads exact byte counts from an async iterator of pieces: slices of a piece, or one reused buffer."""

    def __init__(self, source: AsyncIterable[Buffer]) -> None:
        self._it = source.__aiter__()
        self._view = memoryview(b"")
        self._scratch = bytearray()
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

    def available(self) -> int:
        """Bytes left in the current piece (take() hands out up to this many without awaiting)."""
        return len(self._view)

    def take(self, n: int) -> Buffer | None:
        """n bytes (n > 0) if the current piece still holds them: a slice, without awaiting; else None."""
        if len(self._view) >= n:
            out, self._view = self._view[:n], self._view[n:]
            return out
        return None

    async def read(self, n: int) -> Buffer:
        """Exactly n bytes, or fewer only at the end of the source; valid until the next read."""
        out = self.take(n)
        if out is not None:
            return out
        if len(self._scratch) < n:
            self._scratch = bytearray(n)  # reused for every chunk that spans pieces
        filled = 0
        while filled < n and await self._fill():
            k = min(n - filled, len(self._view))
            self._scratch[filled : filled + k] = self._view[:k]
            self._view = self._view[k:]
            filled += k
        return memoryview(self._scratch)[:filled]

    async def at_end(self) -> bool:
        return not await self._fill()


async def _open_segment(reader: _Reader, cipher: PartCipher, segment: Segment, batch_size: int = 0,
                        recycler: Recycler | None = None) -> AsyncIterator[Buffer]:
    """Opened chunks, each released once it authenticated: one at a time, or (batch_size > 0) in
    batches of about batch_size bytes, so the layers above see few, large pieces (a yield through a
    chain of async generators costs per piece, not per byte)."""
    if batch_size > 0:
        recycler = recycler or Recycler(batch_size + cipher.chunk_size)
        async for batch in _open_batched(reader, cipher, segment, batch_size, recycler):
            yield batch
        return
    skip, left = segment.skip, segment.take
    for index in range(segment.first_chunk, segment.last_chunk + 1):
        length = chunk_plaintext_size(index, segment.part_size, cipher.chunk_size) + TAG_SIZE
        sealed = reader.take(length) or await _read_sealed(reader, length)
        plain: Buffer = cipher.open(index, sealed, final=index == segment.final_chunk)
        if skip or len(plain) > left:
            plain = memoryview(plain)[skip : skip + left]
            skip = 0
        left -= len(plain)
        if plain:
            yield plain


async def _open_batched(reader: _Reader, cipher: PartCipher, segment: Segment, batch_size: int,
                        recycler: Recycler) -> AsyncIterator[Buffer]:
    """_open_segment in batches: chunks are opened straight into one buffer per batch (no per-chunk
    allocation, no joining copy), and a batch is yielded, as a view of its buffer, only when every
    chunk in it authenticated. A buffer is never written after it was yielded, unless `recycler`
    hands it out again once no view of it is left. Full chunks that lie together in the current
    piece are opened in one call."""
    cs = cipher.chunk_size
    step = cs + TAG_SIZE
    part_end = min((segment.last_chunk + 1) * cs, segment.part_size)  # plaintext end of the last chunk read
    full_end = min(segment.last_chunk + 1, segment.final_chunk)  # chunks before this one are full
    skip, left = segment.skip, segment.take
    raw = bytearray()
    out, start, end = memoryview(raw), 0, 0  # out[start:end] is authenticated and not yet released
    index = segment.first_chunk
    while index <= segment.last_chunk:
        run = min(reader.available() // step, full_end - index)
        length = chunk_plaintext_size(index, segment.part_size, cs) if run < 2 else cs
        if end + length > len(out):
            recycler.retire(raw)
            size = min(batch_size + cs, part_end - index * cs)
            raw = recycler.take() if size == recycler.size else bytearray(size)
            out, start, end = memoryview(raw), 0, 0
        if run >= 2:  # several whole full chunks in the current piece (the common case)
            count = min(run, (len(out) - end) // cs)
            n = cipher.open_run_into(index, reader.take(count * step), out[end:])  # type: ignore[arg-type]
            index += count
        else:
            sealed = reader.take(length + TAG_SIZE) or await _read_sealed(reader, length + TAG_SIZE)
            n = cipher.open_into(index, sealed, out[end:], final=index == segment.final_chunk)
            index += 1
        take = min(n - skip, left)
        if start == end:
            start = end = end + skip
        end, left, skip = end + take, left - take, 0
        if end >= batch_size:
            if end > start:
                yield out[start:end].toreadonly()
            out, start, end = memoryview(bytearray()), 0, 0
    if end > start:
        yield out[start:end].toreadonly()


async def _read_sealed(reader: _Reader, length: int) -> Buffer:
    """The next stored chunk (ciphertext and tag), `length` bytes; IntegrityError if cut short."""
    sealed = await reader.read(length)
    if len(sealed) != length:
        raise IntegrityError()  # truncated
    return sealed


async def _open_segments(
    source: AsyncIterable[Buffer], data_key: bytes, segments: tuple[Segment, ...], chunk_size: int, context: bytes,
    batch_size: int = 0, trailer: Callable[[bytes], object] | None = None,
) -> AsyncIterator[Buffer]:
    reader = _Reader(source)
    recycler = Recycler(batch_size + chunk_size) if batch_size > 0 else None
    held: Buffer | None = None  # with a trailer: the last piece waits until the trailer verified
    for segment in segments:
        cipher = PartCipher.for_part(data_key, part_number=segment.part_number, chunk_size=chunk_size, context=context)
        async for plain in _open_segment(reader, cipher, segment, batch_size, recycler):
            if trailer is None:
                yield plain
                continue
            if held is not None:
                yield held
            held = plain
    if trailer is not None:
        trailer(bytes(await _read_sealed(reader, TRAILER_SIZE)))  # IntegrityError if short or not authentic
    if not await reader.at_end():
        raise IntegrityError()  # data after the last chunk planned (or after the trailer)
    if held is not None:
        yield held


def decrypt_range(
    source: AsyncIterable[Buffer], data_key: bytes, plan: RangePlan, *, context: bytes = b"", batch_size: int = 0,
    trailer: Callable[[bytes], object] | None = None,
) -> AsyncIterator[Buffer]:
    """The plaintext of `plan` from exactly its stored bytes ciphertext_start..ciphertext_end.

    Each chunk is opened before its bytes are released; missing or extra stored bytes fail.
    With `batch_size`, authenticated chunks are handed on in pieces of about that many bytes.
    With `trailer` (a whole object that has one), the source goes on with TRAILER_SIZE bytes after
    the last chunk, which `trailer(bytes)` checks (raising IntegrityError); the last plaintext piece
    is released only after that, so a bad trailer never ends in a complete-looking body.
    """
    return _open_segments(source, data_key, plan.segments, plan.chunk_size, context, batch_size, trailer)


def decrypt_stream(
    source: AsyncIterable[Buffer],
    data_key: bytes,
    *,
    plaintext_size: int | None = None,
    part_number: int = 0,
    context: bytes = b"",
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    first_chunk: int = 0,
) -> AsyncIterator[Buffer]:
    """The plaintext of one part from its stored bytes, starting at chunk `first_chunk`, to its end.

    With `plaintext_size` (from the envelope) every chunk length is known in advance. Without it
    the part must end with its one short chunk (a full last chunk is a truncation), as C2SP reads.
    """
    cipher = PartCipher.for_part(data_key, part_number=part_number, chunk_size=chunk_size, context=context)
    return decrypt_chunks(source, cipher, plaintext_size=plaintext_size, first_chunk=first_chunk)


async def decrypt_chunks(
    source: AsyncIterable[Buffer], cipher: PartCipher, *, plaintext_size: int | None = None, first_chunk: int = 0
) -> AsyncIterator[Buffer]:
    """decrypt_stream with a ready cipher (any C2SP message, e.g. the C2SP vectors' 16 KiB chunks)."""
    chunk_size = cipher.chunk_size
    reader = _Reader(source)
    if plaintext_size is not None:
        final_chunk = plaintext_size // chunk_size
        if not 0 <= first_chunk <= final_chunk:
            raise ValueError("first chunk past the end of the part")
        step = chunk_size + TAG_SIZE
        tail = Segment(
            part_number=-1,  # unused: the cipher is given
            part_size=plaintext_size,
            first_chunk=first_chunk,
            last_chunk=final_chunk,
            skip=0,
            take=plaintext_size - first_chunk * chunk_size,
            ciphertext_start=first_chunk * step,
            ciphertext_end=final_chunk * step + plaintext_size % chunk_size + TAG_SIZE - 1,
            chunk_size=chunk_size,
        )
        async for plain in _open_segment(reader, cipher, tail):
            yield plain
        if not await reader.at_end():
            raise IntegrityError()  # data after the final chunk
        return
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
