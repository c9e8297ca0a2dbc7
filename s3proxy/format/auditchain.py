"""The keyed audit chain: how a KMS audit line is MACed under IK_audit and how a whole log is
verified (FORMAT.md §16, §19.3). Pure: bytes in, bytes or a verdict out; the file, the head file
and the key come from the caller.

    line, mac = audit_line(ik_audit, record, seq, prev_mac)      # write line (ends with "\\n"), keep mac
    verdict = verify_audit_chain(ik_audit, log_bytes, head_bytes) # .outcome is the exit code

A verifier never re-serialises JSON for a keyed line: the MAC covers the exact bytes written.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

AUDIT_GENESIS = "0" * 64
CHAIN_FIELDS = frozenset({"seq", "prevMac", "mac", "prevHash", "hash"})

_LABEL = b"s3proxy.audit@v2\x00"
_SUFFIX = re.compile(rb',"mac":"([0-9a-f]{64})"\}\Z')
_HEX64 = re.compile(r"[0-9a-f]{64}")


class AuditOutcome(enum.IntEnum):
    """The verdict of `s3proxy audit verify`; the value is its exit code (2 is the CLI's usage error)."""

    INTACT = 0
    TAMPERED = 1  # a line edited, forged or rewritten without the key; unkeyed where keyed is due
    INCOMPLETE = 3  # every line present is authentic, but lines are missing, reordered or cut off
    NOT_FOUND = 4  # no log at that path (the caller's to report)


@dataclass(frozen=True)
class AuditVerdict:
    outcome: AuditOutcome
    problems: tuple[str, ...]
    lines: int  # complete lines read
    last_seq: int
    last_mac: str  # the chaining value a writer resumes from (a keyed line's mac, else a v1 hash)
    keyed_lines: int = 0  # how many lines carry a MAC (0: an unkeyed, version-1-only log)


def _canonical(record: Mapping[str, Any]) -> bytes:
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def audit_body(record: Mapping[str, Any], seq: int, prev_mac: str) -> bytes:
    """The JSON text a keyed line's MAC covers: the record plus seq and prevMac, sorted, compact."""
    if CHAIN_FIELDS & set(record):
        raise ValueError("a record may not carry chain fields")
    if seq < 1 or not _HEX64.fullmatch(prev_mac):
        raise ValueError("seq starts at 1; prev_mac is 64 lower-case hex digits")
    return _canonical({**record, "seq": seq, "prevMac": prev_mac})


def audit_mac(ik_audit: bytes, body: bytes) -> str:
    """Lower-case hex HMAC-SHA-256(IK_audit, "s3proxy.audit@v2" || 0x00 || body)."""
    return hmac.new(ik_audit, _LABEL + body, hashlib.sha256).hexdigest()


def audit_line(ik_audit: bytes, record: Mapping[str, Any], seq: int, prev_mac: str) -> tuple[bytes, str]:
    """(the line to append, "\\n" included; its mac, the next line's prev_mac)."""
    body = audit_body(record, seq, prev_mac)
    mac = audit_mac(ik_audit, body)
    return body[:-1] + b',"mac":"' + mac.encode("ascii") + b'"}\n', mac


def _v1_hash(line: Mapping[str, Any]) -> str:
    return hashlib.sha256(_canonical({k: v for k, v in line.items() if k != "hash"})).hexdigest()


def _json_object(raw: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(raw)
    except (ValueError, UnicodeError):
        return None
    return value if isinstance(value, dict) else None


def _head(head: bytes | None, problems: list[str], tampered: list[bool]) -> tuple[int, str] | None:
    if head is None:
        return None
    value = _json_object(head)
    chain = None if value is None else value.get("mac", value.get("hash"))
    if value is None or not isinstance(value.get("seq"), int) or not isinstance(chain, str):
        problems.append("the head file is unreadable")
        tampered.append(True)
        return None
    return value["seq"], chain


def verify_audit_chain(ik_audit: bytes, data: bytes, head: bytes | None = None) -> AuditVerdict:
    """Verify a whole audit log (its bytes) against IK_audit and the head file's bytes (None: no
    head file). Version-1 lines may only precede the first keyed line, which fixes them."""
    problems: list[str] = []
    tampered: list[bool] = []  # one entry per tampering found
    missing: list[bool] = []

    def bad(number: int, what: str, *, edited: bool) -> None:
        problems.append(f"line {number}: {what}")
        (tampered if edited else missing).append(True)

    want = _head(head, problems, tampered)
    prev, seq, keyed, count, keyed_lines = AUDIT_GENESIS, 0, False, 0, 0
    complete = data[: data.rfind(b"\n") + 1]
    for number, raw in enumerate(complete.splitlines(), start=1):
        count = number
        match = _SUFFIX.search(raw)
        if match is not None:
            keyed_lines += 1
            mac = match[1].decode("ascii")
            body = raw[: match.start()] + b"}"
            line = _json_object(body)
            if not hmac.compare_digest(audit_mac(ik_audit, body), mac) or line is None:
                bad(number, "MAC does not match its content (edited, forged, or rewritten without the key)", edited=True)
                prev, seq = mac, seq + 1
                continue
            link, this = line.get("prevMac"), line.get("seq")
            if link != prev:
                # the first keyed line fixes the version-1 prefix: a mismatch there means it was rewritten
                bad(number, "prevMac does not match the line before (lines deleted or reordered)"
                    if keyed or seq == 0 else "prevMac does not match the last version-1 line (the prefix was rewritten)",
                    edited=not keyed and seq > 0)
            keyed = True
        else:
            line = _json_object(raw)
            mac = line.get("hash") if line is not None else None
            if line is None or not isinstance(mac, str):
                bad(number, "not an audit line", edited=True)
                seq += 1
                continue
            if keyed:
                bad(number, "an unkeyed line after keyed lines (rewritten)", edited=True)
            elif _v1_hash(line) != mac:
                bad(number, "version-1 hash does not match its content (edited)", edited=True)
            elif line.get("prevHash") != prev:
                bad(number, "prevHash does not match the line before (lines deleted or reordered)", edited=False)
            this = line.get("seq")
        if this != seq + 1:
            bad(number, f"seq {this} follows {seq} (lines deleted or reordered)", edited=False)
        seq = this if isinstance(this, int) else seq + 1
        prev = mac
        if want is not None and seq == want[0] and prev != want[1]:
            bad(number, "differs from the head file's record of this seq (the log was rewritten)", edited=True)
    if complete and not keyed:
        problems.append("no keyed line: the log was rewritten without the key, or never written by version 2")
        tampered.append(True)
    if want is not None and seq < want[0]:
        problems.append(f"the log ends at seq {seq} but the head file records seq {want[0]} (lines cut off the end)")
        missing.append(True)
    if len(complete) != len(data):
        problems.append("the last line is incomplete")
        missing.append(True)
    outcome = AuditOutcome.TAMPERED if tampered else AuditOutcome.INCOMPLETE if missing else AuditOutcome.INTACT
    return AuditVerdict(outcome, tuple(problems), count, seq, prev, keyed_lines)
