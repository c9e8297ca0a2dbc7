"""Hypothesis properties of the format (FORMAT.md §3, §5, §6): round trips, ranges, flipped bytes."""

from __future__ import annotations

import os

import pytest
from format_helpers import encrypt_object, objects_and_ranges, read_range
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from s3proxy.format.chunks import TAG_SIZE
from s3proxy.format.envelope import decode_parts, encode_parts
from s3proxy.format.errors import IntegrityError
from s3proxy.format.sizes import ciphertext_size, plaintext_size

KEY = bytes(range(32))
FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
chunk_sizes = st.sampled_from([1024, 2048])


def data_of(n: int) -> bytes:
    return os.urandom(n)


@FAST
@given(n=st.integers(0, 100_000), c=st.sampled_from([1024, 4096, 262144]))
def test_size_formulas_invert(n: int, c: int) -> None:
    assert plaintext_size(ciphertext_size(n, c), c) == n


@FAST
@given(m=st.integers(0, 50_000), c=chunk_sizes)
def test_every_stored_size_is_valid_or_refused(m: int, c: int) -> None:
    if m % (c + TAG_SIZE) < TAG_SIZE:
        with pytest.raises(IntegrityError):
            plaintext_size(m, c)
    else:
        assert ciphertext_size(plaintext_size(m, c), c) == m


@FAST
@given(case=objects_and_ranges())
def test_any_valid_range_equals_the_plaintext_slice(case: tuple[list[int], int, int, int]) -> None:
    sizes, c, first, last = case
    parts = [(0, data_of(-sizes[0]))] if sizes[0] < 0 else [(i + 1, data_of(n)) for i, n in enumerate(sizes)]
    envelope, stored = encrypt_object(parts, KEY, chunk_size=c)
    whole = b"".join(d for _, d in parts)
    assert read_range(stored, KEY, envelope, first, last) == whole[first : last + 1]
    plan = envelope.plan(first, last)
    # O(range): never more than the chunks holding the range, plus whole chunks of the parts it crosses
    touched = sum(s.last_chunk - s.first_chunk + 1 for s in plan.segments)
    assert plan.ciphertext_length <= touched * (c + TAG_SIZE)
    assert plan.segments[0].first_chunk == (first - sum(n for _, n in envelope.parts[: _part_index(envelope, first)])) // c


def _part_index(envelope, offset: int) -> int:  # noqa: ANN001
    start = 0
    for i, (_, n) in enumerate(envelope.parts):
        if start <= offset < start + n:
            return i
        start += n
    raise AssertionError


@FAST
@given(parts=st.lists(st.tuples(st.integers(1, 3), st.sampled_from([0, 5, 8388608, 8388609])), min_size=1, max_size=30))
def test_part_list_encoding_round_trips(parts: list[tuple[int, int]]) -> None:
    numbered, number = [], 0
    for gap, size in parts:
        number += gap
        numbered.append((number, size))
    assert decode_parts(encode_parts(numbered)) == tuple(numbered)
