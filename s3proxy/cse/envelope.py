"""The S3 Encryption Client envelope (formats v1, v2, v3): metadata key names, parsing and writing.

Facts from the AWS S3EC specification (s3-encryption/data-format/content-metadata.md and
metadata-strategy.md) as summarised in shared/reference/client-side-formats.md. Every metadata
key name used by this package is a constant here. Keys are given without the `x-amz-meta-` prefix
that S3 adds on the wire; boto3 hands them back lower-cased.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass, field

from s3proxy.cse.errors import EnvelopeError

# --- v1 / v2 keys --------------------------------------------------------------------------
KEY_V1 = "x-amz-key"
KEY_V2 = "x-amz-key-v2"
WRAP_ALG = "x-amz-wrap-alg"
MATDESC = "x-amz-matdesc"
IV = "x-amz-iv"
CEK_ALG = "x-amz-cek-alg"
TAG_LEN = "x-amz-tag-len"
UNENCRYPTED_LENGTH = "x-amz-unencrypted-content-length"
INSTRUCTION_MARKER = "x-amz-crypto-instr-file"
# --- v3 (compressed) keys ------------------------------------------------------------------
V3_CEK_ALG = "x-amz-c"
V3_KEY = "x-amz-3"
V3_MATDESC = "x-amz-m"
V3_CONTEXT = "x-amz-t"
V3_WRAP_ALG = "x-amz-w"
V3_COMMITMENT = "x-amz-d"
V3_MESSAGE_ID = "x-amz-i"

V1_V2_FIELDS = (KEY_V1, KEY_V2, WRAP_ALG, MATDESC, IV, CEK_ALG, TAG_LEN)
V3_FIELDS = (V3_CEK_ALG, V3_KEY, V3_MATDESC, V3_CONTEXT, V3_WRAP_ALG, V3_COMMITMENT, V3_MESSAGE_ID)
# In v3 these stay on the object even with an instruction file (metadata-strategy.md#v3-instruction-files).
V3_OBJECT_ONLY = frozenset({V3_CEK_ALG, V3_COMMITMENT, V3_MESSAGE_ID})
ALL_FIELDS = frozenset(V1_V2_FIELDS + V3_FIELDS + (INSTRUCTION_MARKER,))

# --- algorithm names -----------------------------------------------------------------------
CEK_GCM = "AES/GCM/NoPadding"
CEK_CBC = "AES/CBC/PKCS5Padding"
CEK_CBC_ALIASES = frozenset({CEK_CBC, "AES/CBC/PKCS7Padding"})
CEK_V3_COMMITTING = "115"  # suite 0x0073 ALG_AES_256_GCM_HKDF_SHA512_COMMIT_KEY

WRAP_KMS_CONTEXT = "kms+context"
WRAP_KMS_V1 = "kms"  # legacy, no context: decrypt only
WRAP_AES_GCM = "AES/GCM"
WRAP_RSA_OAEP_SHA1 = "RSA-OAEP-SHA1"
WRAP_V1_RAW = ""  # v1 `x-amz-key` without wrap-alg: AES/ECB/PKCS5 or RSA/PKCS#1 v1.5 by the master key
WRAP_AES_WRAP = "AESWrap"  # v1 (Java): RFC 3394 key wrap

V3_WRAP_CODES = {"02": WRAP_AES_GCM, "12": WRAP_KMS_CONTEXT, "22": WRAP_RSA_OAEP_SHA1}
V3_WRAP_NAMES = {name: code for code, name in V3_WRAP_CODES.items()}

RESERVED_CEK_CONTEXT_KEY = "aws:x-amz-cek-alg"
RESERVED_V1_KMS_CONTEXT_KEY = "kms_cmk_id"

GCM_TAG_BITS = "128"

LOCATION_METADATA = "metadata"
LOCATION_INSTRUCTION_FILE = "instruction-file"


@dataclass(frozen=True)
class Envelope:
    """Everything needed, with the wrapping key, to decrypt one object."""

    version: int  # 1, 2 or 3
    cek_alg: str  # CEK_GCM, CEK_CBC or CEK_V3_COMMITTING
    wrap_alg: str  # one of the WRAP_* names (long form, also for v3)
    wrapped_key: bytes = field(repr=False)
    iv: bytes = b""  # v1/v2 only; v3 uses a fixed IV
    matdesc: Mapping[str, str] = field(default_factory=dict)  # x-amz-matdesc (v1/v2) or x-amz-m (v3)
    kms_context: Mapping[str, str] = field(default_factory=dict)  # x-amz-t (v3 kms+context)
    message_id: bytes = b""  # v3
    commitment: bytes = b""  # v3
    plaintext_length: int | None = None
    in_instruction_file: bool = False

    @property
    def stored_context(self) -> Mapping[str, str]:
        """The context the key was wrapped under: KMS context for kms wraps, else the materials description."""
        if self.version == 3 and self.wrap_alg == WRAP_KMS_CONTEXT:
            return self.kms_context
        return self.matdesc


def _lower(meta: Mapping[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in meta.items()}


def _b64(value: str, name: str) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise EnvelopeError(f"envelope field {name} is not valid base64") from exc


def _json_map(value: str | None, name: str) -> dict[str, str]:
    if value is None or value == "":
        return {}
    try:
        parsed = json.loads(value)
    except ValueError as exc:
        raise EnvelopeError(f"envelope field {name} is not valid JSON") from exc
    if not isinstance(parsed, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in parsed.items()):
        raise EnvelopeError(f"envelope field {name} must be a JSON object of strings")
    return parsed


def dump_json_map(value: Mapping[str, str]) -> str:
    """Compact, ASCII-only JSON (S3 metadata must be US-ASCII), keys sorted for stable output."""
    return json.dumps(dict(value), separators=(",", ":"), sort_keys=True, ensure_ascii=True)


def has_envelope(meta: Mapping[str, str]) -> bool:
    """True if the object's own metadata holds a wrapped key (else the envelope is in an instruction file)."""
    low = _lower(meta)
    return any(k in low for k in (KEY_V1, KEY_V2, V3_KEY))


