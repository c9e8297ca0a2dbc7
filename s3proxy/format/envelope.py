"""The envelope: every metadata key s3proxy stores beside an object, and the format's own fields (FORMAT.md §7-8).

Key names are lower-case user-metadata names without `x-amz-meta-`. The format owns version,
chunk size, plaintext size, part list and the envelope MAC; the modes layer adds its keys
(wrapped key, key id, mode) in this same module.

    meta = seal_envelope(Envelope.single(size), data_key)         # at PUT
    env = open_envelope(meta, data_key)                            # at GET: IntegrityError if tampered
    plan = env.plan(first, last)                                   # -> streams.decrypt_range
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from dataclasses import dataclass
from typing import Mapping, Sequence

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand

from s3proxy.format.chunks import DATA_KEY_SIZE, DEFAULT_CHUNK_SIZE, check_chunk_size
from s3proxy.format.errors import IntegrityError
from s3proxy.format.ranges import RangePlan, plan_object, plan_range
from s3proxy.format.sizes import object_ciphertext_size

# --- metadata key names (the format's) ---
KEY_VERSION = "s3proxy-v"
KEY_CHUNK_SIZE = "s3proxy-cs"
KEY_SIZE = "s3proxy-size"
KEY_PARTS = "s3proxy-parts"
KEY_MAC = "s3proxy-mac"
FORMAT_KEYS = (KEY_VERSION, KEY_CHUNK_SIZE, KEY_SIZE, KEY_PARTS, KEY_MAC)
# --- metadata key names (the modes layer's: how the data key is wrapped) ---
KEY_MODE = "s3proxy-mode"  # "AES256" | "aws:kms" | "SSE-C"
KEY_WRAPPED = "s3proxy-key"  # the wrapped data key (or, with a bucket key, the wrapped bucket key), base64
KEY_KMS_ID = "s3proxy-kid"  # KMS key ARN (SSE-KMS)
KEY_CONTEXT = "s3proxy-ctx"  # the caller's SSE-KMS context as sent (base64 JSON), replayed to KMS
KEY_BUCKET_KEY = "s3proxy-bke"  # with an S3 Bucket Key: base64(salt || data key wrapped under the bucket key)
MODE_KEYS = (KEY_MODE, KEY_WRAPPED, KEY_KMS_ID, KEY_CONTEXT, KEY_BUCKET_KEY)
# --- metadata key names (the object store's) ---
KEY_ETAG = "s3proxy-etag"  # the client ETag when it is not the backend's (SSE-S3: MD5 of the plaintext)
KEY_CHECKSUMS = "s3proxy-cks"  # the plaintext's flexible checksums, sealed under the data key
KEY_MPU = "s3proxy-mpu"  # a multipart object's id: its size, part list and MAC are the record parts/<id>

VERSION = 1
USER_METADATA_LIMIT = 2048  # S3's cap on user metadata (names + values), in bytes
MAX_PART_NUMBER = 10000

_MAC_KEY_INFO = b"s3proxy.format@v1 envelope-mac"
_MAC_LABEL = b"s3proxy.format@v1 envelope\x00"
_DECIMAL = re.compile(r"0|[1-9][0-9]{0,18}")
_RUN = re.compile(r"(?:(0|[1-9][0-9]{0,4}):)?(0|[1-9][0-9]{0,18})(?:\*([1-9][0-9]{0,4}))?")


@dataclass(frozen=True)
class Envelope:
    """The format's envelope fields: chunk size and (part number, plaintext size) of every stored part."""

    chunk_size: int
    parts: tuple[tuple[int, int], ...]  # ((0, n),) for a single PUT; ((1, n1), (2, n2), ...) for multipart
    version: int = VERSION

    @classmethod
    def single(cls, plaintext_size: int, chunk_size: int = DEFAULT_CHUNK_SIZE) -> Envelope:
        """The envelope of an object written by one PUT."""
        return cls(check_chunk_size(chunk_size), ((0, _size(plaintext_size)),))

    @classmethod
    def multipart(cls, parts: Sequence[tuple[int, int]], chunk_size: int = DEFAULT_CHUNK_SIZE) -> Envelope:
        """The envelope of a completed multipart upload: (part number, plaintext size) in order."""
        numbers = [p for p, _ in parts]
        if not parts or numbers[0] < 1 or numbers[-1] > MAX_PART_NUMBER or any(a >= b for a, b in zip(numbers, numbers[1:])):
            raise ValueError("part numbers must strictly increase within 1..10000")
        return cls(check_chunk_size(chunk_size), tuple((p, _size(n)) for p, n in parts))

    @property
    def is_multipart(self) -> bool:
        return self.parts[0][0] != 0

    @property
    def part_numbers(self) -> tuple[int, ...]:
        return tuple(p for p, _ in self.parts)

    @property
    def part_sizes(self) -> tuple[int, ...]:
        return tuple(n for _, n in self.parts)

    @property
    def plaintext_size(self) -> int:
        return sum(self.part_sizes)

    @property
    def ciphertext_size(self) -> int:
        return object_ciphertext_size(self.part_sizes, self.chunk_size)

    def plan(self, first: int, last: int) -> RangePlan:
        """Plan plaintext bytes first..last inclusive (ValueError if not satisfiable)."""
        return plan_range(first, last, self.part_sizes, self.chunk_size, part_numbers=self.part_numbers)

    def plan_all(self) -> RangePlan:
        """Plan the whole object, every chunk opened (works for empty objects)."""
        return plan_object(self.part_sizes, self.chunk_size, part_numbers=self.part_numbers)


