"""The version-2 half of the test vectors (FORMAT.md §9-16, §21), imported by generate.py.

A version-2 object vector carries everything a second implementation needs to rebuild and to read
it: data key K, integrity key IK, object ARN, bound headers, the client's metadata as stored, the
late values (trailer) and early checksums (s3proxy-cks), the random salts each seal took, and the
resulting stored bytes, metadata and records. The mode fields (s3proxy-key, s3proxy-kid) are
opaque here: the vector gives K itself.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from format_helpers import sha256_audit_log

from s3proxy.format.auditchain import AUDIT_GENESIS, AuditOutcome, audit_line
from s3proxy.format.envelope import (
    KEY_CHECKSUMS,
    KEY_ETAG,
    KEY_MAC,
    KEY_METADATA_MAC,
    KEY_MPU,
    KEY_SEALED_ETAG,
    KEY_SIZE,
    KEY_VERSION,
    KEY_WRAPPED,
    VERSION_2,
    Envelope,
    open_envelope,
    seal_envelope,
)
from s3proxy.format.keys import integrity_keys
from s3proxy.format.metadata import BOUND_HEADERS, metadata_mac_input, object_arn, seal_etag, seal_metadata
from s3proxy.format.records import SHARED, open_record, seal_record
from s3proxy.format.trailer import TRAILER_SIZE, TrailerValues, seal_checksums, seal_trailer
from s3proxy.streams import encrypt_stream

KEY = bytes(range(32))
OTHER_KEY = bytes(range(32, 64))
IK = bytes(range(64, 96))
IKS = integrity_keys(IK)
C = 1024
MODES = {
    "AES256": {"s3proxy-mode": "AES256", KEY_WRAPPED: base64.b64encode(b"sse-s3 wrapped data key").decode()},
    "aws:kms": {
        "s3proxy-mode": "aws:kms",
        KEY_WRAPPED: base64.b64encode(b"sse-kms wrapped data key").decode(),
        "s3proxy-kid": "arn:aws:kms:us-east-1:000000000000:key/11111111-2222-3333-4444-555555555555",
    },
}
ALL_HEADERS = {
    "cache-control": "max-age=60", "content-disposition": 'attachment; filename="r.txt"', "content-encoding": "gzip",
    "content-language": "de-CH", "content-type": "text/plain; charset=utf-8", "expires": "Thu, 01 Dec 2039 16:00:00 GMT",
    "x-amz-website-redirect-location": "/elsewhere",
}
DIGESTS: dict[str, Callable[[bytes], bytes]] = {
    "crc32": lambda d: zlib.crc32(d).to_bytes(4, "big"),
    "sha1": lambda d: hashlib.sha1(d).digest(),
    "sha256": lambda d: hashlib.sha256(d).digest(),
}


def plaintext(n: int, seed: int = 0) -> bytes:
    return bytes((i * 37 + 11 + seed) % 256 for i in range(n))


def salt_of(name: str, what: str, size: int = 16) -> bytes:
    return hashlib.sha256(f"s3proxy vectors {name} {what}".encode()).digest()[:size]


def checksum_of(algorithm: str, data: bytes) -> str:
    return base64.b64encode(DIGESTS[algorithm](data)).decode()


def encrypt(data: bytes, key: bytes, part: int, context: bytes, chunk_size: int = C) -> bytes:
    async def run() -> bytes:
        async def src():
            yield data

        return b"".join(
            [bytes(c) async for c in encrypt_stream(src(), key, part_number=part, context=context, chunk_size=chunk_size)]
        )

    return asyncio.run(run())


@dataclass(frozen=True)
class Spec:
    """One version-2 object to write."""

    name: str
    comment: str
    parts: tuple[tuple[int, int], ...]  # (part number, plaintext size); number 0 = single PUT
    mode: str = "aws:kms"
    headers: dict[str, str] = field(default_factory=lambda: {"content-type": "text/plain"})
    user: dict[str, str] = field(default_factory=dict)  # the client's metadata as stored (escaped keys)
    late_md5: bool = False  # SSE-S3 ETag in the trailer
    late_checksum: str | None = None  # algorithm whose value goes in the trailer
    early_checksum: str | None = None  # algorithm whose value goes in s3proxy-cks
    context: bytes = b""
    key: bytes = KEY
    bucket: str = "bucket"


def write(spec: Spec) -> dict[str, Any]:
    """The generate vector of `spec`: inputs, salts, and the exact stored bytes, metadata, records."""
    parts = [(p, plaintext(n, seed=p + len(spec.name))) for p, n in spec.parts]
    whole = b"".join(d for _, d in parts)
    arn = object_arn(spec.bucket, spec.name)
    single = parts[0][0] == 0
    chunks = b"".join(encrypt(d, spec.key, p, spec.context) for p, d in parts)
    md5 = hashlib.md5(whole).hexdigest()
    late = TrailerValues(
        md5 if spec.late_md5 else None,
        spec.late_checksum,
        checksum_of(spec.late_checksum, whole) if spec.late_checksum else None,
    )
    salts: dict[str, str] = {}

    def rand_for(what: str, size: int = 16) -> Callable[[int], bytes]:
        salts[what] = salt_of(spec.name, what, size).hex()
        return lambda n: bytes.fromhex(salts[what])

    fields = dict(MODES[spec.mode])
    records: dict[str, str] = {}
    if single:
        fields.update(
            seal_envelope(Envelope.single(len(whole), C, version=VERSION_2, trailer=late.flags), spec.key, spec.context)
        )
        if spec.mode == "AES256":
            etag = md5
            if not spec.late_md5:
                fields[KEY_SEALED_ETAG] = seal_etag(IKS.meta, arn, md5, rand_for("etag"))
        else:
            etag = fields[KEY_ETAG] = hashlib.sha256(spec.name.encode()).hexdigest()[:32]
    else:
        envelope = Envelope.multipart([(p, len(d)) for p, d in parts], C, version=VERSION_2)
        sealed = seal_envelope(envelope, spec.key, spec.context)
        mpu = hashlib.md5(spec.name.encode()).hexdigest()
        fields.update({KEY_VERSION: "2", "s3proxy-cs": str(C), KEY_MPU: mpu})
        etag = hashlib.md5(b"".join(hashlib.md5(d).digest() for _, d in parts)).hexdigest() + f"-{len(parts)}"
        value = {"size": sealed[KEY_SIZE], "parts": sealed["s3proxy-parts"], "mac": sealed[KEY_MAC], "etag": etag}
        records[f"parts/{mpu}"] = seal_record(IKS.records, f"parts/{mpu}", SHARED, value, rand=rand_for("record")).hex()
    checksums = {}
    if spec.early_checksum:
        checksums = {spec.early_checksum: checksum_of(spec.early_checksum, whole)}
        fields[KEY_CHECKSUMS] = seal_checksums(spec.key, checksums, rand_for("checksums", 12))
    if spec.late_checksum:
        checksums = {spec.late_checksum: late.checksum}
    trailer = seal_trailer(spec.key, late, spec.context, rand_for("trailer")) if late.flags else b""
    metadata = seal_metadata(IKS.meta, arn, {**spec.user, **fields}, spec.headers)
    return {
        "name": f"v2_{spec.name}",
        "comment": spec.comment,
        "kind": "object",
        "data_key": spec.key.hex(),
        "context": spec.context.hex(),
        "chunk_size": C,
        "parts": [{"part_number": p, "plaintext": d.hex()} for p, d in parts],
        "integrity_key": IK.hex(),
        "arn": arn,
        "headers": spec.headers,
        "client_metadata": spec.user,
        "late": (
            {"md5": late.md5, "checksum_algorithm": late.checksum_algorithm, "checksum": late.checksum} if late.flags else None
        ),
        "early_checksums": checksums if spec.early_checksum else None,
        "salts": salts,
        "stored": (chunks + trailer).hex(),
        "metadata": metadata,
        "records": records,
        "metadata_mac_input": metadata_mac_input(arn, metadata, spec.headers).hex(),
        "expect": {"etag": etag, "size": len(whole), "checksums": checksums},
    }


SPECS = [
    Spec("sse_kms", "SSE-KMS, every bound header, client metadata (one escaped key), clear random ETag", ((0, C + 5),),
         headers=ALL_HEADERS, user={"colour": "blue", "s3proxy-user-v": "a client key that looks internal"}),
    Spec("sse_s3_sealed_etag", "SSE-S3, MD5 known before the write: sealed ETag, checksum in s3proxy-cks", ((0, 100),),
         mode="AES256", early_checksum="sha256"),
    Spec("sse_s3_trailer_md5", "SSE-S3 without Content-MD5, large body: the ETag in the trailer", ((0, 2 * C + 1),),
         mode="AES256", late_md5=True),
    Spec("sse_kms_trailer_checksum", "an aws-chunked trailing CRC32: the checksum in the trailer", ((0, C),),
         late_checksum="crc32", context=b"bucket\x00key"),
    Spec("sse_s3_trailer_both", "SSE-S3, late MD5 and late SHA-1 in one trailer", ((0, 3 * C + 7),),
         mode="AES256", late_md5=True, late_checksum="sha1"),
    Spec("empty_with_trailer", "an empty body: one empty chunk, then the trailer", ((0, 0),), mode="AES256", late_md5=True),
    Spec("multipart", "SSE-KMS multipart: size, parts, MAC and ETag in the sealed record parts/<id>",
         ((1, 2 * C), (2, 2 * C), (3, 100)), headers={}),
]


def base(name: str) -> dict[str, Any]:
    return write(next(s for s in SPECS if s.name == name))


# --- generate -------------------------------------------------------------------------------------

RECORDS = [
    (
        "bucket_encryption",
        "bucket-encryption/photos",
        "photos",
        {"algorithm": "aws:kms", "kms_key_id": "arn:aws:kms:us-east-1:000000000000:key/k", "bucket_key": True, "blocked": []},
        3,
    ),
    ("upload", "uploads/u-1", "photos", {"bucket": "photos", "key": "a.jpg", "fields": {"s3proxy-mode": "AES256"}}, 0),
    ("tombstone", "bucket-encryption/old", "old", {}, 5),
]


def record_vector(name: str, record: str, bucket: str, value: dict[str, Any], generation: int) -> dict[str, Any]:
    salt = salt_of(name, "record")
    sealed = seal_record(IKS.records, record, bucket, value, generation=generation, rand=lambda n: salt)
    return {"name": f"record_{name}", "kind": "record", "integrity_key": IK.hex(), "record": record, "bucket": bucket,
            "generation": generation, "value": value, "salt": salt.hex(), "sealed": sealed.hex()}


def audit_records(n: int) -> list[dict[str, Any]]:
    return [{"eventName": ("Decrypt", "GenerateDataKey")[i % 2], "userIdentity": {"accessKeyId": f"AKIA{i % 3}"},
             "requestParameters": {"keyId": "k", "encryptionContext": {"aws:s3:arn": f"arn:aws:s3:::b/é{i}"}}} for i in range(n)]


def audit_log(n: int) -> tuple[bytes, str]:
    lines, prev = [], AUDIT_GENESIS
    for seq, rec in enumerate(audit_records(n), start=1):
        line, prev = audit_line(IKS.audit, rec, seq, prev)
        lines.append(line)
    return b"".join(lines), prev


def audit_vectors() -> list[dict[str, Any]]:
    log, last = audit_log(4)
    lines = log.splitlines(keepends=True)
    head = json.dumps({"seq": 4, "mac": last}).encode()
    kept = [r for r in audit_records(6) if r["userIdentity"]["accessKeyId"] != "AKIA1"]
    rewritten, rewritten_last = sha256_audit_log(kept)
    cases = [  # (name, why, log, head, the verdict FORMAT.md §16 prescribes)
        ("intact", "four keyed lines and their head", log, head, AuditOutcome.INTACT),
        ("line_edited", "one field of line 2 changed", log.replace("é1".encode(), "é9".encode()), head, AuditOutcome.TAMPERED),
        ("line_deleted", "line 3 removed", b"".join(lines[:2] + lines[3:]), head, AuditOutcome.INCOMPLETE),
        ("lines_reordered", "lines 2 and 3 exchanged", lines[0] + lines[2] + lines[1] + lines[3], head, AuditOutcome.INCOMPLETE),
        ("end_cut_off", "the last line removed, head unchanged", b"".join(lines[:3]), head, AuditOutcome.INCOMPLETE),
        ("rewritten_sha256", "issue 17: a principal's lines deleted, SHA-256 chain and head recomputed",
         rewritten, json.dumps({"seq": len(kept), "hash": rewritten_last}).encode(), AuditOutcome.TAMPERED),
    ]
    return [
        {"name": f"audit_{name}", "comment": why, "kind": "audit", "integrity_key": IK.hex(), "log": data.decode("utf-8"),
         "head": head_bytes.decode("utf-8"), "expect": outcome.name.lower(), "exit": int(outcome)}
        for name, why, data, head_bytes, outcome in cases
    ]


def build_generate() -> list[dict[str, Any]]:
    keys = [{"name": "integrity_keys", "kind": "keys", "integrity_key": IK.hex(), "meta": IKS.meta.hex(),
             "records": IKS.records.hex(), "audit": IKS.audit.hex()}]
    return keys + [write(s) for s in SPECS] + [record_vector(*r) for r in RECORDS] + audit_vectors()


# --- verify ---------------------------------------------------------------------------------------


def envelope_of(v: dict[str, Any]) -> Envelope:
    """The envelope of a version-2 object vector, its record merged in for multipart (§7)."""
    fields, parts = dict(v["metadata"]), None
    if KEY_MPU in fields:
        name = f"parts/{fields[KEY_MPU]}"
        record = open_record(IKS.records, name, SHARED, bytes.fromhex(v["records"][name])).value
        fields.update({KEY_SIZE: record["size"], KEY_MAC: record["mac"]})
        parts = record["parts"]
    return open_envelope(fields, bytes.fromhex(v["data_key"]), bytes.fromhex(v["context"]), parts=parts)


def read_vector(v: dict[str, Any], first: int | None, last: int | None, name: str) -> dict[str, Any]:
    envelope = envelope_of(v)
    plan = envelope.plan_all() if first is None else envelope.plan(first, last)
    whole = bytes.fromhex("".join(p["plaintext"] for p in v["parts"]))
    keep = ("kind", "data_key", "context", "integrity_key", "arn", "headers", "metadata", "records", "stored")
    return {"name": name, **{k: v[k] for k in keep}, "first": first, "last": last, "ciphertext_start": plan.ciphertext_start,
            "ciphertext_end": plan.ciphertext_end, "plaintext": whole[plan.first : plan.last + 1].hex(), **v["expect"]}


def build_verify() -> list[dict[str, Any]]:
    out = []
    for name, ranges in [
        ("sse_s3_trailer_both", [(0, 0), (C - 1, C), (3 * C, 3 * C + 6), (None, None)]),
        ("sse_kms_trailer_checksum", [(C - 1, C - 1), (None, None)]),
        ("empty_with_trailer", [(None, None)]),
        ("multipart", [(2 * C - 1, 2 * C), (4 * C, 4 * C + 99), (None, None)]),
    ]:
        v = base(name)
        for first, last in ranges:
            out.append(read_vector(v, first, last, f"{v['name']}_{'all' if first is None else f'{first}_{last}'}"))
    return out


# --- invalid --------------------------------------------------------------------------------------


def _edit(mapping: dict[str, str], **changes: str | None) -> dict[str, str]:
    """A copy of `mapping` with keys set (None: removed). Keys use _ for -."""
    out = dict(mapping)
    for key, value in changes.items():
        key = key.replace("_", "-")
        if value is None:
            out.pop(key, None)
        else:
            out[key] = value
    return out


def _flip(text: str, at: int = 0) -> str:
    return text[:at] + ("A" if text[at] != "A" else "B") + text[at + 1 :]


def _flip_hex(hexed: str, at: int) -> str:
    raw = bytearray(bytes.fromhex(hexed))
    raw[at] ^= 1
    return raw.hex()


def _case(
    v: dict[str, Any], name: str, why: str, *, first: int | None = None, last: int | None = None, **changes: Any
) -> dict[str, Any]:
    keep = ("data_key", "context", "integrity_key", "arn", "headers", "metadata", "records", "stored")
    case = {"name": f"v2_{name}", "comment": why, "kind": "object", **{k: v[k] for k in keep}}
    case.update(changes)
    case.update({"first": first, "last": last, "expect": "IntegrityError"})
    return case


def object_cases() -> list[dict[str, Any]]:
    kms, s3, both, mp = base("sse_kms"), base("sse_s3_sealed_etag"), base("sse_s3_trailer_both"), base("multipart")
    # other objects (every object has its own data key)
    other_s3 = write(Spec("sse_s3_other", "", ((0, 100),), mode="AES256", early_checksum="sha256", key=OTHER_KEY))
    other_both = write(Spec("sse_s3_trailer_other", "", ((0, 3 * C + 7),), mode="AES256", late_md5=True, late_checksum="sha1",
                            key=OTHER_KEY))
    other_mp = write(Spec("multipart_other", "", ((1, 2 * C), (2, 100)), headers={}, key=OTHER_KEY))
    km, sm, bm, mm = kms["metadata"], s3["metadata"], both["metadata"], mp["metadata"]
    cut = len(both["stored"]) // 2 - TRAILER_SIZE  # where the trailer starts (hex digits / 2)
    cases = []
    for header in BOUND_HEADERS:
        cases.append(_case(kms, f"header_{header.replace('-', '_')}_edited", f"{header} changed in the backend",
                           headers=_edit(kms["headers"], **{header.replace("-", "_"): "text/html"})))
    cases += [
        _case(kms, "header_content_type_removed", "Content-Type deleted", headers=_edit(kms["headers"], content_type=None)),
        _case(
            kms,
            "header_expires_emptied",
            "Expires present but empty (absent != empty)",
            headers=_edit(kms["headers"], expires=""),
        ),
        _case(
            s3,
            "header_content_disposition_added",
            "a header the object never had",
            headers=_edit(s3["headers"], content_disposition="inline"),
        ),
        _case(kms, "user_metadata_edited", "x-amz-meta-colour changed", metadata=_edit(km, colour="red")),
        _case(kms, "user_metadata_added", "x-amz-meta-script added", metadata=_edit(km, script="<x>")),
        _case(kms, "user_metadata_removed", "x-amz-meta-colour deleted", metadata=_edit(km, colour=None)),
        _case(kms, "user_metadata_key_renamed", "colour renamed colours", metadata={**_edit(km, colour=None), "colours": "blue"}),
        _case(
            kms,
            "escaped_user_key_edited",
            "the client's own s3proxy-v (stored escaped) changed",
            metadata={**km, "s3proxy-user-v": "edited"},
        ),
        _case(kms, "etag_edited", "the clear client ETag changed", metadata=_edit(km, s3proxy_etag="f" * 32)),
        _case(kms, "etag_removed", "the clear client ETag deleted", metadata=_edit(km, s3proxy_etag=None)),
        _case(
            s3,
            "etag_added_in_clear",
            "an SSE-S3 object given a clear ETag beside its sealed one",
            metadata=_edit(sm, s3proxy_etag="0" * 32),
        ),
        _case(
            s3,
            "sealed_etag_flipped",
            "one character of s3proxy-setag changed",
            metadata=_edit(sm, s3proxy_setag=_flip(sm[KEY_SEALED_ETAG], 20)),
        ),
        _case(
            s3,
            "sealed_etag_from_other_object",
            "another object's s3proxy-setag",
            metadata=_edit(sm, s3proxy_setag=other_s3["metadata"][KEY_SEALED_ETAG]),
        ),
        _case(s3, "sealed_etag_removed", "s3proxy-setag deleted", metadata=_edit(sm, s3proxy_setag=None)),
        _case(s3, "checksums_edited", "s3proxy-cks changed", metadata=_edit(sm, s3proxy_cks=_flip(sm[KEY_CHECKSUMS], 30))),
        _case(
            s3, "checksums_removed", "s3proxy-cks deleted (the checksum silently dropped)", metadata=_edit(sm, s3proxy_cks=None)
        ),
        _case(
            s3,
            "checksums_from_other_object",
            "another object's s3proxy-cks",
            metadata=_edit(sm, s3proxy_cks=other_s3["metadata"][KEY_CHECKSUMS]),
        ),
        _case(
            kms,
            "checksums_added",
            "an s3proxy-cks the object never had",
            metadata=_edit(km, s3proxy_cks=s3["metadata"][KEY_CHECKSUMS]),
        ),
        _case(kms, "size_edited", "s3proxy-size changed", metadata=_edit(km, s3proxy_size=str(C + 4)), first=0, last=0),
        _case(both, "trailer_flipped", "a byte inside the trailer", stored=_flip_hex(both["stored"], cut + 30)),
        _case(
            both, "trailer_tag_flipped", "the trailer's last byte", stored=_flip_hex(both["stored"], len(both["stored"]) // 2 - 1)
        ),
        _case(both, "trailer_truncated", "the trailer's last byte cut", stored=both["stored"][:-2]),
        _case(
            both,
            "trailer_swapped",
            "another object's trailer (same flags, other data key)",
            stored=both["stored"][: 2 * cut] + other_both["stored"][2 * cut :],
        ),
        _case(both, "trailer_removed", "the trailer cut off, metadata unchanged", stored=both["stored"][: 2 * cut]),
        _case(both, "trailer_extended", "bytes after the trailer", stored=both["stored"] + "00" * 16),
        _case(both, "trailer_flag_lied", "s3proxy-tr says MD5 only", metadata=_edit(bm, s3proxy_tr="1")),
        _case(both, "trailer_flag_removed", "s3proxy-tr deleted", metadata=_edit(bm, s3proxy_tr=None)),
        _case(kms, "trailer_flag_added", "s3proxy-tr claimed on an object without a trailer", metadata=_edit(km, s3proxy_tr="2")),
        _case(both, "chunk_flipped", "a bit of chunk 0 (version 2 still opens every chunk)", stored=_flip_hex(both["stored"], 5)),
        _case(
            kms,
            "metadata_mac_flipped",
            "one character of s3proxy-mm",
            metadata=_edit(km, s3proxy_mm=_flip(km[KEY_METADATA_MAC], 3)),
        ),
        _case(kms, "metadata_mac_removed", "s3proxy-mm deleted", metadata=_edit(km, s3proxy_mm=None)),
        _case(
            both,
            "version_downgraded",
            "labelled version 1, version-2 fields deleted",
            metadata=_edit(bm, s3proxy_v="1", s3proxy_mm=None, s3proxy_tr=None),
        ),
        _case(kms, "version_unknown", "s3proxy-v=3", metadata=_edit(km, s3proxy_v="3")),
        _case(kms, "metadata_moved_to_other_name", "the object read under another key", arn=object_arn("bucket", "sse_kms.html")),
        _case(kms, "metadata_moved_to_other_bucket", "the object read in another bucket", arn=object_arn("other", "sse_kms")),
        _case(s3, "wrapped_key_swapped", "another object's s3proxy-key", metadata=_edit(sm, s3proxy_key=km[KEY_WRAPPED])),
        _case(
            kms,
            "key_id_relabelled",
            "s3proxy-kid names another KMS key",
            metadata=_edit(km, s3proxy_kid=km["s3proxy-kid"].replace("5555", "6666")),
        ),
        _case(kms, "mode_relabelled", "aws:kms relabelled AES256", metadata=_edit(km, s3proxy_mode="AES256")),
        _case(kms, "unknown_internal_key", "an s3proxy- field this reader does not know", metadata={**km, "s3proxy-new": "1"}),
        _case(kms, "wrong_integrity_key", "another proxy's integrity key", integrity_key=bytes(32).hex()),
        _case(
            mp,
            "mpu_record_flipped",
            "a byte of the record parts/<id>",
            records={k: _flip_hex(r, 40) for k, r in mp["records"].items()},
        ),
        _case(
            mp,
            "mpu_record_swapped",
            "another multipart object's record under this one's name",
            records={k: next(iter(other_mp["records"].values())) for k in mp["records"]},
        ),
        _case(mp, "mpu_record_missing", "the record parts/<id> deleted", records={}),
        _case(
            mp,
            "mpu_id_edited",
            "s3proxy-mpu names another record",
            metadata=_edit(mm, s3proxy_mpu=other_mp["metadata"][KEY_MPU]),
            records={**mp["records"], **other_mp["records"]},
        ),
    ]
    return cases


def record_cases() -> list[dict[str, Any]]:
    name, bucket, value = "bucket-encryption/photos", "photos", {"algorithm": "aws:kms", "kms_key_id": "k"}
    sealed = seal_record(IKS.records, name, bucket, value, generation=4, rand=lambda n: salt_of("record", "salt")).hex()
    older = seal_record(
        IKS.records, name, bucket, {"algorithm": "AES256"}, generation=3, rand=lambda n: salt_of("older", "salt")
    ).hex()
    for_other = seal_record(
        IKS.records, "bucket-encryption/other", "other", value, generation=4, rand=lambda n: salt_of("o", "s")
    ).hex()
    cases = [  # (name, why, record name, bucket, stored hex or None, anchored generation or None, integrity key)
        ("record_edited", "a byte of the sealed record changed", name, bucket, _flip_hex(sealed, 30), 4, IK),
        ("record_swapped_between_buckets", "bucket other's record stored under photos' name", name, bucket, for_other, 4, IK),
        ("record_wrong_name", "photos' record read under another name", "uploads/photos", bucket, sealed, None, IK),
        ("record_wrong_bucket", "the right name, another bucket in the aad", name, "other", sealed, None, IK),
        ("record_old_generation", "generation 3 replayed while the keystore anchors 4", name, bucket, older, 4, IK),
        ("record_deleted", "absent while the keystore anchors generation 4", name, bucket, None, 4, IK),
        ("record_unsealed", "a bare version-1 JSON record (aws:kms rewritten to AES256)", name, bucket,
         json.dumps({"algorithm": "AES256"}).encode().hex(), None, IK),
        ("record_truncated", "the tag cut", name, bucket, sealed[:-2], 4, IK),
        ("record_wrong_integrity_key", "sealed under another integrity key", name, bucket, sealed, 4, bytes(32)),
    ]
    return [{"name": n, "comment": why, "kind": "record", "integrity_key": ik.hex(), "record": rec, "bucket": b, "sealed": s,
             "anchored": anchored, "expect": "IntegrityError"} for n, why, rec, b, s, anchored, ik in cases]


def build_invalid() -> list[dict[str, Any]]:
    return object_cases() + record_cases()
