"""The committed vectors (tests/vectors/*.json) against this implementation, and their regeneration (FORMAT.md §2-16, §21).

`read` is a reference reader: for version 2 it follows FORMAT.md §14 step by step (metadata MAC,
shape, ETag source, record, envelope MAC, stored size, chunks, trailer, checksums)."""

from __future__ import annotations

import importlib.util
import json
import pathlib
from typing import Any

import pytest
from format_helpers import collect, encrypt, pieces, run, steps

from s3proxy.format.auditchain import verify_audit_chain
from s3proxy.format.envelope import (
    KEY_CHECKSUMS,
    KEY_MAC,
    KEY_MPU,
    KEY_SEALED_ETAG,
    KEY_SIZE,
    VERSION_2,
    Envelope,
    open_envelope,
    seal_envelope,
)
from s3proxy.format.errors import IntegrityError
from s3proxy.format.keys import integrity_keys
from s3proxy.format.metadata import (
    BOUND_HEADERS,
    ETAG_RECORD,
    ETAG_TRAILER,
    etag_source,
    metadata_etag,
    metadata_mac_input,
    open_metadata,
    seal_etag,
    seal_metadata,
)
from s3proxy.format.records import SHARED, check_generation, open_record, seal_record
from s3proxy.format.trailer import TrailerValues, open_checksums, open_trailer, seal_checksums, seal_trailer
from s3proxy.streams import decrypt_range

VECTORS = pathlib.Path(__file__).resolve().parents[1] / "vectors"


def load(kind: str) -> list[dict[str, Any]]:
    return json.loads((VECTORS / f"{kind}.json").read_text())["vectors"]


def _chunks(stored: bytes, key: bytes, context: bytes, envelope: Envelope, first: int | None, last: int | None,
            whole_tail: bool) -> bytes:
    """Plan the range (or the whole object), fetch the planned bytes, decrypt."""
    plan = envelope.plan_all() if first is None else envelope.plan(first, last)
    end = len(stored) if first is None and whole_tail else plan.ciphertext_end + 1
    fetched = stored[plan.ciphertext_start : end]
    return run(collect(decrypt_range(steps(fetched, 700) if fetched else pieces(b""), key, plan, context=context)))


def read(v: dict[str, Any]) -> bytes:
    """A vector with an integrity key is read as a version-2 reader would (`read_v2`); one without
    comes from version 1, which knew no integrity key."""
    return read_v2(v)[0] if "integrity_key" in v else read_v1(v)


def read_v1(v: dict[str, Any]) -> bytes:
    """A version-1 object (§19.1): envelope, range, chunks."""
    key, context = bytes.fromhex(v["data_key"]), bytes.fromhex(v["context"])
    envelope = open_envelope(v["metadata"], key, context)
    return _chunks(bytes.fromhex(v["stored"]), key, context, envelope, v["first"], v["last"], whole_tail=True)


def read_v2(v: dict[str, Any]) -> tuple[bytes, str, int, dict[str, str]]:
    """(plaintext, client ETag, size, checksums) of a version-2 object, FORMAT.md §14."""
    keys = integrity_keys(bytes.fromhex(v["integrity_key"]))
    key, context, arn = bytes.fromhex(v["data_key"]), bytes.fromhex(v["context"]), v["arn"]
    meta, stored = v["metadata"], bytes.fromhex(v["stored"])
    # 1-2: metadata, no data key: version, s3proxy-mm, shape, ETag source; the multipart record
    if open_metadata(keys.meta, arn, meta, v["headers"], accept_v1=True) != VERSION_2:
        return read_v1(v), "", 0, {}  # labelled version 1: the version-1 rules apply (§19.1)
    where = etag_source(meta)
    etag = metadata_etag(keys.meta, arn, meta)
    fields, parts = dict(meta), None
    if KEY_MPU in meta:
        name = f"parts/{meta[KEY_MPU]}"
        if name not in v["records"]:
            raise IntegrityError(name)  # a missing record fails closed
        record = open_record(keys.records, name, SHARED, bytes.fromhex(v["records"][name])).value
        fields.update({KEY_SIZE: record["size"], KEY_MAC: record["mac"]})
        parts = record["parts"]
        if where == ETAG_RECORD:
            etag = record["etag"]
    # 4: the envelope under the data key; the backend's size must be the stored size
    envelope = open_envelope(fields, key, context, parts=parts)
    if len(stored) != envelope.stored_size:
        raise IntegrityError("size")
    # 5: chunks, then the trailer
    plaintext = _chunks(stored, key, context, envelope, v["first"], v["last"], whole_tail=False)
    late = TrailerValues()
    if envelope.trailer_range is not None:
        start, end = envelope.trailer_range
        late = open_trailer(key, stored[start : end + 1], envelope.trailer, context)
    if where == ETAG_TRAILER:
        etag = late.md5
    # 6: checksums
    checksums = open_checksums(key, meta.get(KEY_CHECKSUMS)) or {
        k[len("x-amz-checksum-"):]: val for k, val in late.checksum_headers().items() if k != "x-amz-checksum-type"}
    assert etag is not None
    return plaintext, etag, envelope.plaintext_size, checksums


