"""Sealed internal records with anchored generations, and the keyed audit chain (FORMAT.md §15, §16, §19.3)."""

from __future__ import annotations

import json

import pytest
from format_helpers import sha256_audit_log

from s3proxy.format.auditchain import AUDIT_GENESIS, AuditOutcome, audit_line, verify_audit_chain
from s3proxy.format.errors import IntegrityError
from s3proxy.format.keys import integrity_keys, seal
from s3proxy.format.records import (
    SHARED,
    Record,
    check_generation,
    is_legacy_record,
    open_legacy_record,
    open_record,
    seal_record,
)

KEYS = integrity_keys(bytes(range(7, 39)))
WRONG = integrity_keys(bytes(32))
CONFIG = {"algorithm": "aws:kms", "kms_key_id": "arn:aws:kms:us-east-1:000000000000:key/k", "bucket_key": True}


# --- §15 records ---
def test_record_round_trip() -> None:
    blob = seal_record(KEYS.records, "bucket-encryption/a", "a", CONFIG, generation=3)
    assert blob[0] == 2 and b"aws:kms" not in blob
    assert open_record(KEYS.records, "bucket-encryption/a", "a", blob) == Record(3, CONFIG)
    shared = seal_record(KEYS.records, "parts/" + "ab" * 16, SHARED, {"size": "5", "parts": "", "mac": "m", "etag": "e"})
    assert open_record(KEYS.records, "parts/" + "ab" * 16, SHARED, shared).generation == 0


@pytest.mark.parametrize(
    "name, bucket, blob_of, ik",
    [
        ("bucket-encryption/a", "a", lambda b: b[:30] + bytes([b[30] ^ 1]) + b[31:], KEYS.records),  # edited
        ("bucket-encryption/b", "b", lambda b: b, KEYS.records),  # a's record under b's name
        ("bucket-encryption/a", "b", lambda b: b, KEYS.records),  # right name, other bucket in the aad
        ("uploads/a", "a", lambda b: b, KEYS.records),  # under another name
        ("bucket-encryption/a", "a", lambda b: b[:-1], KEYS.records),  # truncated
        ("bucket-encryption/a", "a", lambda b: b[:1], KEYS.records),
        ("bucket-encryption/a", "a", lambda b: b"", KEYS.records),
        ("bucket-encryption/a", "a", lambda b: b"\x01" + b[1:], KEYS.records),  # unknown record version
        ("bucket-encryption/a", "a", lambda b: json.dumps(CONFIG).encode(), KEYS.records),  # bare v1 JSON
        ("bucket-encryption/a", "a", lambda b: b, WRONG.records),  # another integrity key
        ("bucket-encryption/a", "a", lambda b: b, KEYS.meta),  # another sub-key
    ],
)
def test_record_tampering(name: str, bucket: str, blob_of, ik: bytes) -> None:  # noqa: ANN001
    blob = seal_record(KEYS.records, "bucket-encryption/a", "a", CONFIG, generation=2)
    with pytest.raises(IntegrityError) as caught:
        open_record(ik, name, bucket, blob_of(blob))
    assert caught.value.field == f"record:{name}"


def test_a_name_and_bucket_split_differently_is_another_aad() -> None:
    blob = seal_record(KEYS.records, "ab", "c", {})
    with pytest.raises(IntegrityError):
        open_record(KEYS.records, "a", "bc", blob)


def test_sealed_non_object_json_is_refused() -> None:
    for body in (b"[1]", b"null", b"{", b""):
        blob = b"\x02" + seal(KEYS.records, b"s3proxy.format@v2 record", bytes(8) + body, b"\x00\x00\x00\x01n\x00\x00\x00\x01b")
        with pytest.raises(IntegrityError):
            open_record(KEYS.records, "n", "b", blob)


