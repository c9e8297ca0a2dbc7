"""The envelope: every metadata key s3proxy stores beside an object, and the format's own fields (FORMAT.md §7-8).

Key names are lower-case user-metadata names without `x-amz-meta-`. The format owns version,
chunk size, plaintext size, part list, trailer flags and the envelope MAC (keyed from the data
key); the modes layer and the store add their keys, all named in this same module. The version
field selects the rules: version 1 (§19) is read as it always was, version 2 binds the trailer
flags too.

    meta = seal_envelope(Envelope.single(size, version=2, trailer=flags), data_key)   # at PUT
    env = open_envelope(meta, data_key)        # at GET: IntegrityError if tampered
    env.stored_size                            # must equal the backend's object size
    plan = env.plan(first, last)               # -> streams.decrypt_range; the trailer is at env.trailer_range
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand

from s3proxy.format.chunks import DATA_KEY_SIZE, DEFAULT_CHUNK_SIZE, check_chunk_size
from s3proxy.format.errors import IntegrityError
from s3proxy.format.ranges import RangePlan, plan_object, plan_range
from s3proxy.format.sizes import object_ciphertext_size
from s3proxy.format.trailer import TRAILER_FLAGS, TRAILER_SIZE

# --- metadata key names (the format's) ---
KEY_VERSION = "s3proxy-v"
KEY_CHUNK_SIZE = "s3proxy-cs"
KEY_SIZE = "s3proxy-size"
KEY_PARTS = "s3proxy-parts"
KEY_MAC = "s3proxy-mac"
KEY_TRAILER = "s3proxy-tr"  # v2: the trailer's flags (FORMAT.md §9); absent = no trailer
FORMAT_KEYS = (KEY_VERSION, KEY_CHUNK_SIZE, KEY_SIZE, KEY_PARTS, KEY_MAC, KEY_TRAILER)
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
KEY_SEALED_ETAG = "s3proxy-setag"  # v2, SSE-S3: the client ETag (MD5 of the plaintext) sealed under IK_meta
KEY_METADATA_MAC = "s3proxy-mm"  # v2: HMAC under IK_meta over the name, all metadata and the bound headers
STORE_KEYS = (KEY_ETAG, KEY_SEALED_ETAG, KEY_CHECKSUMS, KEY_MPU, KEY_METADATA_MAC)
KNOWN_KEYS = frozenset(FORMAT_KEYS + MODE_KEYS + STORE_KEYS)
INTERNAL_PREFIX = "s3proxy-"  # every key above starts with it
ESCAPED_PREFIX = "s3proxy-user-"  # a client's own `s3proxy-x` key is stored as `s3proxy-user-x`

VERSION_1 = 1
VERSION_2 = 2
READABLE_VERSIONS = (VERSION_1, VERSION_2)
# what Envelope.single/multipart default to and what the store writes (with s3proxy-mm beside it, FORMAT.md §12)
VERSION = VERSION_2
USER_METADATA_LIMIT = 2048  # S3's cap on user metadata (names + values), in bytes
MAX_PART_NUMBER = 10000

_MAC_KEY_INFO = b"s3proxy.format@v1 envelope-mac"  # M, the same in both versions (§2)
_MAC_LABELS = {VERSION_1: b"s3proxy.format@v1 envelope\x00", VERSION_2: b"s3proxy.format@v2 envelope\x00"}
_DECIMAL = re.compile(r"0|[1-9][0-9]{0,18}")
_RUN = re.compile(r"(?:(0|[1-9][0-9]{0,4}):)?(0|[1-9][0-9]{0,18})(?:\*([1-9][0-9]{0,4}))?")


@dataclass(frozen=True)
class Envelope:
    """The format's envelope fields: version, chunk size, (part number, plaintext size) of every
    stored part, and the trailer's flags (0: no trailer; v2 single-part objects only)."""

    chunk_size: int
    parts: tuple[tuple[int, int], ...]  # ((0, n),) for a single PUT; ((1, n1), (2, n2), ...) for multipart
    version: int = VERSION
    trailer: int = 0

    def __post_init__(self) -> None:
        if self.version not in READABLE_VERSIONS:
            raise ValueError("unknown format version")
        if self.trailer and (self.trailer not in TRAILER_FLAGS or self.version < VERSION_2 or self.is_multipart):
            raise ValueError("a trailer needs version 2, one part and flags 1, 2 or 3")

    @classmethod
    def single(cls, plaintext_size: int, chunk_size: int = DEFAULT_CHUNK_SIZE, *, version: int = VERSION,
               trailer: int = 0) -> Envelope:
        """The envelope of an object written by one PUT (`trailer`: the flags of its trailer, §9)."""
        return cls(check_chunk_size(chunk_size), ((0, _size(plaintext_size)),), version, trailer)

    @classmethod
    def multipart(cls, parts: Sequence[tuple[int, int]], chunk_size: int = DEFAULT_CHUNK_SIZE, *,
                  version: int = VERSION) -> Envelope:
        """The envelope of a completed multipart upload: (part number, plaintext size) in order."""
        numbers = [p for p, _ in parts]
        increasing = all(a < b for a, b in zip(numbers, numbers[1:], strict=False))
        if not parts or numbers[0] < 1 or numbers[-1] > MAX_PART_NUMBER or not increasing:
            raise ValueError("part numbers must strictly increase within 1..10000")
        return cls(check_chunk_size(chunk_size), tuple((p, _size(n)) for p, n in parts), version)

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
        """Stored bytes of the chunks (all parts), without the trailer."""
        return object_ciphertext_size(self.part_sizes, self.chunk_size)

    @property
    def stored_size(self) -> int:
        """The backend object's size: the chunks, then the trailer if there is one (§5)."""
        return object_ciphertext_size(self.part_sizes, self.chunk_size, trailer=bool(self.trailer))

    @property
    def trailer_range(self) -> tuple[int, int] | None:
        """Inclusive stored offsets of the trailer, or None (§6: after every chunk, outside every range)."""
        if not self.trailer:
            return None
        return self.ciphertext_size, self.ciphertext_size + TRAILER_SIZE - 1

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
            raise IntegrityError(KEY_PARTS)
        number = int(m[1]) if m[1] else expected
        count = int(m[3]) if m[3] else 1
        if number < expected or number + count - 1 > MAX_PART_NUMBER:
            raise IntegrityError(KEY_PARTS)
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
    if envelope.trailer:
        fields[KEY_TRAILER] = str(envelope.trailer)
    return fields


