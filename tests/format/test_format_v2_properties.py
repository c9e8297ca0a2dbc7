"""Hypothesis properties of format v2 (FORMAT.md §9, §11, §12, §15, §16): any flipped bit in any bound
field, trailer, sealed ETag, record or audit line fails; the metadata MAC's encoding is injective."""

from __future__ import annotations

import hashlib
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from s3proxy.format.auditchain import AUDIT_GENESIS, AuditOutcome, audit_line, verify_audit_chain
from s3proxy.format.errors import IntegrityError
from s3proxy.format.keys import integrity_keys
from s3proxy.format.metadata import (
    BOUND_HEADERS,
    metadata_mac_input,
    object_arn,
    open_etag,
    open_metadata,
    seal_etag,
    seal_metadata,
)
from s3proxy.format.records import open_record, seal_record
from s3proxy.format.trailer import TrailerValues, open_trailer, seal_trailer

KEYS = integrity_keys(bytes(range(50, 82)))
DATA_KEY = bytes(range(32))
FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# strings as a backend hands them over: any Unicode but lone surrogates (those stand for raw bytes)
strings = st.text(st.characters(exclude_categories=("Cs",)), max_size=12)
user_keys = st.text("abcdefghijklmnopqrstuvwxyz0123456789-_.", min_size=1, max_size=10)
ENVELOPE = {
    "s3proxy-v": "2", "s3proxy-cs": "65536", "s3proxy-size": "10", "s3proxy-mac": "M" * 43, "s3proxy-mode": "aws:kms",
    "s3proxy-key": "a2V5", "s3proxy-etag": "0" * 32,
}


@st.composite
def objects(draw: st.DrawFn) -> tuple[str, dict[str, str], dict[str, str]]:
    arn = object_arn(draw(user_keys), draw(strings.filter(bool)))
    user = draw(st.dictionaries(user_keys.filter(lambda k: not k.startswith("s3proxy-")), strings, max_size=4))
    headers = draw(st.dictionaries(st.sampled_from(BOUND_HEADERS), strings, max_size=len(BOUND_HEADERS)))
    return arn, {**ENVELOPE, **user}, headers


def flip(value: str, data: st.DataObject) -> str:
    """`value` with one bit of one of its bytes flipped, as a backend would return the bytes."""
    raw = bytearray(value.encode("utf-8", "surrogateescape") or b"\x00")
    at = data.draw(st.integers(0, len(raw) - 1))
    raw[at] ^= 1 << data.draw(st.integers(0, 7))
    return raw.decode("utf-8", "surrogateescape")


@FAST
@given(obj=objects(), data=st.data())
def test_any_flipped_bit_in_any_bound_field_fails(obj, data) -> None:  # noqa: ANN001
    arn, meta, headers = obj
    stored = seal_metadata(KEYS.meta, arn, meta, headers)
    assert open_metadata(KEYS.meta, arn, stored, headers) == 2
    target = data.draw(
        st.sampled_from(
            ["arn", "meta key", "meta value", "header value", "mac"] if headers else ["arn", "meta key", "meta value", "mac"]
        )
    )
    if target == "arn":
        arn = flip(arn, data)
    elif target == "mac":
        stored["s3proxy-mm"] = flip(stored["s3proxy-mm"], data)
    elif target == "header value":
        name = data.draw(st.sampled_from(sorted(headers)))
        headers = {**headers, name: flip(headers[name], data)}
    else:
        key = data.draw(st.sampled_from(sorted(k for k in stored if k != "s3proxy-mm")))
        if target == "meta value":
            stored[key] = flip(stored[key], data)
        else:
            new = flip(key, data)
            if new in stored:
                return  # the flip hit another existing key: not one edit
            stored[new] = stored.pop(key)
    try:
        version = open_metadata(KEYS.meta, arn, stored, headers)
    except IntegrityError:
        return
    # the one edit that does not raise: renaming s3proxy-v away makes it "not an s3proxy object",
    # whose body the proxy never serves (FORMAT.md §14 step 1, §18)
    assert version == 0 and "s3proxy-v" not in stored