def of(kind: str, version: int | None = None, files: tuple[str, ...] = ("generate", "verify", "invalid")) -> dict[str, list]:
    return {f: [v for v in load(f) if v["kind"] == kind and (version is None or v["metadata"]["s3proxy-v"] == str(version))]
            for f in files}


@pytest.mark.parametrize("v", of("object", 1)["generate"], ids=lambda v: v["name"])
def test_generate_vector_reproduced(v: dict[str, Any]) -> None:
    key, context = bytes.fromhex(v["data_key"]), bytes.fromhex(v["context"])
    stored = b"".join(
        encrypt(bytes.fromhex(p["plaintext"]), key, part_number=p["part_number"], context=context, chunk_size=v["chunk_size"])
        for p in v["parts"]
    )
    assert stored.hex() == v["stored"]
    envelope = open_envelope(v["metadata"], key, context)
    assert envelope.part_numbers == tuple(p["part_number"] for p in v["parts"])
    assert run(collect(decrypt_range(pieces(stored), key, envelope.plan_all(), context=context))).hex() == "".join(
        p["plaintext"] for p in v["parts"]
    )


@pytest.mark.parametrize("v", of("object", 1)["verify"], ids=lambda v: v["name"])
def test_verify_vector_reads_its_range(v: dict[str, Any]) -> None:
    envelope = open_envelope(v["metadata"], bytes.fromhex(v["data_key"]), bytes.fromhex(v["context"]))
    plan = envelope.plan_all() if v["first"] is None else envelope.plan(v["first"], v["last"])
    assert (plan.ciphertext_start, plan.ciphertext_end) == (v["ciphertext_start"], v["ciphertext_end"])
    assert read(v).hex() == v["plaintext"]


@pytest.mark.parametrize("v", of("object")["invalid"], ids=lambda v: v["name"])
def test_invalid_vector_fails_with_the_one_error(v: dict[str, Any]) -> None:
    with pytest.raises(IntegrityError) as caught:
        read(v)
    assert str(caught.value) == IntegrityError.MESSAGE  # says nothing about which check failed


def test_invalid_vectors_name_every_case_from_the_issue() -> None:
    names = {v["name"] for v in load("invalid")}
    required = [
        "bit_flip_first_byte", "truncated_at_chunk_boundary", "truncated_inside_chunk", "swapped_chunks",
        "duplicated_chunk", "dropped_chunk", "extended_after_final", "trailing_garbage",
        "spliced_from_other_object", "spliced_from_other_part", "wrong_key", "wrong_context",
        # issue 17: every bound header, user metadata, each ETag place, each checksum place, size, trailer, records
        *(f"v2_header_{h.replace('-', '_')}_edited" for h in BOUND_HEADERS),
        "v2_user_metadata_edited", "v2_user_metadata_added", "v2_user_metadata_removed",
        "v2_etag_edited", "v2_sealed_etag_flipped", "v2_sealed_etag_from_other_object",
        "v2_checksums_edited", "v2_checksums_removed", "v2_size_edited",
        "v2_trailer_flipped", "v2_trailer_truncated", "v2_trailer_swapped", "v2_trailer_removed", "v2_trailer_flag_lied",
        "record_edited", "record_swapped_between_buckets", "record_wrong_name", "record_old_generation",
    ]
    assert not [n for n in required if n not in names]