@pytest.mark.parametrize(
    "generation, anchored, ok",
    [
        (None, None, True),  # never configured
        (None, 0, True),
        (None, 1, False),  # deleted behind the proxy
        (3, 3, True),
        (4, 3, True),  # a writer stopped between record and anchor
        (2, 3, False),  # rolled back
        (1, None, True),  # first configuration, anchor not written yet
        (0, None, False),  # a write-once record's generation under a bucket record's name
        (0, 0, False),
    ],
)
def test_generations(generation: int | None, anchored: int | None, ok: bool) -> None:
    record = None if generation is None else Record(generation, {})
    if ok:
        assert check_generation(record, anchored) == record
    else:
        with pytest.raises(IntegrityError) as caught:
            check_generation(record, anchored)
        assert caught.value.field == "generation"


def test_legacy_records_are_recognised_for_the_upgrade_only() -> None:
    legacy = json.dumps(CONFIG).encode()
    assert is_legacy_record(legacy) and not is_legacy_record(seal_record(KEYS.records, "n", "b", CONFIG))
    assert open_legacy_record(legacy) == CONFIG
    for bad in (b"{", b"[]", b"\xff"):
        with pytest.raises(IntegrityError):
            open_legacy_record(bad)


def test_generation_range() -> None:
    with pytest.raises(ValueError):
        seal_record(KEYS.records, "n", "b", {}, generation=-1)
    with pytest.raises(ValueError):
        seal_record(KEYS.records, "n", "b", {}, generation=1 << 64)


# --- §16 the audit chain ---
def records(n: int) -> list[dict]:
    return [{"eventName": "Decrypt", "userIdentity": {"accessKeyId": f"AKIA{i % 3}"}, "note": "é", "i": i} for i in range(n)]


def keyed_log(n: int, *, ik: bytes = KEYS.audit, start_seq: int = 1, prev: str = AUDIT_GENESIS) -> tuple[bytes, list[str]]:
    lines, macs = [], []
    for offset, record in enumerate(records(n)):
        line, prev = audit_line(ik, record, start_seq + offset, prev)
        lines.append(line)
        macs.append(prev)
    return b"".join(lines), macs


def head(seq: int, mac: str) -> bytes:
    return json.dumps({"seq": seq, "mac": mac}).encode()


def test_audit_line_layout() -> None:
    line, mac = audit_line(KEYS.audit, {"b": 1, "a": "x"}, 1, AUDIT_GENESIS)
    assert line == b'{"a":"x","b":1,"prevMac":"' + AUDIT_GENESIS.encode() + b'","seq":1,"mac":"' + mac.encode() + b'"}\n'
    assert json.loads(line)["mac"] == mac
    for bad in ({"seq": 3}, {"mac": "x"}, {"hash": "x"}):
        with pytest.raises(ValueError):
            audit_line(KEYS.audit, bad, 1, AUDIT_GENESIS)


def test_intact_log() -> None:
    log, macs = keyed_log(5)
    verdict = verify_audit_chain(KEYS.audit, log, head(5, macs[-1]))
    assert verdict.outcome == AuditOutcome.INTACT and verdict.problems == ()
    assert (verdict.lines, verdict.last_seq, verdict.last_mac) == (5, 5, macs[-1])
    assert verify_audit_chain(KEYS.audit, b"").outcome == AuditOutcome.INTACT


def test_the_reviewers_attack_fails_deleting_a_principals_lines_and_recomputing_sha256() -> None:
    """Issue 17: delete a principal's records, recompute every hash and the head: version 1 said OK."""
    kept = [r for r in records(9) if r["userIdentity"]["accessKeyId"] != "AKIA1"]
    rewritten, last = sha256_audit_log(kept)
    verdict = verify_audit_chain(KEYS.audit, rewritten, json.dumps({"seq": len(kept), "hash": last}).encode())
    assert verdict.outcome == AuditOutcome.TAMPERED
    assert any("no keyed line" in p for p in verdict.problems)


def test_rewriting_with_another_key_fails_every_line() -> None:
    log, macs = keyed_log(4, ik=WRONG.audit)
    verdict = verify_audit_chain(KEYS.audit, log, head(4, macs[-1]))
    assert verdict.outcome == AuditOutcome.TAMPERED and len([p for p in verdict.problems if "MAC" in p]) == 4


