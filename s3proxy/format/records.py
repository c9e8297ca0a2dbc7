"""Sealed internal records: the proxy's own JSON records in the backend's hidden bucket, sealed
under IK_records and bound to their name and to the bucket they describe (FORMAT.md §15).

    blob = seal_record(ik_records, "bucket-encryption/b", "b", {"algorithm": "AES256"}, generation=4)
    rec = open_record(ik_records, "bucket-encryption/b", "b", blob)    # IntegrityError if edited/moved
    rec = check_generation(rec, anchored=4)                               # keystore anchor: no rollback

Write-once records (uploads/<id>, uploads/<id>/<n>, parts/<id>) have generation 0; a bucket record
starts at 1 and grows by one per change. `parts/<id>` is shared by copies in any bucket, so its
bucket is SHARED (the empty string). Version-1 records were bare JSON: only the upgrade reads them,
through `open_legacy_record`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from s3proxy.format.errors import IntegrityError
from s3proxy.format.keys import Rand, lp, open_sealed, seal, text

RECORD_VERSION = 2
SHARED = ""  # the bucket of records that no single bucket owns (parts/<mpu id>)
MAX_GENERATION = (1 << 64) - 1

_LABEL = b"s3proxy.format@v2 record"


@dataclass(frozen=True)
class Record:
    """An opened record: its generation and its JSON object."""

    generation: int
    value: dict[str, Any]


def _aad(name: str, bucket: str) -> bytes:
    return lp(text(name)) + lp(text(bucket))


def seal_record(
    ik_records: bytes, name: str, bucket: str, value: Mapping[str, Any], *, generation: int = 0, rand: Rand = os.urandom
) -> bytes:
    """0x02 || Seal(IK_records, label, salt, u64be(generation) || JSON, aad = lp(name) || lp(bucket))."""
    if not 0 <= generation <= MAX_GENERATION:
        raise ValueError("generation out of range")
    body = json.dumps(dict(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    return bytes([RECORD_VERSION]) + seal(ik_records, _LABEL, generation.to_bytes(8, "big") + body, _aad(name, bucket), rand)


def open_record(ik_records: bytes, name: str, bucket: str, data: bytes) -> Record:
    """The record stored under `name` describing `bucket`; IntegrityError(`record:<name>`) if it is
    not sealed (a bare version-1 record included), edited, or sealed for another name or bucket."""
    field = f"record:{name}"
    if data[:1] != bytes([RECORD_VERSION]):
        raise IntegrityError(field)
    plain = open_sealed(ik_records, _LABEL, bytes(data[1:]), _aad(name, bucket), field)
    try:
        value = json.loads(plain[8:].decode("utf-8")) if len(plain) > 8 else None
    except (ValueError, UnicodeError):
        raise IntegrityError(field) from None
    if not isinstance(value, dict):
        raise IntegrityError(field)
    return Record(int.from_bytes(plain[:8], "big"), value)


def check_generation(record: Record | None, anchored: int | None) -> Record | None:
    """A bucket record against the generation the keystore anchors (None or 0: never anchored).

    Absent while anchored, older than the anchor, or generation 0 (a write-once record's) under a
    bucket record's name: IntegrityError("generation"). A newer one than the anchor is accepted
    (a writer stopped between the record and the anchor; only an IK holder can seal it): the
    caller may advance the anchor to it."""
    floor = anchored or 0
    if record is None:
        if floor:
            raise IntegrityError("generation")
        return None
    if record.generation < max(floor, 1):
        raise IntegrityError("generation")
    return record


def is_legacy_record(data: bytes) -> bool:
    """Whether `data` is a version-1 record (bare JSON object)."""
    return data[:1] == b"{"


def open_legacy_record(data: bytes) -> dict[str, Any]:
    """A version-1 record, for the upgrade only (§19.2): nothing authenticates it."""
    try:
        value = json.loads(data.decode("utf-8"))
    except (ValueError, UnicodeError):
        raise IntegrityError("record") from None
    if not isinstance(value, dict):
        raise IntegrityError("record")
    return value