def parse_instruction_file(body: bytes) -> dict[str, str]:
    """Parse an instruction file body: a JSON object whose keys are all S3EC envelope keys."""
    try:
        parsed = json.loads(body)
    except ValueError as exc:
        raise EnvelopeError("instruction file is not valid JSON") from exc
    if not isinstance(parsed, dict) or not all(isinstance(v, str) for v in parsed.values()):
        raise EnvelopeError("instruction file must be a JSON object of strings")
    unknown = set(parsed) - ALL_FIELDS
    if unknown:
        raise EnvelopeError(f"instruction file holds keys that are not envelope keys: {sorted(unknown)}")
    return parsed


def parse_envelope(object_meta: Mapping[str, str], instruction: Mapping[str, str] | None = None) -> Envelope:
    """Build the envelope from the object's metadata and, if given, its instruction file's fields."""
    meta = _lower(object_meta)
    fields = {k: v for k, v in meta.items() if k in ALL_FIELDS}
    if instruction is not None:
        inst = _lower(instruction)
        if V3_OBJECT_ONLY & inst.keys():
            raise EnvelopeError("instruction file holds v3 fields that belong on the object (x-amz-c/d/i)")
        if KEY_V1 in inst or KEY_V2 in inst:
            if any(k in fields for k in (CEK_ALG, IV, WRAP_ALG, KEY_V1, KEY_V2)):
                raise EnvelopeError("v1/v2 envelope is split between object metadata and instruction file")
        fields.update(inst)
    present = [k for k in (KEY_V1, KEY_V2, V3_KEY) if k in fields]
    if len(present) > 1:
        raise EnvelopeError(f"envelope mixes format versions: {present}")
    if not present:
        raise EnvelopeError("object has no encryption envelope")
    if present[0] != V3_KEY and any(k in fields for k in V3_FIELDS):
        raise EnvelopeError("envelope mixes v3 fields with a v1/v2 key")
    if present[0] == KEY_V2 and KEY_V1 in fields:
        raise EnvelopeError("envelope mixes format versions")
    length = _plaintext_length(meta.get(UNENCRYPTED_LENGTH))
    from_file = instruction is not None
    if present[0] == V3_KEY:
        return _parse_v3(fields, length, from_file)
    return _parse_v1_v2(fields, 1 if present[0] == KEY_V1 else 2, length, from_file)


