"""Root key handling, the canonical encryption-context encoding and the symmetric blob format."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from s3proxy.kms import wrapping
from s3proxy.kms.audit import MemoryAuditSink
from s3proxy.kms.errors import InvalidCiphertextException, RootKeyError
from s3proxy.kms.keystore import MemoryKeystore
from s3proxy.kms.service import KeyService

KID = "1234abcd-12ab-34cd-56ef-1234567890ab"
contexts = st.dictionaries(st.text(max_size=6), st.text(max_size=6), max_size=4)


def test_context_encoding_separates_the_moto_collision() -> None:
    # moto and LocalStack concatenate k||v without separators, so these two collide there
    assert wrapping.encode_context({"ab": "c"}) != wrapping.encode_context({"a": "bc"})


def test_empty_and_missing_context_are_the_same() -> None:
    assert wrapping.encode_context({}) == wrapping.encode_context(None)


@given(contexts, contexts)
def test_context_encoding_is_injective(a: dict[str, str], b: dict[str, str]) -> None:
    assert (wrapping.encode_context(a) == wrapping.encode_context(b)) == (a == b)


@given(contexts)
def test_context_encoding_ignores_order(a: dict[str, str]) -> None:
    assert wrapping.encode_context(dict(reversed(list(a.items())))) == wrapping.encode_context(a)


def test_blob_names_its_key_and_version_and_round_trips() -> None:
    material = os.urandom(32)
    blob = wrapping.seal_blob(KID, 3, material, b"secret", {"a": "b"})
    header = wrapping.parse_blob(blob)
    assert (header.key_id, header.material_version) == (KID, 3)
    assert len(blob) == len(b"secret") + wrapping.BLOB_OVERHEAD
    assert wrapping.open_blob(header, material, blob, {"a": "b"}) == b"secret"


@pytest.mark.parametrize("where", range(0, 80, 7))
def test_any_flipped_byte_is_invalid_ciphertext(where: int) -> None:
    material = os.urandom(32)
    blob = bytearray(wrapping.seal_blob(KID, 1, material, b"0123456789", None))
    blob[where % len(blob)] ^= 0x01
    with pytest.raises(InvalidCiphertextException):
        wrapping.open_blob(wrapping.parse_blob(bytes(blob)), material, bytes(blob), None)


def test_truncated_blob_is_invalid_ciphertext() -> None:
    with pytest.raises(InvalidCiphertextException):
        wrapping.parse_blob(b"K1" + bytes(20))


def test_root_key_created_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "root.key"
    key = wrapping.load_root_key(path)
    assert len(key) == 32 and (path.stat().st_mode & 0o777) == 0o600
    assert wrapping.load_root_key(path) == key


def test_root_key_with_wide_permissions_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "root.key"
    wrapping.load_root_key(path)
    path.chmod(0o644)
    with pytest.raises(RootKeyError, match="chmod 600"):
        wrapping.load_root_key(path)


def test_wrong_root_key_refuses_the_keystore() -> None:
    store = MemoryKeystore()
    KeyService.create(store, MemoryAuditSink(), root_key=b"\x01" * 32)
    with pytest.raises(RootKeyError, match="does not match"):
        KeyService.create(store, MemoryAuditSink(), root_key=b"\x02" * 32)


def test_keystore_holds_no_key_material_in_clear(tmp_path: Path) -> None:
    svc = KeyService.open(tmp_path)
    from s3proxy.kms.caller import Caller

    c = Caller("AK", "alice", "000000000000")
    kid = svc.create_key(c).key_id
    material = svc.records.key(kid).materials[0]  # type: ignore[union-attr]
    dk = svc.generate_data_key(c, kid)
    svc.close()
    for f in (tmp_path / "kms").iterdir():
        data = f.read_bytes()
        assert material not in data and dk.plaintext not in data, f.name
    assert material.hex() not in repr(svc.records.key(kid))  # type: ignore[union-attr]
    assert "plaintext" not in repr(dk)
