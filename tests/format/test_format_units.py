"""Boundary tables and single behaviours of the format: sizes, ranges, envelope, streams (FORMAT.md §3-8)."""

from __future__ import annotations

import os

import pytest
from format_helpers import collect, encrypt, encrypt_object, pieces, read_range, run

from s3proxy.format.chunks import DEFAULT_CHUNK_SIZE, TAG_SIZE, PartCipher, derive, part_context, part_salt
from s3proxy.format.envelope import (
    KEY_MAC,
    KEY_PARTS,
    Envelope,
    decode_parts,
    encode_parts,
    is_sealed,
    metadata_size,
    open_envelope,
    seal_envelope,
)
from s3proxy.format.errors import IntegrityError
from s3proxy.format.ranges import plan_object, plan_range
from s3proxy.format.sizes import ciphertext_size, plaintext_size
from s3proxy.streams import decrypt_range

KEY = bytes(range(32))
C = 1024
GiB = 1 << 30
MiB = 1 << 20

# --- §5 sizes: every row says why it is there ---
SIZES = [
    (0, 16),  # empty part: one empty final chunk, a bare tag
    (1, 17),  # one byte: one short final chunk
    (C - 1, C + 15),  # largest single-chunk part
    (C, C + 32),  # exactly a chunk: full chunk + empty final chunk
    (C + 1, C + 33),  # a full chunk + a 1-byte final chunk
    (3 * C, 3 * C + 64),  # a multiple of the chunk: the empty final chunk again
]


@pytest.mark.parametrize(("n", "m"), SIZES)
def test_size_table(n: int, m: int) -> None:
    assert ciphertext_size(n, C) == m
    assert plaintext_size(m, C) == n
    assert len(encrypt(os.urandom(n), KEY, chunk_size=C)) == m


@pytest.mark.parametrize(
    "m",
    [
        0,  # nothing: not even the final chunk's tag
        15,  # shorter than one tag
        C + 16,  # ends on a full chunk: truncated at a chunk boundary
        C + 16 + 15,  # a full chunk and part of a tag
    ],
)
def test_impossible_stored_sizes(m: int) -> None:
    with pytest.raises(IntegrityError):
        plaintext_size(m, C)


# --- §6 ranges ---
def test_last_byte_of_a_1_gib_object_touches_one_chunk() -> None:
    c = DEFAULT_CHUNK_SIZE
    plan = plan_range(GiB - 1, GiB - 1, [GiB], c)
    (seg,) = plan.segments
    assert seg.first_chunk == seg.last_chunk == GiB // c - 1  # the last full chunk; the empty final is not needed
    assert plan.ciphertext_length == c + TAG_SIZE
    assert plan.ciphertext_end == ciphertext_size(GiB, c) - TAG_SIZE - 1
    # same for a 1 GiB multipart object of 8 MiB parts plus an odd last part
    sizes = [8 * MiB] * 127 + [8 * MiB - 5]
    plan = plan_range(sum(sizes) - 1, sum(sizes) - 1, sizes, c)
    assert len(plan.segments) == 1 and plan.segments[0].reads_final and plan.ciphertext_length <= 2 * (c + TAG_SIZE)


@pytest.mark.parametrize(
    ("first", "last", "chunks"),
    [
        (0, 0, [(0, 0, 0)]),  # first byte: chunk 0 only
        (C - 1, C, [(0, 1, C - 1)]),  # straddles a chunk boundary: two chunks, skip C-1
        (2 * C - 1, 2 * C, [(1, 2, C - 1), (0, 0, 0)]),  # straddles parts 1 and 2: part 1's empty final chunk lies between
        (2 * C, 4 * C + 9, [(0, 2, 0), (0, 0, 0)]),  # part 2 whole (with its empty final) and part 3's start
    ],
)
def test_plan_table(first: int, last: int, chunks: list[tuple[int, int, int]]) -> None:
    plan = plan_range(first, last, [2 * C, 2 * C, 10], C)
    assert [(s.first_chunk, s.last_chunk, s.skip) for s in plan.segments] == chunks
    assert sum(s.take for s in plan.segments) == plan.length == last - first + 1


@pytest.mark.parametrize(("first", "last"), [(-1, 0), (5, 4), (0, 30), (30, 30)])
def test_unsatisfiable_ranges_are_value_errors(first: int, last: int) -> None:
    with pytest.raises(ValueError):
        plan_range(first, last, [10, 20], C)


def test_a_zero_size_part_inside_a_range_is_fetched_and_opened() -> None:
    envelope, stored = encrypt_object([(1, b"a" * 10), (2, b""), (3, b"b" * 10)], KEY, chunk_size=C)
    assert [s.part_number for s in envelope.plan(5, 15).segments] == [1, 2, 3]
    assert read_range(stored, KEY, envelope, 5, 15) == b"a" * 5 + b"b" * 6


def test_an_empty_object_reads_whole() -> None:
    envelope, stored = encrypt_object([(0, b"")], KEY, chunk_size=C)
    assert plan_object([0], C).ciphertext_length == 16
    assert read_range(stored, KEY, envelope, None, None) == b""


