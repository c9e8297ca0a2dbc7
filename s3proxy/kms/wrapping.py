"""Sealing under the root key, the canonical encryption-context encoding, and symmetric ciphertext blobs.

Formats (all integers big-endian):

* Sealed keystore record: `0x01 ‖ nonce(12) ‖ AES-256-GCM(root, nonce, record, aad=entry name)`.
  The entry name as AAD stops a sealed record being moved to another name.
* Encryption context (AAD): `u32 count ‖ (u32 len(k) ‖ k ‖ u32 len(v) ‖ v)*`, items sorted by the
  UTF-8 bytes of the key. Length prefixes make it injective: `{"ab":"c"}` and `{"a":"bc"}` differ
  (moto and LocalStack concatenate without separators, so theirs collide).
* Symmetric ciphertext blob: header `b"K1" ‖ key id (16, UUID bytes) ‖ material version u32 ‖
  nonce(32)` then `AES-256-GCM(k, iv=0^12, plaintext, aad=header ‖ context)` (ciphertext ‖ tag16),
  where `k = HMAC-SHA256(material, "s3proxy-kms-encrypt-v1" ‖ nonce)`. As in AWS KMS, each blob
  gets its own derived key from a random 256-bit nonce, so no GCM nonce budget applies per key, and
  the blob names its key and version so Decrypt needs no KeyId. 86 bytes of overhead.
* The same blob under a key of a custom key store (its AES key inside a PKCS#11 token, which derives
  nothing): the same header with material version 1, then `AES-256-GCM(token key, iv=nonce[:12],
  plaintext, aad=header ‖ context)` computed by the token (`seal_blob_in`). Random 96-bit IVs: NIST
  SP 800-38D's bound of 2^32 blobs per key applies to such a key.
"""

from __future__ import annotations

import hmac
import os
import stat
import struct
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ..private import make_dir, open_file
from .errors import InvalidCiphertextException, RootKeyError

ROOT_KEY_BYTES = 32
MAX_ROOT_KEYS = 8  # a root key file may hold a keyring while a rotation is under way: current key first
_SEAL_VERSION = b"\x01"
BLOB_MAGIC = b"K1"
_HEADER = struct.Struct(">2s16sI32s")
HEADER_LEN = _HEADER.size  # 54
BLOB_OVERHEAD = HEADER_LEN + 16
_ZERO_IV = bytes(12)
_DERIVE_LABEL = b"s3proxy-kms-encrypt-v1"


LEGACY_ROOT_KEY_NAME = "root.key"
ROOT_KEY_SUFFIX = ".root.key"


def default_root_key(data_dir: Path) -> Path:
    """The root key's default place: DATA_DIR.root.key, beside the data dir (`data` -> `data.root.key`),
    so that copying or backing up the data dir never takes the key along."""
    data_dir = Path(data_dir)
    if data_dir.name in ("", ".", ".."):
        data_dir = Path(os.path.abspath(data_dir))
    return data_dir.with_name(data_dir.name + ROOT_KEY_SUFFIX) if data_dir.name else data_dir / LEGACY_ROOT_KEY_NAME


def root_key_location(data_dir: Path, root_key_file: Path | None = None) -> Path:
    """`root_key_file` when given; else the root key an older version made inside the data dir, while it
    is there; else the default beside the data dir (`default_root_key`)."""
    if root_key_file is not None:
        return Path(root_key_file)
    legacy = Path(data_dir) / LEGACY_ROOT_KEY_NAME
    return legacy if legacy.exists() else default_root_key(Path(data_dir))