def parse_mac_input(data: bytes) -> tuple[str, dict[str, str], dict[str, str]]:
    """The inverse of metadata_mac_input: it exists, so the encoding is injective (§12)."""
    label = b"s3proxy.format@v2 metadata\x00"
    assert data.startswith(label)
    at = len(label)

    def take(n: int) -> bytes:
        nonlocal at
        out = data[at : at + n]
        assert len(out) == n
        at += n
        return out

    def string() -> str:
        return take(int.from_bytes(take(4), "big")).decode("utf-8", "surrogateescape")

    def entries() -> dict[str, str]:
        count = int.from_bytes(take(4), "big")
        out = {}
        for _ in range(count):
            k = string()
            assert k not in out
            out[k] = string()
        return out

    arn = string()
    meta, headers = entries(), entries()
    assert at == len(data)
    return arn, meta, headers


@FAST
@given(obj=objects())
def test_mac_input_decodes_back_to_exactly_its_fields(obj) -> None:  # noqa: ANN001
    arn, meta, headers = obj
    assert parse_mac_input(metadata_mac_input(arn, {**meta, "s3proxy-mm": "x"}, headers)) == (arn, meta, headers)


@FAST
@given(one=objects(), two=objects())
def test_different_field_sets_never_give_the_same_input(one, two) -> None:  # noqa: ANN001
    if one != two:
        assert metadata_mac_input(*one) != metadata_mac_input(*two)


def flip_bytes(blob: bytes, data: st.DataObject) -> bytes:
    at = data.draw(st.integers(0, len(blob) - 1))
    return blob[:at] + bytes([blob[at] ^ (1 << data.draw(st.integers(0, 7)))]) + blob[at + 1 :]


@FAST
@given(flags=st.sampled_from([1, 2, 3]), data=st.data())
def test_any_flipped_bit_of_a_trailer_fails(flags: int, data: st.DataObject) -> None:
    values = TrailerValues("0" * 32 if flags & 1 else None, "sha1" if flags & 2 else None,
                           "2jmj7l5rSw0yVb/vlWAYkK/YBwk=" if flags & 2 else None)
    tail = seal_trailer(DATA_KEY, values)
    with pytest.raises(IntegrityError):
        open_trailer(DATA_KEY, flip_bytes(tail, data), flags)


@FAST
@given(value=st.dictionaries(user_keys, strings, max_size=3), generation=st.integers(0, 2**64 - 1), data=st.data())
def test_any_flipped_bit_of_a_record_fails(value: dict, generation: int, data: st.DataObject) -> None:
    blob = seal_record(KEYS.records, "bucket-encryption/b", "b", value, generation=generation)
    assert open_record(KEYS.records, "bucket-encryption/b", "b", blob).value == value
    with pytest.raises(IntegrityError):
        open_record(KEYS.records, "bucket-encryption/b", "b", flip_bytes(blob, data))


@FAST
@given(key=strings.filter(bool), data=st.data())
def test_any_flipped_bit_of_a_sealed_etag_fails(key: str, data: st.DataObject) -> None:
    arn = object_arn("b", key)
    sealed = seal_etag(KEYS.meta, arn, hashlib.md5(key.encode()).hexdigest())
    with pytest.raises(IntegrityError):
        open_etag(KEYS.meta, arn, flip(sealed, data))


@settings(max_examples=100, deadline=None)
@given(count=st.integers(1, 5), data=st.data())
def test_any_flipped_bit_of_an_audit_log_is_noticed(count: int, data: st.DataObject) -> None:
    lines, prev = [], AUDIT_GENESIS
    for seq in range(1, count + 1):
        line, prev = audit_line(KEYS.audit, {"eventName": "Encrypt", "n": seq, "who": "é"}, seq, prev)
        lines.append(line)
    log = b"".join(lines)
    head = json.dumps({"seq": count, "mac": prev}).encode()
    assert verify_audit_chain(KEYS.audit, log, head).outcome == AuditOutcome.INTACT
    assert verify_audit_chain(KEYS.audit, flip_bytes(log, data), head).outcome != AuditOutcome.INTACT