def envelope_mac_key(data_key: bytes) -> bytes:
    """M of §2: one-way from the data key, so holding M (to seal a multipart envelope at Complete
    without the customer's key) reveals nothing about K."""
    if len(data_key) != DATA_KEY_SIZE:
        raise ValueError("data key must be 32 bytes")
    return HKDFExpand(hashes.SHA256(), 32, _MAC_KEY_INFO).derive(data_key)


def envelope_mac(fields: Mapping[str, str], data_key: bytes, context: bytes = b"", *, mac_key: bytes | None = None) -> bytes:
    """HMAC-SHA-256 over the envelope's field strings and the context, keyed from the data key (§8)
    or directly by `mac_key` = envelope_mac_key(data key). The version field picks the input:
    version 2 adds the trailer flags (§8), version 1 is §19.1; ValueError for another version."""
    key = mac_key if mac_key is not None else envelope_mac_key(data_key)
    version = fields.get(KEY_VERSION, "")
    label = _MAC_LABELS.get(int(version) if version in ("1", "2") else 0)
    if label is None:
        raise ValueError("unknown format version")
    text = f"v={version}\ncs={fields.get(KEY_CHUNK_SIZE, '')}\nsize={fields.get(KEY_SIZE, '')}\nparts={fields.get(KEY_PARTS, '')}"
    if version == "2":
        text += f"\ntr={fields.get(KEY_TRAILER, '')}"
    message = b"".join([label, len(context).to_bytes(4, "big"), context, text.encode("ascii")])
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
        version = {"1": VERSION_1, "2": VERSION_2}[fields[KEY_VERSION]]
        if version == VERSION_1 and KEY_TRAILER in fields:
            raise IntegrityError(KEY_TRAILER)
        mac = base64.urlsafe_b64decode(fields[KEY_MAC] + "=")
        if not hmac.compare_digest(mac, envelope_mac(fields, data_key, context)):
            raise IntegrityError(KEY_MAC)
        if not (_DECIMAL.fullmatch(fields[KEY_CHUNK_SIZE]) and _DECIMAL.fullmatch(fields[KEY_SIZE])):
            raise IntegrityError(KEY_SIZE)
        chunk_size, size = int(fields[KEY_CHUNK_SIZE]), int(fields[KEY_SIZE])
        trailer = int(fields[KEY_TRAILER]) if fields.get(KEY_TRAILER) in ("1", "2", "3") else 0
        if KEY_TRAILER in fields and not trailer:
            raise IntegrityError(KEY_TRAILER)
        if KEY_PARTS in fields:
            if trailer:
                raise IntegrityError(KEY_TRAILER)
            envelope = Envelope.multipart(decode_parts(fields[KEY_PARTS]), chunk_size, version=version)
        else:
            envelope = Envelope.single(size, chunk_size, version=version, trailer=trailer)
        if envelope.plaintext_size != size:
            raise IntegrityError(KEY_SIZE)
        return envelope
    except (KeyError, ValueError, UnicodeError):
        raise IntegrityError("envelope") from None


def upgrade_envelope(
    metadata: Mapping[str, str], data_key: bytes, context: bytes = b"", *, parts: str | None = None, mac_key: bytes | None = None
) -> dict[str, str]:
    """The version-2 envelope fields of an authentic version-1 envelope (FORMAT.md §19.2 step 2):
    same chunk size, sizes and parts, no trailer, the MAC recomputed. IntegrityError if the
    version-1 envelope does not verify or is not version 1."""
    envelope = open_envelope(metadata, data_key, context, parts=parts)
    if envelope.version != VERSION_1:
        raise IntegrityError(KEY_VERSION)
    return seal_envelope(replace(envelope, version=VERSION_2), data_key, context, mac_key=mac_key)


def metadata_size(metadata: Mapping[str, str]) -> int:
    """Bytes this user metadata counts against S3's 2 KB cap (names and values, UTF-8)."""
    return sum(len(k.encode()) + len(v.encode()) for k, v in metadata.items())
