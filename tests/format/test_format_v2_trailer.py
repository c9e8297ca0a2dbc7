"""Version-2 envelope and trailer: the trailer flag under the envelope MAC, stored sizes with a
trailer, ranges untouched, the trailer's layout and every way to break it, sealed checksums, the
v1 -> v2 envelope upgrade (FORMAT.md §5, §6, §8-10, §19.2)."""

from __future__ import annotations

import base64
import hashlib
import os
import zlib

import pytest
from format_helpers import encrypt_object, read_range

from s3proxy.format.envelope import (
    KEY_MAC,
    KEY_TRAILER,
    KEY_VERSION,
    VERSION_1,
    VERSION_2,
    Envelope,
    envelope_mac,
    open_envelope,
    seal_envelope,
    upgrade_envelope,
)
from s3proxy.format.errors import IntegrityError
from s3proxy.format.keys import open_sealed, seal
from s3proxy.format.sizes import ciphertext_size, object_ciphertext_size, plaintext_size
from s3proxy.format.trailer import (
    BLOCK_SIZE,
    TRAILER_SIZE,
    TrailerValues,
    open_checksums,
    open_trailer,
    seal_checksums,
    seal_trailer,
)

KEY = bytes(range(32))
OTHER = bytes(range(1, 33))
C = 1024
MD5 = hashlib.md5(b"x").hexdigest()
CRC = base64.b64encode(zlib.crc32(b"x").to_bytes(4, "big")).decode()
SHA = base64.b64encode(hashlib.sha256(b"x").digest()).decode()


def values(flags: int, algorithm: str = "crc32", checksum: str = CRC) -> TrailerValues:
    return TrailerValues(MD5 if flags & 1 else None, algorithm if flags & 2 else None, checksum if flags & 2 else None)


# --- §8 the envelope MAC, version 2 ---
@pytest.mark.parametrize("trailer", [0, 1, 2, 3])
def test_v2_envelope_round_trip_with_trailer_flags(trailer: int) -> None:
    env = Envelope.single(3 * C + 5, C, version=VERSION_2, trailer=trailer)
    meta = seal_envelope(env, KEY, b"ctx")
    assert meta[KEY_VERSION] == "2" and (meta.get(KEY_TRAILER) == (str(trailer) if trailer else None))
    assert open_envelope(meta, KEY, b"ctx") == env
    assert env.stored_size == ciphertext_size(3 * C + 5, C) + (TRAILER_SIZE if trailer else 0)
    assert env.trailer_range == ((env.ciphertext_size, env.stored_size - 1) if trailer else None)


@pytest.mark.parametrize("n", [0, 1, C - 1, C, C + 1, 5 * C + 3])
def test_stored_size_with_a_trailer_inverts(n: int) -> None:
    stored = object_ciphertext_size([n], C, trailer=True)
    assert stored == ciphertext_size(n, C) + 84 == Envelope.single(n, C, version=VERSION_2, trailer=2).stored_size
    assert plaintext_size(stored, C, trailer=True) == n
    assert plaintext_size(84 + 16, C, trailer=True) == 0  # an empty body: one empty chunk, then the trailer
    for wrong in (83, 84, 84 + 15):  # shorter than a trailer and one tag: no plaintext has that size
        with pytest.raises(IntegrityError):
            plaintext_size(wrong, C, trailer=True)


@pytest.mark.parametrize(
    "edit",
    [
        {KEY_TRAILER: "2"},  # the flag lied about
        {KEY_TRAILER: None},  # hidden
        {KEY_TRAILER: "0"},
        {KEY_TRAILER: "01"},
        {KEY_VERSION: "1"},  # relabelled to version 1 (K-MAC v1 input differs)
        {KEY_VERSION: "3"},
    ],
)
def test_trailer_flag_and_version_are_bound_by_the_envelope_mac(edit: dict[str, str | None]) -> None:
    meta = seal_envelope(Envelope.single(10, C, version=VERSION_2, trailer=1), KEY)
    for k, v in edit.items():
        if v is None:
            meta.pop(k)
        else:
            meta[k] = v
    with pytest.raises(IntegrityError):
        open_envelope(meta, KEY)