def _plaintext_length(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        return None


def _require(fields: Mapping[str, str], names: tuple[str, ...], version: int) -> None:
    missing = [n for n in names if n not in fields]
    if missing:
        raise EnvelopeError(f"incomplete v{version} envelope: missing {missing}")


def _parse_v3(fields: Mapping[str, str], length: int | None, from_file: bool) -> Envelope:
    _require(fields, (V3_CEK_ALG, V3_KEY, V3_WRAP_ALG, V3_COMMITMENT, V3_MESSAGE_ID), 3)
    if fields[V3_CEK_ALG] != CEK_V3_COMMITTING:
        raise EnvelopeError(f"unknown v3 content algorithm {fields[V3_CEK_ALG]!r}")
    wrap = V3_WRAP_CODES.get(fields[V3_WRAP_ALG])
    if wrap is None:
        raise EnvelopeError(f"unknown v3 wrapping algorithm {fields[V3_WRAP_ALG]!r}")
    return Envelope(
        version=3,
        cek_alg=CEK_V3_COMMITTING,
        wrap_alg=wrap,
        wrapped_key=_b64(fields[V3_KEY], V3_KEY),
        matdesc=_json_map(fields.get(V3_MATDESC), V3_MATDESC),
        kms_context=_json_map(fields.get(V3_CONTEXT), V3_CONTEXT),
        message_id=_b64(fields[V3_MESSAGE_ID], V3_MESSAGE_ID),
        commitment=_b64(fields[V3_COMMITMENT], V3_COMMITMENT),
        plaintext_length=length,
        in_instruction_file=from_file,
    )


def _parse_v1_v2(fields: Mapping[str, str], version: int, length: int | None, from_file: bool) -> Envelope:
    key_name = KEY_V1 if version == 1 else KEY_V2
    _require(fields, (key_name, IV) if version == 1 else (key_name, IV, CEK_ALG, WRAP_ALG), version)
    cek = fields.get(CEK_ALG, CEK_CBC)
    if cek in CEK_CBC_ALIASES:
        cek = CEK_CBC
    elif cek != CEK_GCM:
        raise EnvelopeError(f"unknown content algorithm {cek!r}")
    if cek == CEK_GCM and fields.get(TAG_LEN, GCM_TAG_BITS) != GCM_TAG_BITS:
        raise EnvelopeError("x-amz-tag-len must be 128 for AES/GCM/NoPadding")
    return Envelope(
        version=version,
        cek_alg=cek,
        wrap_alg=fields.get(WRAP_ALG, WRAP_V1_RAW),
        wrapped_key=_b64(fields[key_name], key_name),
        iv=_b64(fields[IV], IV),
        matdesc=_json_map(fields.get(MATDESC), MATDESC),
        plaintext_length=length,
        in_instruction_file=from_file,
    )


def envelope_fields(env: Envelope) -> dict[str, str]:
    """The envelope as S3EC fields (v2 or v3); v1 is read-only and cannot be written."""
    wrapped = base64.b64encode(env.wrapped_key).decode("ascii")
    if env.version == 3:
        out = {
            V3_CEK_ALG: env.cek_alg,
            V3_KEY: wrapped,
            V3_WRAP_ALG: V3_WRAP_NAMES[env.wrap_alg],
            V3_COMMITMENT: base64.b64encode(env.commitment).decode("ascii"),
            V3_MESSAGE_ID: base64.b64encode(env.message_id).decode("ascii"),
        }
        if env.wrap_alg == WRAP_KMS_CONTEXT:
            out[V3_CONTEXT] = dump_json_map(env.kms_context)
        else:
            out[V3_MATDESC] = dump_json_map(env.matdesc)
        return out
    if env.version == 2:
        out = {
            KEY_V2: wrapped,
            IV: base64.b64encode(env.iv).decode("ascii"),
            CEK_ALG: env.cek_alg,
            WRAP_ALG: env.wrap_alg,
            MATDESC: dump_json_map(env.matdesc),
        }
        if env.cek_alg == CEK_GCM:
            out[TAG_LEN] = GCM_TAG_BITS
        return out
    raise EnvelopeError(f"format v{env.version} is read-only")


def split_envelope(env: Envelope, location: str) -> tuple[dict[str, str], dict[str, str] | None]:
    """(object metadata, instruction-file fields or None) for writing `env` at `location`."""
    fields = envelope_fields(env)
    extra = {} if env.plaintext_length is None or env.version == 3 else {UNENCRYPTED_LENGTH: str(env.plaintext_length)}
    if location == LOCATION_METADATA:
        return {**fields, **extra}, None
    if location != LOCATION_INSTRUCTION_FILE:
        raise ValueError(f"unknown envelope location {location!r}")
    if env.version == 3:
        on_object = {k: v for k, v in fields.items() if k in V3_OBJECT_ONLY}
        in_file = {k: v for k, v in fields.items() if k not in V3_OBJECT_ONLY}
        return {**on_object, **extra}, in_file
    return dict(extra), fields


def strip_envelope(meta: Mapping[str, str]) -> dict[str, str]:
    """The object's user metadata without any envelope field (to carry over on rewrite)."""
    return {k: v for k, v in _lower(meta).items() if k not in ALL_FIELDS and k != UNENCRYPTED_LENGTH}
