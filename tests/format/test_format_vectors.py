"""The committed vectors (tests/vectors/*.json) against this implementation, and their regeneration (FORMAT.md §2-8)."""

from __future__ import annotations

import importlib.util
import json
import pathlib
from typing import Any

import pytest

from format_helpers import collect, encrypt, pieces, run, steps
from s3proxy.format.envelope import open_envelope
from s3proxy.format.errors import IntegrityError
from s3proxy.streams import decrypt_range

VECTORS = pathlib.Path(__file__).resolve().parents[1] / "vectors"


def load(kind: str) -> list[dict[str, Any]]:
    return json.loads((VECTORS / f"{kind}.json").read_text())["vectors"]


def read(v: dict[str, Any]) -> bytes:
    """Open the envelope, plan the range (or the whole object), fetch the planned bytes, decrypt."""
    key, context = bytes.fromhex(v["data_key"]), bytes.fromhex(v["context"])
    envelope = open_envelope(v["metadata"], key, context)
    plan = envelope.plan_all() if v["first"] is None else envelope.plan(v["first"], v["last"])
    stored = bytes.fromhex(v["stored"])
    fetched = stored[plan.ciphertext_start :] if v["first"] is None else stored[plan.ciphertext_start : plan.ciphertext_end + 1]
    return run(collect(decrypt_range(steps(fetched, 700) if fetched else pieces(b""), key, plan, context=context)))


@pytest.mark.parametrize("v", load("generate"), ids=lambda v: v["name"])
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


@pytest.mark.parametrize("v", load("verify"), ids=lambda v: v["name"])
def test_verify_vector_reads_its_range(v: dict[str, Any]) -> None:
    envelope = open_envelope(v["metadata"], bytes.fromhex(v["data_key"]), bytes.fromhex(v["context"]))
    plan = envelope.plan_all() if v["first"] is None else envelope.plan(v["first"], v["last"])
    assert (plan.ciphertext_start, plan.ciphertext_end) == (v["ciphertext_start"], v["ciphertext_end"])
    assert read(v).hex() == v["plaintext"]


@pytest.mark.parametrize("v", load("invalid"), ids=lambda v: v["name"])
def test_invalid_vector_fails_with_the_one_error(v: dict[str, Any]) -> None:
    with pytest.raises(IntegrityError) as caught:
        read(v)
    assert str(caught.value) == IntegrityError.MESSAGE  # says nothing about which check failed


def test_invalid_vectors_name_every_case_from_the_issue() -> None:
    names = {v["name"] for v in load("invalid")}
    for required in (
        "bit_flip_first_byte", "truncated_at_chunk_boundary", "truncated_inside_chunk", "swapped_chunks",
        "duplicated_chunk", "dropped_chunk", "extended_after_final", "trailing_garbage",
        "spliced_from_other_object", "spliced_from_other_part", "wrong_key", "wrong_context",
    ):
        assert required in names


def test_committed_vectors_equal_what_the_generator_builds() -> None:
    spec = importlib.util.spec_from_file_location("s3proxy_format_vector_generator", VECTORS / "generate.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for kind, vectors in module.build().items():
        assert (VECTORS / f"{kind}.json").read_text() == module.dump(vectors), f"{kind}.json is stale: run tests/vectors/generate.py"