def test_v1_envelope_cannot_be_relabelled_v2_or_given_a_trailer() -> None:
    meta = seal_envelope(Envelope.single(10, C, version=VERSION_1), KEY)
    assert open_envelope(meta, KEY).version == VERSION_1
    for edit in ({KEY_VERSION: "2"}, {KEY_TRAILER: "1"}, {KEY_VERSION: "2", KEY_TRAILER: "1"}):
        with pytest.raises(IntegrityError):
            open_envelope({**meta, **edit}, KEY)


def test_trailers_only_on_version_2_single_part_objects() -> None:
    for bad in (lambda: Envelope.single(1, C, version=VERSION_1, trailer=1), lambda: Envelope.single(1, C, version=2, trailer=4),
                lambda: Envelope(C, ((1, 5),), VERSION_2, 1), lambda: Envelope(C, ((0, 5),), 3)):
        with pytest.raises(ValueError):
            bad()
    # an authentic-looking multipart envelope with a trailer flag is refused (the MAC input allows it, the rules do not)
    meta = seal_envelope(Envelope.multipart([(1, 5), (2, 5)], C, version=VERSION_2), KEY)
    forged = {**meta, KEY_TRAILER: "1"}
    forged[KEY_MAC] = base64.urlsafe_b64encode(envelope_mac(forged, KEY)).rstrip(b"=").decode()
    with pytest.raises(IntegrityError) as caught:
        open_envelope(forged, KEY)
    assert caught.value.field == KEY_TRAILER


def test_upgrade_reseals_a_v1_envelope_as_v2_and_refuses_anything_else() -> None:
    for env in (Envelope.single(3 * C, C, version=VERSION_1), Envelope.multipart([(1, 2 * C), (3, 7)], C, version=VERSION_1)):
        v1 = seal_envelope(env, KEY, b"c")
        v2 = upgrade_envelope(v1, KEY, b"c")
        assert v2[KEY_VERSION] == "2" and KEY_TRAILER not in v2 and v2[KEY_MAC] != v1[KEY_MAC]
        opened = open_envelope(v2, KEY, b"c")
        assert (opened.version, opened.parts, opened.chunk_size) == (VERSION_2, env.parts, env.chunk_size)
        with pytest.raises(IntegrityError):
            upgrade_envelope(v2, KEY, b"c")  # already version 2
        with pytest.raises(IntegrityError):
            upgrade_envelope({**v1, "s3proxy-size": "1"}, KEY, b"c")  # a v1 envelope that does not verify


def test_chunks_are_the_same_in_both_versions_so_ranges_are_too() -> None:
    data = os.urandom(3 * C + 5)
    v1, stored = encrypt_object([(0, data)], KEY, chunk_size=C)
    v2 = Envelope.single(len(data), C, version=VERSION_2, trailer=3)
    for first, last in ((0, 0), (C - 1, C), (3 * C, 3 * C + 4), (None, None)):
        assert read_range(stored, KEY, v2, first, last) == read_range(stored, KEY, v1, first, last)
        plan = v2.plan_all() if first is None else v2.plan(first, last)
        assert plan.ciphertext_end < v2.trailer_range[0]  # no range reaches into the trailer


# --- §9 the trailer ---
@pytest.mark.parametrize("flags", [1, 2, 3])
@pytest.mark.parametrize("algorithm, checksum", [("crc32", CRC), ("sha256", SHA)])
def test_trailer_round_trip(flags: int, algorithm: str, checksum: str) -> None:
    vals = values(flags, algorithm, checksum)
    tail = seal_trailer(KEY, vals, b"ctx")
    assert len(tail) == TRAILER_SIZE == 84
    assert open_trailer(KEY, tail, flags, b"ctx") == vals
    assert open_trailer(KEY, memoryview(tail), flags, b"ctx") == vals
    if flags & 2:
        assert vals.checksum_headers() == {f"x-amz-checksum-{algorithm}": checksum, "x-amz-checksum-type": "FULL_OBJECT"}