# --- version 2 (FORMAT.md §9-16) ---
@pytest.mark.parametrize("v", of("object", 2)["generate"], ids=lambda v: v["name"])
def test_v2_generate_vector_reproduced(v: dict[str, Any]) -> None:
    """Every sealed value reproduces from the vector's inputs and salts, and the object reads back."""
    key, context, arn = bytes.fromhex(v["data_key"]), bytes.fromhex(v["context"]), v["arn"]
    keys = integrity_keys(bytes.fromhex(v["integrity_key"]))
    meta, salts = v["metadata"], {k: bytes.fromhex(s) for k, s in v["salts"].items()}
    given = lambda what: (lambda n: salts[what])  # noqa: E731
    chunks = b"".join(encrypt(bytes.fromhex(p["plaintext"]), key, part_number=p["part_number"], context=context,
                              chunk_size=v["chunk_size"]) for p in v["parts"])
    stored = bytes.fromhex(v["stored"])
    assert stored[: len(chunks)] == chunks
    late = TrailerValues(**v["late"]) if v["late"] else TrailerValues()
    assert stored[len(chunks):] == (seal_trailer(key, late, context, given("trailer")) if v["late"] else b"")
    sizes = [(p["part_number"], len(p["plaintext"]) // 2) for p in v["parts"]]
    if sizes[0][0] == 0:
        envelope = Envelope.single(sizes[0][1], v["chunk_size"], version=VERSION_2, trailer=late.flags)
        assert seal_envelope(envelope, key, context).items() <= meta.items()
    else:
        envelope = Envelope.multipart(sizes, v["chunk_size"], version=VERSION_2)
        sealed = seal_envelope(envelope, key, context)
        name = f"parts/{meta[KEY_MPU]}"
        value = {"size": sealed[KEY_SIZE], "parts": sealed["s3proxy-parts"], "mac": sealed[KEY_MAC], "etag": v["expect"]["etag"]}
        assert seal_record(keys.records, name, SHARED, value, rand=given("record")).hex() == v["records"][name]
    if KEY_SEALED_ETAG in meta:
        assert seal_etag(keys.meta, arn, v["expect"]["etag"], given("etag")) == meta[KEY_SEALED_ETAG]
    if v["early_checksums"]:
        assert seal_checksums(key, v["early_checksums"], given("checksums")) == meta[KEY_CHECKSUMS]
    assert v["client_metadata"].items() <= meta.items()
    assert seal_metadata(keys.meta, arn, meta, v["headers"]) == meta
    assert metadata_mac_input(arn, meta, v["headers"]).hex() == v["metadata_mac_input"]
    plaintext, etag, size, checksums = read_v2({**v, "first": None, "last": None})
    assert plaintext.hex() == "".join(p["plaintext"] for p in v["parts"])
    assert {"etag": etag, "size": size, "checksums": checksums} == v["expect"]


@pytest.mark.parametrize("v", of("object", 2)["verify"], ids=lambda v: v["name"])
def test_v2_verify_vector_reads_its_range(v: dict[str, Any]) -> None:
    assert read_v2(v) == (bytes.fromhex(v["plaintext"]), v["etag"], v["size"], v["checksums"])


def test_integrity_keys_vector() -> None:
    (v,) = of("keys", files=("generate",))["generate"]
    keys = integrity_keys(bytes.fromhex(v["integrity_key"]))
    assert (keys.meta.hex(), keys.records.hex(), keys.audit.hex()) == (v["meta"], v["records"], v["audit"])


@pytest.mark.parametrize("v", of("record", files=("generate",))["generate"], ids=lambda v: v["name"])
def test_record_vector_reproduced(v: dict[str, Any]) -> None:
    records = integrity_keys(bytes.fromhex(v["integrity_key"])).records
    salt = bytes.fromhex(v["salt"])
    sealed = seal_record(records, v["record"], v["bucket"], v["value"], generation=v["generation"], rand=lambda n: salt)
    assert sealed.hex() == v["sealed"]
    opened = open_record(records, v["record"], v["bucket"], sealed)
    assert (opened.generation, opened.value) == (v["generation"], v["value"])


@pytest.mark.parametrize("v", of("record", files=("invalid",))["invalid"], ids=lambda v: v["name"])
def test_invalid_record_vector_fails_with_the_one_error(v: dict[str, Any]) -> None:
    records = integrity_keys(bytes.fromhex(v["integrity_key"])).records
    with pytest.raises(IntegrityError) as caught:
        opened = None if v["sealed"] is None else open_record(records, v["record"], v["bucket"], bytes.fromhex(v["sealed"]))
        if v["anchored"] is not None:
            check_generation(opened, v["anchored"])
    assert str(caught.value) == IntegrityError.MESSAGE


@pytest.mark.parametrize("v", of("audit", files=("generate",))["generate"], ids=lambda v: v["name"])
def test_audit_vector_verdict(v: dict[str, Any]) -> None:
    audit = integrity_keys(bytes.fromhex(v["integrity_key"])).audit
    verdict = verify_audit_chain(audit, v["log"].encode("utf-8"), v["head"].encode("utf-8"))
    assert (verdict.outcome.name.lower(), int(verdict.outcome)) == (v["expect"], v["exit"])


def test_committed_vectors_equal_what_the_generator_builds() -> None:
    spec = importlib.util.spec_from_file_location("s3proxy_format_vector_generator", VECTORS / "generate.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for kind, vectors in module.build().items():
        assert (VECTORS / f"{kind}.json").read_text() == module.dump(vectors), (
            f"{kind}.json is stale: run tests/vectors/generate.py"
        )
