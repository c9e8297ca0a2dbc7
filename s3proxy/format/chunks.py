"""Seal and open one chunk: C2SP chunked-encryption key derivation and per-chunk AES-GCM (FORMAT.md §2-3).

`derive` is the C2SP HKDF-Expand step, exact (so the C2SP vectors run against it);
`PartCipher` holds one AESGCM for one part and seals/opens chunk i with nonce base XOR i.
Finality is by length (the final chunk is the only short one); `open` checks it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand

from s3proxy.format.errors import IntegrityError

TAG_SIZE = 16
NONCE_SIZE = 12
SALT_SIZE = 24
COMMITMENT_SIZE = 32
DATA_KEY_SIZE = 32
AEAD_AES_256_GCM = "AEAD_AES_256_GCM"
AEAD_KEY_SIZES = {"AEAD_AES_128_GCM": 16, AEAD_AES_256_GCM: 32}
C2SP_CHUNK_SIZE = 16384
DEFAULT_CHUNK_SIZE = 64 * 1024
MIN_CHUNK_SIZE = 1024
MAX_CHUNK_SIZE = 16 * 1024 * 1024
MAX_CHUNKS = 1 << 38  # C2SP: the counter must stay below 2^38

_C2SP_LABEL = b"c2sp.org/chunked-encryption@v1+"
_FORMAT_LABEL = b"s3proxy.format@v1\x00"


@dataclass(frozen=True)
class PartKeys:
    """What C2SP's HKDF-Expand yields for one message (one part). Never printed."""

    key: bytes = field(repr=False)
    base_nonce: bytes = field(repr=False)
    commitment: bytes = field(repr=False)


def derive(input_key: bytes, salt: bytes, context: bytes, aead: str = AEAD_AES_256_GCM) -> PartKeys:
    """C2SP: key || base nonce || commitment = HKDF-Expand(input key, label || aead || 0 || salt || context)."""
    key_size = AEAD_KEY_SIZES[aead]
    if len(input_key) != key_size or len(salt) != SALT_SIZE:
        raise ValueError("bad input key or salt length")
    info = _C2SP_LABEL + aead.encode("ascii") + b"\x00" + salt + context
    out = HKDFExpand(hashes.SHA256(), key_size + NONCE_SIZE + COMMITMENT_SIZE, info).derive(input_key)
    return PartKeys(out[:key_size], out[key_size : key_size + NONCE_SIZE], out[key_size + NONCE_SIZE :])


def check_chunk_size(chunk_size: int) -> int:
    """The chunk size if it is a power of two in [16 KiB, 16 MiB] (FORMAT.md §4), else ValueError."""
    if not (MIN_CHUNK_SIZE <= chunk_size <= MAX_CHUNK_SIZE) or chunk_size & (chunk_size - 1):
        raise ValueError(f"chunk size must be a power of two in [{MIN_CHUNK_SIZE}, {MAX_CHUNK_SIZE}]")
    return chunk_size


def part_context(chunk_size: int, context: bytes) -> bytes:
    """The C2SP context of an s3proxy part: label || u32be(chunk size) || caller context (§2)."""
    return _FORMAT_LABEL + chunk_size.to_bytes(4, "big") + context


def part_salt(part_number: int) -> bytes:
    """The C2SP salt of part p: p as a 24-byte big-endian integer (0 = single PUT, 1..10000 = parts)."""
    if not 0 <= part_number < 1 << 32:
        raise ValueError("part number out of range")
    return part_number.to_bytes(SALT_SIZE, "big")