def _size(n: int) -> int:
    if not 0 <= n < 10**19:
        raise ValueError("size out of range")
    return n


def encode_parts(parts: Sequence[tuple[int, int]]) -> str:
    """The run-length part list `[P:]S[*N],...` (FORMAT.md §7), greedy runs of consecutive equal parts."""
    runs: list[list[int]] = []  # [first number, size, count]
    for number, size in parts:
        if runs and size == runs[-1][1] and number == runs[-1][0] + runs[-1][2]:
            runs[-1][2] += 1
        else:
            runs.append([number, size, 1])
    out, expected = [], 1
    for number, size, count in runs:
        out.append(("" if number == expected else f"{number}:") + str(size) + ("" if count == 1 else f"*{count}"))
        expected = number + count
    return ",".join(out)


def decode_parts(text: str) -> tuple[tuple[int, int], ...]:
    """Inverse of encode_parts; IntegrityError if malformed or the numbers do not strictly increase."""
    parts: list[tuple[int, int]] = []
    expected = 1
    for run in text.split(","):
        m = _RUN.fullmatch(run)
        if m is None:
            raise IntegrityError()
        number = int(m[1]) if m[1] else expected
        count = int(m[3]) if m[3] else 1
        if number < expected or number + count - 1 > MAX_PART_NUMBER:
            raise IntegrityError()
        parts.extend((number + i, int(m[2])) for i in range(count))
        expected = number + count
    return tuple(parts)


def _fields(envelope: Envelope) -> dict[str, str]:
    fields = {
        KEY_VERSION: str(envelope.version),
        KEY_CHUNK_SIZE: str(envelope.chunk_size),
        KEY_SIZE: str(envelope.plaintext_size),
    }
    if envelope.is_multipart:
        fields[KEY_PARTS] = encode_parts(envelope.parts)
    return fields


def envelope_mac_key(data_key: bytes) -> bytes:
    """M of §2: one-way from the data key, so holding M (to seal a multipart envelope at Complete
    without the customer's key) reveals nothing about K."""
    if len(data_key) != DATA_KEY_SIZE:
        raise ValueError("data key must be 32 bytes")
    return HKDFExpand(hashes.SHA256(), 32, _MAC_KEY_INFO).derive(data_key)


def envelope_mac(fields: Mapping[str, str], data_key: bytes, context: bytes = b"", *, mac_key: bytes | None = None) -> bytes:
    """HMAC-SHA-256 over the envelope's field strings and the context, keyed from the data key (§8)
    or directly by `mac_key` = envelope_mac_key(data key)."""
    key = mac_key if mac_key is not None else envelope_mac_key(data_key)
    message = b"".join(
        [
            _MAC_LABEL,
            len(context).to_bytes(4, "big"),
            context,
            f"v={fields.get(KEY_VERSION, '')}\ncs={fields.get(KEY_CHUNK_SIZE, '')}\n".encode("ascii"),
            f"size={fields.get(KEY_SIZE, '')}\nparts={fields.get(KEY_PARTS, '')}".encode("ascii"),
        ]
    )
    return hmac.new(key, message, hashlib.sha256).digest()


def seal_envelope(envelope: Envelope, data_key: bytes, context: bytes = b"", *, mac_key: bytes | None = None) -> dict[str, str]:
    """The metadata entries for `envelope`, MAC included. Merge them into the object's user metadata."""
    fields = _fields(envelope)
    mac = envelope_mac(fields, data_key, context, mac_key=mac_key)
    fields[KEY_MAC] = base64.urlsafe_b64encode(mac).rstrip(b"=").decode("ascii")
    return fields


def is_sealed(metadata: Mapping[str, str]) -> bool:
    """Whether this metadata carries an s3proxy format envelope."""
    return KEY_VERSION in metadata


def open_envelope(
    metadata: Mapping[str, str], data_key: bytes, context: bytes = b"", *, parts: str | None = None
) -> Envelope:
    """The verified envelope in `metadata`; IntegrityError if anything is missing, malformed or tampered.

    `parts` is the part list when the caller kept it outside the metadata (a sidecar, §7).
    """
    fields = {k: metadata[k] for k in FORMAT_KEYS if k in metadata}
    if parts is not None:
        fields[KEY_PARTS] = parts
    try:
        mac = base64.urlsafe_b64decode(fields[KEY_MAC] + "=")
        ok = hmac.compare_digest(mac, envelope_mac(fields, data_key, context))
        if not ok or fields[KEY_VERSION] != str(VERSION):
            raise IntegrityError()
        if not (_DECIMAL.fullmatch(fields[KEY_CHUNK_SIZE]) and _DECIMAL.fullmatch(fields[KEY_SIZE])):
            raise IntegrityError()
        chunk_size, size = int(fields[KEY_CHUNK_SIZE]), int(fields[KEY_SIZE])
        if KEY_PARTS in fields:
            envelope = Envelope.multipart(decode_parts(fields[KEY_PARTS]), chunk_size)
        else:
            envelope = Envelope.single(size, chunk_size)
        if envelope.plaintext_size != size:
            raise IntegrityError()
        return envelope
    except (KeyError, ValueError, UnicodeError):
        raise IntegrityError() from None


def metadata_size(metadata: Mapping[str, str]) -> int:
    """Bytes this user metadata counts against S3's 2 KB cap (names and values, UTF-8)."""
    return sum(len(k.encode()) + len(v.encode()) for k, v in metadata.items())
