"""Hypothesis properties of the stream adapters (s3proxy/streams.py, FORMAT.md §3): round trips for any
piece sizes, batched sealing and reading in bounded pieces, buffers reused only when unviewed, and
no released byte from a damaged chunk."""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from s3proxy.format.chunks import TAG_SIZE
from s3proxy.format.errors import IntegrityError
from s3proxy.format.sizes import ciphertext_size
from s3proxy.streams import decrypt_range, decrypt_stream, encrypt_stream
from tests.format.format_helpers import collect, encrypt, encrypt_object, objects_and_ranges, pieces, read_range, run, steps

KEY = bytes(range(32))
FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
chunk_sizes = st.sampled_from([1024, 2048])


def data_of(n: int) -> bytes:
    return os.urandom(n)


@FAST
@given(
    n=st.integers(0, 6000),
    cuts=st.lists(st.integers(0, 6000), max_size=12),
    ct_cuts=st.lists(st.integers(0, 7000), max_size=12),
    c=chunk_sizes,
)
def test_round_trip_any_size_any_split(n: int, cuts: list[int], ct_cuts: list[int], c: int) -> None:
    data = data_of(n)
    stored = run(collect(encrypt_stream(pieces(data, cuts), KEY, chunk_size=c)))
    assert len(stored) == ciphertext_size(n, c)
    assert run(collect(decrypt_stream(pieces(stored, ct_cuts), KEY, chunk_size=c))) == data
    assert run(collect(decrypt_stream(pieces(stored, ct_cuts), KEY, chunk_size=c, plaintext_size=n))) == data


@FAST
@given(n=st.integers(0, 9000), cuts=st.lists(st.integers(0, 9000), max_size=8), c=chunk_sizes, batch=st.integers(1, 5))
def test_batched_sealing_stores_the_same_bytes_in_bounded_pieces(n: int, cuts: list[int], c: int, batch: int) -> None:
    """A PUT seals chunks straight into batch buffers: the stored bytes equal chunk-by-chunk sealing,
    and no piece handed to the backend is larger than a batch plus one sealed chunk."""
    data = data_of(n)
    batch_size = batch * c - 5 if batch > 1 else 1
    one_by_one = run(_pieces_of(encrypt_stream(pieces(data, cuts), KEY, chunk_size=c)))
    batched = run(_pieces_of(encrypt_stream(pieces(data, cuts), KEY, chunk_size=c, batch_size=batch_size)))
    assert b"".join(batched) == b"".join(one_by_one)  # joined only after the whole stream ran
    assert all(0 < len(p) <= batch_size + c + TAG_SIZE for p in batched)


@FAST
@given(case=objects_and_ranges(), batch=st.integers(1, 5), step=st.integers(1, 9000))
def test_batched_reads_release_the_same_bytes_in_bounded_pieces(
    case: tuple[list[int], int, int, int], batch: int, step: int
) -> None:
    """A GET opens chunks straight into batch buffers: same bytes as chunk by chunk, for any range and
    any piece sizes from the backend, and no piece larger than a batch plus one chunk."""
    sizes, c, first, last = case
    parts = [(0, data_of(-sizes[0]))] if sizes[0] < 0 else [(i + 1, data_of(n)) for i, n in enumerate(sizes)]
    envelope, stored = encrypt_object(parts, KEY, chunk_size=c)
    whole = b"".join(d for _, d in parts)
    batch_size = batch * c - 7 if batch > 1 else 1
    assert read_range(stored, KEY, envelope, first, last, step=step, batch_size=batch_size) == whole[first : last + 1]
    plan = envelope.plan(first, last)
    fetched = stored[plan.ciphertext_start : plan.ciphertext_end + 1]
    released = run(_pieces_of(decrypt_range(steps(fetched, step), KEY, plan, batch_size=batch_size)))
    assert all(0 < len(p) <= batch_size + c for p in released)
    assert b"".join(released) == whole[first : last + 1]  # joined only after the whole read ran


@FAST
@given(chunks=st.integers(8, 40), tail=st.integers(0, 1023), batch=st.integers(1, 3), step=st.integers(500, 9000),
       first=st.integers(0, 3000))
def test_batch_buffers_are_reused_only_once_nothing_views_them(chunks: int, tail: int, batch: int, step: int,
                                                               first: int) -> None:
    """Many full batches: whether the reader keeps every piece (no buffer may be written again) or
    drops each at once (buffers are recycled), it gets the same plaintext."""
    c = 1024
    data = data_of(chunks * c + tail)
    envelope, stored = encrypt_object([(0, data)], KEY, chunk_size=c)
    plan = envelope.plan(first, len(data) - 1)
    fetched = stored[plan.ciphertext_start : plan.ciphertext_end + 1]
    kept = run(_pieces_of(decrypt_range(steps(fetched, step), KEY, plan, batch_size=batch * c)))
    assert b"".join(kept) == data[first:]
    assert read_range(stored, KEY, envelope, first, len(data) - 1, step=step, batch_size=batch * c) == data[first:]


async def _pieces_of(stream):  # noqa: ANN001, ANN202
    """Every piece as handed on, kept as is: a buffer written again after it was handed on shows."""
    return [p async for p in stream]


@FAST
@given(n=st.integers(1, 6000), at=st.integers(0, 10_000), bit=st.integers(0, 7), c=chunk_sizes, batch=st.integers(1, 4))
def test_batched_reads_release_nothing_of_a_batch_with_a_bad_chunk(n: int, at: int, bit: int, c: int, batch: int) -> None:
    """Chunks are opened into the batch buffer before the batch is released: a flipped byte fails the
    read, and what was released before is whole authentic batches ending before the bad chunk."""
    data = data_of(n)
    envelope, stored = encrypt_object([(0, data)], KEY, chunk_size=c)
    damaged = bytearray(stored)
    at %= len(damaged)
    damaged[at] ^= 1 << bit
    released: list[bytes] = []

    async def read() -> None:
        async for piece in decrypt_range(steps(bytes(damaged), 1000), KEY, envelope.plan_all(), batch_size=batch * c):
            released.append(bytes(piece))

    with pytest.raises(IntegrityError):
        run(read())
    out = b"".join(released)
    assert data.startswith(out)
    assert len(out) <= (at // (c + TAG_SIZE)) * c  # nothing of the damaged chunk
    assert len(out) % (batch * c) == 0  # only whole batches


@FAST
@given(n=st.integers(0, 4000), at=st.integers(0, 10_000), bit=st.integers(0, 7), c=chunk_sizes)
def test_any_single_flipped_byte_fails(n: int, at: int, bit: int, c: int) -> None:
    data = data_of(n)
    stored = bytearray(encrypt(data, KEY, chunk_size=c))
    stored[at % len(stored)] ^= 1 << bit
    with pytest.raises(IntegrityError):
        run(collect(decrypt_stream(pieces(bytes(stored)), KEY, chunk_size=c, plaintext_size=n)))
    with pytest.raises(IntegrityError):
        run(collect(decrypt_stream(pieces(bytes(stored)), KEY, chunk_size=c)))