def load_root_key(path: Path, *, create: bool = True, rand: Callable[[int], bytes] = os.urandom) -> bytes:
    """Read the root key file (created 0600 with fresh random bytes if absent and `create`).

    Refuses a file readable or writable by group or others, or of the wrong length.
    """
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        if not create:
            raise RootKeyError(f"root key file {path} does not exist") from None
        make_dir(path.parent)
        try:
            fd = open_file(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
        except FileExistsError:  # another process won the race: read theirs
            return load_root_key(path, create=False)
        try:
            os.write(fd, rand(ROOT_KEY_BYTES))
            os.fsync(fd)
        finally:
            os.close(fd)
        return load_root_key(path, create=False)
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_IMODE(mode) & 0o077:
            raise RootKeyError(
                f"root key file {path} has mode {stat.S_IMODE(mode):04o}; it must be readable by its owner only (chmod 600)"
            )
        data = os.read(fd, MAX_ROOT_KEYS * ROOT_KEY_BYTES + 1)
    finally:
        os.close(fd)
    if not data or len(data) % ROOT_KEY_BYTES or len(data) > MAX_ROOT_KEYS * ROOT_KEY_BYTES:
        raise RootKeyError(
            f"root key file {path} must hold {ROOT_KEY_BYTES} bytes (or a keyring of up to {MAX_ROOT_KEYS} such keys)"
        )
    return data


def write_root_key(path: Path, keyring: bytes) -> None:
    """Replace the root key file atomically (0600): temp file, fsync, rename, fsync the directory."""
    if not keyring or len(keyring) % ROOT_KEY_BYTES or len(keyring) > MAX_ROOT_KEYS * ROOT_KEY_BYTES:
        raise ValueError("a keyring is 1 to 8 keys of 32 bytes")
    tmp = path.with_name(path.name + ".new")
    fd = open_file(tmp)
    try:
        os.write(fd, keyring)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


class Aead(Protocol):
    """AES-256-GCM under one root key: `cryptography`'s AESGCM, or a key inside a PKCS#11 token (pkcs11.TokenAead)."""

    def encrypt(self, nonce: bytes, data: bytes, associated_data: bytes | None) -> bytes: ...

    def decrypt(self, nonce: bytes, data: bytes, associated_data: bytes | None) -> bytes: ...


class Sealer:
    """Seals records under the current root key and opens them under any key of the keyring (the
    current key first; older ones stay until a root-key rotation has re-sealed every record).
    Holds the keys; never shows them. `Sealer.over` seals with keys held elsewhere (a PKCS#11 token):
    the same record format, the key never in this process."""

    def __init__(self, root_key: bytes, *, rand: Callable[[int], bytes] = os.urandom,
                 reload: Callable[[], bytes] | None = None) -> None:
        self._set(root_key)
        self._rand = rand
        self._reload = reload  # re-reads the root key file: how a running proxy meets a rotation

    @classmethod
    def over(cls, aeads: Sequence[Aead], *, rand: Callable[[int], bytes] = os.urandom) -> Sealer:
        sealer = cls(bytes(ROOT_KEY_BYTES), rand=rand)
        sealer._aeads = list(aeads)
        return sealer

    def _set(self, keyring: bytes) -> None:
        self._aeads: list[Aead] = [AESGCM(keyring[i : i + ROOT_KEY_BYTES]) for i in range(0, len(keyring), ROOT_KEY_BYTES)]

    def __repr__(self) -> str:
        return f"Sealer(<{len(self._aeads)} root key(s) hidden>)"

    def seal(self, name: str, record: bytes) -> bytes:
        """Seal under the current key of the root key file as it is now: keystore writes are rare
        (admin operations), so re-reading it here means no process ever seals under a key that a
        finished rotation has dropped."""
        if self._reload is not None:
            try:
                self._set(self._reload())
            except RootKeyError:
                pass  # keep the keys in hand; opening will say if they no longer fit
        nonce = self._rand(12)
        return _SEAL_VERSION + nonce + self._aeads[0].encrypt(nonce, record, name.encode())

    def open(self, name: str, blob: bytes) -> bytes:
        return self.open_with(name, blob)[0]

    def open_with(self, name: str, blob: bytes) -> tuple[bytes, int]:
        """(record, index in the keyring of the key that opened it: 0 = current). When no key opens
        it, the keyring is read again once (a rotation may have sealed it under a newer key)."""
        if blob[:1] != _SEAL_VERSION or len(blob) < 29:
            raise RootKeyError(f"keystore entry {name!r} is not a sealed record")
        for attempt in range(2):
            for index, aead in enumerate(self._aeads):
                try:
                    return aead.decrypt(blob[1:13], blob[13:], name.encode()), index
                except InvalidTag:
                    continue
            if attempt or self._reload is None:
                break
            try:
                self._set(self._reload())
            except RootKeyError:
                break
        raise RootKeyError(f"keystore entry {name!r} does not open under this root key")


def encode_context(context: Mapping[str, str] | None) -> bytes:
    """The injective canonical byte encoding of an encryption context (see module docstring)."""
    if not context:
        return b"\x00\x00\x00\x00"
    items = sorted((k.encode(), v.encode()) for k, v in context.items())
    parts = [struct.pack(">I", len(items))]
    for k, v in items:
        parts += [struct.pack(">I", len(k)), k, struct.pack(">I", len(v)), v]
    return b"".join(parts)


@dataclass(frozen=True)
class BlobHeader:
    key_id: str
    material_version: int
    raw: bytes


def parse_blob(blob: bytes) -> BlobHeader:
    """Read a symmetric blob's header; anything malformed is InvalidCiphertextException."""
    if len(blob) < BLOB_OVERHEAD or blob[:2] != BLOB_MAGIC:
        raise InvalidCiphertextException()
    _, kid, version, _ = _HEADER.unpack_from(blob)
    return BlobHeader(str(uuid.UUID(bytes=kid)), version, blob[:HEADER_LEN])


def _derive(material: bytes, nonce: bytes) -> AESGCM:
    return AESGCM(hmac.digest(material, _DERIVE_LABEL + nonce, "sha256"))


def seal_blob(
    key_id: str, material_version: int, material: bytes, plaintext: bytes,
    context: Mapping[str, str] | None, rand: Callable[[int], bytes] = os.urandom,
) -> bytes:
    nonce = rand(32)
    header = _HEADER.pack(BLOB_MAGIC, uuid.UUID(key_id).bytes, material_version, nonce)
    return header + _derive(material, nonce).encrypt(_ZERO_IV, plaintext, header + encode_context(context))


def seal_blob_in(aead: Aead, key_id: str, plaintext: bytes, context: Mapping[str, str] | None,
                 rand: Callable[[int], bytes] = os.urandom) -> bytes:
    """A blob sealed by a key that stays in a token (`aead`), IV from the blob's nonce (module docstring)."""
    nonce = rand(32)
    header = _HEADER.pack(BLOB_MAGIC, uuid.UUID(key_id).bytes, 1, nonce)
    return header + aead.encrypt(nonce[:12], plaintext, header + encode_context(context))


def open_blob_in(aead: Aead, header: BlobHeader, blob: bytes, context: Mapping[str, str] | None) -> bytes:
    nonce = header.raw[HEADER_LEN - 32 :]
    try:
        return aead.decrypt(nonce[:12], blob[HEADER_LEN:], header.raw + encode_context(context))
    except InvalidTag:
        raise InvalidCiphertextException() from None


def open_blob(header: BlobHeader, material: bytes, blob: bytes, context: Mapping[str, str] | None) -> bytes:
    nonce = header.raw[HEADER_LEN - 32 :]
    try:
        return _derive(material, nonce).decrypt(_ZERO_IV, blob[HEADER_LEN:], header.raw + encode_context(context))
    except InvalidTag:
        raise InvalidCiphertextException() from None
