"""Single behaviours of the stream adapters (s3proxy/streams.py, FORMAT.md §3): plaintext released only
after its chunk authenticated, reads from a middle chunk, pieces of any size regrouped into chunks,
the end of a part verified, and memory flat however large the stream."""

from __future__ import annotations

import os
import tracemalloc
from collections.abc import AsyncIterator

import pytest

from s3proxy.format.chunks import TAG_SIZE
from s3proxy.format.errors import IntegrityError
from s3proxy.streams import decrypt_stream, encrypt_stream
from tests.format.format_helpers import collect, encrypt, pieces, run, steps

KEY = bytes(range(32))
C = 1024
MiB = 1 << 20


def test_plaintext_of_a_bad_chunk_is_never_released() -> None:
    data = os.urandom(4 * C + 7)
    stored = bytearray(encrypt(data, KEY, chunk_size=C))
    stored[2 * (C + TAG_SIZE) + 5] ^= 0x80  # inside chunk 2
    released: list[bytes] = []

    async def drain() -> None:
        async for piece in decrypt_stream(steps(bytes(stored), 100), KEY, chunk_size=C, plaintext_size=len(data)):
            released.append(bytes(piece))

    with pytest.raises(IntegrityError):
        run(drain())
    assert b"".join(released) == data[: 2 * C]  # chunks 0 and 1, nothing of chunk 2


def test_decrypt_from_a_middle_chunk_to_the_end() -> None:
    data = os.urandom(5 * C + 3)
    stored = encrypt(data, KEY, chunk_size=C)
    tail = stored[3 * (C + TAG_SIZE) :]
    assert run(collect(decrypt_stream(pieces(tail), KEY, chunk_size=C, plaintext_size=len(data), first_chunk=3))) == data[3 * C :]
    assert run(collect(decrypt_stream(pieces(tail), KEY, chunk_size=C, first_chunk=3))) == data[3 * C :]
    with pytest.raises(IntegrityError):  # the same bytes claimed to start at chunk 2
        run(collect(decrypt_stream(pieces(tail), KEY, chunk_size=C, first_chunk=2)))


def test_one_byte_pieces_are_regrouped_into_whole_chunks() -> None:
    data = os.urandom(3 * C + 1)
    out = run(collect_list(encrypt_stream(steps(data, 1), KEY, chunk_size=C)))
    assert [len(x) for x in out] == [C + TAG_SIZE] * 3 + [1 + TAG_SIZE]
    assert run(collect(decrypt_stream(steps(b"".join(out), 1), KEY, chunk_size=C))) == data


async def collect_list(stream: AsyncIterator[bytes]) -> list[bytes]:
    return [bytes(x) async for x in stream]


def test_memory_stays_flat_through_encrypt_and_decrypt() -> None:
    total, piece = 48 * MiB, os.urandom(MiB)

    async def source() -> AsyncIterator[bytes]:
        for _ in range(total // MiB):
            yield piece

    async def pipeline() -> int:
        count = 0
        stored = encrypt_stream(source(), KEY)
        async for plain in decrypt_stream(stored, KEY, plaintext_size=total):
            count += len(plain)
        return count

    tracemalloc.start()
    try:
        assert run(pipeline()) == total
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 * MiB  # a few chunks and pieces, not the 48 MiB object


def test_the_end_of_a_part_is_verified() -> None:
    data = os.urandom(3 * C + 5)
    stored = encrypt(data, KEY, chunk_size=C)
    cut = stored[: 3 * (C + TAG_SIZE)]  # the final short chunk dropped: what is left ends on a full chunk
    with pytest.raises(IntegrityError):
        run(collect(decrypt_stream(pieces(cut), KEY, chunk_size=C)))
    with pytest.raises(IntegrityError):
        run(collect(decrypt_stream(pieces(cut), KEY, chunk_size=C, plaintext_size=len(data))))
    with pytest.raises(IntegrityError):  # anything after the final chunk
        run(collect(decrypt_stream(pieces(stored + b"\0"), KEY, chunk_size=C, plaintext_size=len(data))))
    with pytest.raises(ValueError):
        run(collect(decrypt_stream(pieces(stored), KEY, chunk_size=C, plaintext_size=len(data), first_chunk=4)))


def test_source_pieces_may_be_reused_once_handed_over() -> None:
    """A backend recycles its receive buffers: a piece written again after encrypt_stream took it must
    not change what was sealed (a partial chunk is copied, whole chunks are sealed at once)."""
    data = os.urandom(5 * C + 300)

    async def recycled() -> AsyncIterator[bytearray]:
        buf = bytearray(700)
        for at in range(0, len(data), 700):
            piece = data[at : at + 700]
            buf[: len(piece)] = piece
            yield memoryview(buf)[: len(piece)]  # type: ignore[misc]
            buf[:] = b"\xff" * len(buf)  # overwritten before the next piece

    async def sealed() -> bytes:
        return b"".join([bytes(p) async for p in encrypt_stream(recycled(), KEY, chunk_size=C)])

    assert run(collect(decrypt_stream(pieces(run(sealed())), KEY, chunk_size=C))) == data