def test_edited_line_is_tampered() -> None:
    log, macs = keyed_log(4)
    edited = log.replace(b'"i":2', b'"i":7')
    assert verify_audit_chain(KEYS.audit, edited, head(4, macs[-1])).outcome == AuditOutcome.TAMPERED


@pytest.mark.parametrize("drop", [0, 2, 4])
def test_deleted_line_is_incomplete(drop: int) -> None:
    log, macs = keyed_log(5)
    lines = log.splitlines(keepends=True)
    verdict = verify_audit_chain(KEYS.audit, b"".join(lines[:drop] + lines[drop + 1 :]), head(5, macs[-1]))
    assert verdict.outcome == AuditOutcome.INCOMPLETE


def test_reordered_lines_are_incomplete() -> None:
    log, macs = keyed_log(4)
    lines = log.splitlines(keepends=True)
    verdict = verify_audit_chain(KEYS.audit, lines[0] + lines[2] + lines[1] + lines[3], head(4, macs[-1]))
    assert verdict.outcome == AuditOutcome.INCOMPLETE


def test_cut_off_end_is_incomplete_against_the_head_and_a_torn_line_too() -> None:
    log, macs = keyed_log(5)
    lines = log.splitlines(keepends=True)
    assert verify_audit_chain(KEYS.audit, b"".join(lines[:3]), head(5, macs[-1])).outcome == AuditOutcome.INCOMPLETE
    torn = verify_audit_chain(KEYS.audit, log + lines[0][:20], head(5, macs[-1]))
    assert torn.outcome == AuditOutcome.INCOMPLETE and torn.last_seq == 5
    # the known limit (§16): cut the end and point the head at the new last line
    assert verify_audit_chain(KEYS.audit, b"".join(lines[:3]), head(3, macs[2])).outcome == AuditOutcome.INTACT


def test_head_disagreeing_with_the_log_is_tampered() -> None:
    log, macs = keyed_log(3)
    for bad in (head(3, macs[1]), b"{", b'{"seq": "3", "mac": "x"}'):
        assert verify_audit_chain(KEYS.audit, log, bad).outcome == AuditOutcome.TAMPERED


def test_version_1_prefix_then_keyed_lines() -> None:
    prefix, last = sha256_audit_log(records(3))
    tail, macs = keyed_log(2, start_seq=4, prev=last)
    verdict = verify_audit_chain(KEYS.audit, prefix + tail, head(5, macs[-1]))
    assert verdict.outcome == AuditOutcome.INTACT, verdict.problems
    # editing the unkeyed prefix and recomputing its hashes breaks the keyed line that fixes it
    forged, _ = sha256_audit_log([dict(r, note="forged") for r in records(3)])
    assert verify_audit_chain(KEYS.audit, forged + tail, head(5, macs[-1])).outcome == AuditOutcome.TAMPERED
    # editing a prefix line without recomputing breaks its own hash
    assert verify_audit_chain(KEYS.audit, prefix.replace(b'"i":1', b'"i":5') + tail).outcome == AuditOutcome.TAMPERED
    # an unkeyed line after keyed ones
    more, _ = sha256_audit_log(records(6))
    assert verify_audit_chain(KEYS.audit, prefix + tail + more.splitlines(keepends=True)[5]).outcome == AuditOutcome.TAMPERED


def test_garbage_lines_are_tampered() -> None:
    log, _ = keyed_log(2)
    for junk in (b"not json\n", b"[1,2]\n", b'{"seq":3}\n'):
        assert verify_audit_chain(KEYS.audit, log + junk).outcome == AuditOutcome.TAMPERED


def test_first_lines_cut_off_is_incomplete() -> None:
    log, macs = keyed_log(4)
    verdict = verify_audit_chain(KEYS.audit, b"".join(log.splitlines(keepends=True)[2:]), head(4, macs[-1]))
    assert verdict.outcome == AuditOutcome.INCOMPLETE