def test_trailer_block_layout() -> None:
    tail = seal_trailer(KEY, values(3), rand=lambda n: bytes(n))
    block = open_sealed(KEY, b"s3proxy.format@v2 trailer", tail, b"\x00\x00\x00\x00", "t")
    assert len(block) == BLOCK_SIZE
    assert block == b"\x02\x03" + bytes.fromhex(MD5) + b"\x01\x01" + zlib.crc32(b"x").to_bytes(4, "big") + bytes(28)


@pytest.mark.parametrize(
    "name, tail_of",
    [
        ("flipped", lambda t: t[:40] + bytes([t[40] ^ 1]) + t[41:]),
        ("salt flipped", lambda t: bytes([t[0] ^ 1]) + t[1:]),
        ("tag flipped", lambda t: t[:-1] + bytes([t[-1] ^ 0x80])),
        ("truncated", lambda t: t[:-1]),
        ("extended", lambda t: t + b"\x00"),
        ("removed", lambda t: b""),
        ("swapped from another object", lambda t: seal_trailer(OTHER, values(3))),
    ],
)
def test_trailer_tampering(name: str, tail_of) -> None:  # noqa: ANN001
    with pytest.raises(IntegrityError) as caught:
        open_trailer(KEY, tail_of(seal_trailer(KEY, values(3))), 3)
    assert caught.value.field == "trailer", name


def test_trailer_bound_to_context_and_to_the_envelope_flags() -> None:
    tail = seal_trailer(KEY, values(3), b"a")
    with pytest.raises(IntegrityError):
        open_trailer(KEY, tail, 3, b"b")
    for flags in (1, 2, 0, 7):  # the envelope says something else than the trailer holds
        with pytest.raises(IntegrityError):
            open_trailer(KEY, tail, flags, b"a")


def _forged(block: bytes) -> bytes:
    """A trailer sealed by a data-key holder around an arbitrary block (a writer bug, not an attacker)."""
    return seal(KEY, b"s3proxy.format@v2 trailer", block, b"\x00\x00\x00\x00")


@pytest.mark.parametrize(
    "block",
    [
        b"\x01\x01" + bytes(16) + bytes(34),  # unknown block version
        b"\x02\x01" + bytes(16) + b"\x01\x01" + bytes(32),  # a checksum the flags do not announce
        b"\x02\x02" + b"\x01" + bytes(15) + b"\x01\x01" + bytes(32),  # an MD5 the flags do not announce
        b"\x02\x02" + bytes(16) + b"\x09\x01" + bytes(32),  # unknown algorithm
        b"\x02\x02" + bytes(16) + b"\x01\x02" + bytes(32),  # checksum type other than FULL_OBJECT
        b"\x02\x02" + bytes(16) + b"\x01\x01" + bytes(4) + b"\x01" + bytes(27),  # non-zero padding
        b"\x02\x02" + bytes(16) + b"\x01\x01" + bytes(31),  # one byte short
    ],
)
def test_authentic_but_malformed_blocks_are_refused(block: bytes) -> None:
    flags = block[1]
    with pytest.raises(IntegrityError):
        open_trailer(KEY, _forged(block), flags)


def test_trailer_values_are_checked_at_seal_time() -> None:
    for bad in (TrailerValues(), TrailerValues(MD5.upper()), TrailerValues(None, "crc32", None), TrailerValues(None, "md4", CRC),
                TrailerValues(None, "sha256", CRC), TrailerValues("00")):
        with pytest.raises(ValueError):
            seal_trailer(KEY, bad)


# --- §10 sealed checksums ---
def test_sealed_checksums_round_trip_and_tampering() -> None:
    sealed = seal_checksums(KEY, {"sha256": SHA, "crc32": CRC})
    assert open_checksums(KEY, sealed) == {"crc32": CRC, "sha256": SHA}
    assert open_checksums(KEY, None) == {} and open_checksums(KEY, "") == {}
    raw = base64.b64decode(sealed)
    for bad in (base64.b64encode(raw[:-1] + bytes([raw[-1] ^ 1])).decode(), "!!", sealed[:-4]):
        with pytest.raises(IntegrityError):
            open_checksums(KEY, bad)
    with pytest.raises(IntegrityError):
        open_checksums(OTHER, sealed)
