"""C2SP chunked-encryption vectors (from the cryptography-vectors package) against this code's chunk layer (FORMAT.md §20).

C2SP's framed form is salt(24) || commitment(32) || chunks of 16 KiB; s3proxy stores the same
chunks in raw mode, so the derivation, nonces, chunk finality and the streaming reader are all
exercised here exactly as s3proxy uses them. ChaCha20-Poly1305 vectors are out of scope (v1 is AES-GCM).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import pathlib
import zlib
from typing import Any

import pytest
from format_helpers import collect, run, steps

from s3proxy.format.chunks import AEAD_KEY_SIZES, C2SP_CHUNK_SIZE, COMMITMENT_SIZE, SALT_SIZE, PartCipher, derive
from s3proxy.format.errors import IntegrityError
from s3proxy.streams import decrypt_chunks

cryptography_vectors = pytest.importorskip("cryptography_vectors", reason="pip install cryptography-vectors")


def _load() -> list[dict[str, Any]]:
    path = pathlib.Path(cryptography_vectors.__file__).parent / "chunked-encryption" / "vectors.json"
    return [v for v in json.loads(path.read_text())["vectors"] if v["aead"] in AEAD_KEY_SIZES]


VECTORS = _load()


def c2sp_decrypt(ciphertext: bytes, key: bytes, context: bytes, aead: str) -> bytes:
    """C2SP decryption: parse the header, check the commitment, then stream-open the chunks."""
    if len(ciphertext) < SALT_SIZE + COMMITMENT_SIZE:
        raise IntegrityError()
    salt, commitment = ciphertext[:SALT_SIZE], ciphertext[SALT_SIZE : SALT_SIZE + COMMITMENT_SIZE]
    keys = derive(key, salt, context, aead)
    if not hmac.compare_digest(keys.commitment, commitment):
        raise IntegrityError()
    body = ciphertext[SALT_SIZE + COMMITMENT_SIZE :]
    return run(collect(decrypt_chunks(steps(body, 5000) if body else _empty(), PartCipher(keys, C2SP_CHUNK_SIZE))))


async def _empty():
    yield b""


def _ciphertext(v: dict[str, Any]) -> bytes:
    raw = base64.b64decode(v["ciphertext"] or "")  # null: an empty message
    return zlib.decompress(raw) if v.get("compressed") else raw


def test_vectors_are_there() -> None:
    assert len(VECTORS) == 68  # 34 AES-128-GCM + 34 AES-256-GCM


@pytest.mark.parametrize("v", VECTORS, ids=lambda v: v["name"])
def test_c2sp_vector(v: dict[str, Any]) -> None:
    key, context = bytes.fromhex(v["key"]), v["context"].encode()  # context is a text string
    ciphertext = _ciphertext(v)
    if "aead_key" in v and len(key) == AEAD_KEY_SIZES[v["aead"]] and len(ciphertext) >= SALT_SIZE:
        keys = derive(key, ciphertext[:SALT_SIZE], context, v["aead"])
        assert keys.key.hex() == v["aead_key"] and keys.base_nonce.hex() == v["base_nonce"]
    if v["expect"] == "success":
        plaintext = c2sp_decrypt(ciphertext, key, context, v["aead"])
        assert len(plaintext) == v["payload_length"]
        assert hashlib.sha256(plaintext).hexdigest() == v["payload_sha256"]
    else:
        with pytest.raises((IntegrityError, ValueError)):  # ValueError: a key of the wrong size
            c2sp_decrypt(ciphertext, key, context, v["aead"])