# --- §2 keys and context ---
def test_a_run_of_full_chunks_opens_as_chunk_by_chunk() -> None:
    c = 1024
    cipher = PartCipher.for_part(bytes(32), part_number=3, chunk_size=c)
    plain = os.urandom(5 * c)
    sealed = b"".join(cipher.seal(i, plain[i * c : (i + 1) * c]) for i in range(5))
    out = memoryview(bytearray(6 * c))
    assert cipher.open_run_into(0, memoryview(sealed), out) == 5 * c and bytes(out[: 5 * c]) == plain
    step = c + TAG_SIZE
    assert cipher.open_run_into(2, memoryview(sealed)[2 * step : 4 * step], out) == 2 * c
    assert bytes(out[: 2 * c]) == plain[2 * c : 4 * c]
    with pytest.raises(IntegrityError):  # the chunks are bound to their indices
        cipher.open_run_into(1, memoryview(sealed)[2 * step : 4 * step], out)
    with pytest.raises(IntegrityError):  # whole sealed chunks only
        cipher.open_run_into(0, memoryview(sealed)[: 2 * step - 1], out)
    flipped = bytearray(sealed)
    flipped[3 * step + 7] ^= 1
    with pytest.raises(IntegrityError):
        cipher.open_run_into(0, memoryview(flipped), out)
    with pytest.raises(ValueError):
        cipher.open_run_into(0, memoryview(sealed), out[: 4 * c])


def test_parts_and_contexts_get_distinct_keys() -> None:
    seen = {derive(KEY, part_salt(p), part_context(C, ctx)).key for p in (0, 1, 2) for ctx in (b"", b"x")}
    assert len(seen) == 6
    assert derive(KEY, part_salt(1), part_context(C, b"")).key != derive(KEY, part_salt(1), part_context(2 * C, b"")).key


def test_no_key_material_in_reprs_or_errors() -> None:
    keys = derive(KEY, part_salt(0), part_context(C, b""))
    cipher = PartCipher.for_part(KEY, chunk_size=C)
    for text in (repr(keys), repr(cipher), str(IntegrityError())):
        assert keys.key.hex() not in text and KEY.hex() not in text and "key=" not in text


def test_oversized_chunk_refused_and_bad_parameters() -> None:
    cipher = PartCipher.for_part(KEY, chunk_size=C)
    with pytest.raises(ValueError):
        cipher.seal(0, b"x" * (C + 1))
    with pytest.raises(ValueError):
        PartCipher.for_part(KEY[:16], chunk_size=C)
    with pytest.raises(ValueError):
        PartCipher.for_part(KEY, chunk_size=1000)  # not a power of two


# --- §7-8 envelope ---
def test_envelope_round_trip_and_the_usual_part_list() -> None:
    parts = [(i, 8 * MiB) for i in range(1, 125)] + [(125, 1234)]
    assert encode_parts(parts) == "8388608*124,1234"
    envelope = Envelope.multipart(parts)
    meta = seal_envelope(envelope, KEY, b"upload-1")
    assert is_sealed(meta) and open_envelope(meta, KEY, b"upload-1") == envelope
    assert metadata_size(meta) < 200
    single = Envelope.single(5)
    assert KEY_PARTS not in seal_envelope(single, KEY) and open_envelope(seal_envelope(single, KEY), KEY) == single


def test_envelope_with_the_part_list_kept_in_a_sidecar() -> None:
    parts = [(i, 5 * MiB + i) for i in range(1, 10001)]  # 10 000 distinct sizes: far over 2 KB
    meta = seal_envelope(Envelope.multipart(parts), KEY)
    assert metadata_size(meta) > 2048
    sidecar = meta.pop(KEY_PARTS)
    assert open_envelope(meta, KEY, parts=sidecar).parts == tuple(parts)
    with pytest.raises(IntegrityError):
        open_envelope(meta, KEY, parts=sidecar.replace("5242881", "5242882", 1))


@pytest.mark.parametrize(
    "text",
    [
        "",  # no runs
        "5,1:5",  # part numbers go back
        "05",  # leading zero
        "1*0",  # a run of no parts
        "9999:1*3",  # past part 10000
        "1;2",  # a stranger separator
    ],
)
def test_malformed_part_lists_are_refused(text: str) -> None:
    with pytest.raises(IntegrityError):
        decode_parts(text)


def test_envelope_refuses_wrong_key_context_and_tampering() -> None:
    meta = seal_envelope(Envelope.single(100), KEY, b"ctx")
    with pytest.raises(IntegrityError):
        open_envelope(meta, bytes(32), b"ctx")
    with pytest.raises(IntegrityError):
        open_envelope(meta, KEY, b"")
    with pytest.raises(IntegrityError):
        open_envelope({**meta, KEY_MAC: "!!"}, KEY, b"ctx")


def test_ranged_read_with_wrong_context_fails_even_past_the_envelope() -> None:
    envelope, stored = encrypt_object([(0, os.urandom(3 * C))], KEY, chunk_size=C, context=b"a")
    plan = envelope.plan(C, C)
    with pytest.raises(IntegrityError):
        run(collect(decrypt_range(pieces(stored[plan.ciphertext_start : plan.ciphertext_end + 1]), KEY, plan, context=b"b")))