class PartCipher:
    """Seals and opens the chunks of one part (one C2SP message). One AESGCM per key, not per chunk."""

    __slots__ = ("chunk_size", "_aead", "_base")

    def __init__(self, keys: PartKeys, chunk_size: int) -> None:
        self.chunk_size = chunk_size
        self._aead = AESGCM(keys.key)
        self._base = int.from_bytes(keys.base_nonce, "big")

    @classmethod
    def for_part(
        cls, data_key: bytes, *, part_number: int = 0, chunk_size: int = DEFAULT_CHUNK_SIZE, context: bytes = b""
    ) -> PartCipher:
        """The cipher for part `part_number` of an object whose data key is `data_key` (FORMAT.md §2)."""
        if len(data_key) != DATA_KEY_SIZE:
            raise ValueError("data key must be 32 bytes")
        check_chunk_size(chunk_size)
        return cls(derive(data_key, part_salt(part_number), part_context(chunk_size, context)), chunk_size)

    def __repr__(self) -> str:
        return f"PartCipher(chunk_size={self.chunk_size})"

    def _nonce(self, index: int) -> bytes:
        if not 0 <= index < MAX_CHUNKS:
            raise IntegrityError("chunk")
        return (self._base ^ index).to_bytes(NONCE_SIZE, "big")

    def _sealable(self, chunk: bytes | bytearray | memoryview) -> int:
        """The sealed length of `chunk`; ValueError if it is longer than a chunk."""
        if len(chunk) > self.chunk_size:
            raise ValueError("chunk longer than the chunk size")
        return len(chunk) + TAG_SIZE

    def seal(self, index: int, chunk: bytes | bytearray | memoryview) -> bytes:
        """Chunk `index` sealed: ciphertext || tag. Full chunks are non-final; a short one is final."""
        self._sealable(chunk)
        return self._aead.encrypt(self._nonce(index), chunk, None)

    def seal_into(self, index: int, chunk: bytes | bytearray | memoryview, out: memoryview) -> int:
        """`seal` writing ciphertext || tag to the start of `out`; the number of bytes written."""
        n = self._sealable(chunk)
        self._aead.encrypt_into(self._nonce(index), chunk, None, out[:n])
        return n

    def _check(self, sealed: bytes | bytearray | memoryview, final: bool) -> int:
        n = len(sealed) - TAG_SIZE
        if n < 0 or n > self.chunk_size or (n == self.chunk_size) == final:
            raise IntegrityError("chunk")
        return n

    def open_run_into(self, first: int, sealed: memoryview, out: memoryview) -> int:
        """`open_into` for consecutive full (non-final) chunks first, first + 1, ... laid end to end
        in `sealed`, into `out` end to end; the plaintext length. One call per run instead of one
        per chunk: at 64 KiB chunks the per-call overhead was a sizable part of a GET's CPU."""
        cs = self.chunk_size
        step = cs + TAG_SIZE
        count, rest = divmod(len(sealed), step)
        if rest or not 0 <= first <= first + count <= MAX_CHUNKS:
            raise IntegrityError("chunk")
        if len(out) < count * cs:
            raise ValueError("out is too small")
        decrypt, base = self._aead.decrypt_into, self._base
        try:
            for i in range(count):
                at = i * step
                decrypt((base ^ (first + i)).to_bytes(NONCE_SIZE, "big"), sealed[at : at + step], None,
                        out[i * cs : i * cs + cs])
        except InvalidTag:
            raise IntegrityError("chunk") from None
        return count * cs

    def open(self, index: int, sealed: bytes | bytearray | memoryview, *, final: bool) -> bytes:
        """The plaintext of sealed chunk `index`, which must be the part's final chunk iff `final`."""
        self._check(sealed, final)
        try:
            return self._aead.decrypt(self._nonce(index), sealed, None)
        except InvalidTag:
            raise IntegrityError("chunk") from None

    def open_into(self, index: int, sealed: bytes | bytearray | memoryview, out: memoryview, *, final: bool) -> int:
        """`open` writing the plaintext to the start of `out`; its length. After IntegrityError `out`
        holds unauthenticated bytes: the caller must discard it, never release it."""
        n = self._check(sealed, final)
        try:
            self._aead.decrypt_into(self._nonce(index), sealed, None, out[:n])
        except InvalidTag:
            raise IntegrityError("chunk") from None
        return n
