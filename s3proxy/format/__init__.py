"""The at-rest format: chunked AES-256-GCM (C2SP chunked encryption, raw mode) and everything that
authenticates what is stored beside it, as pure functions, no I/O.

Flow (docs/FORMAT.md is the spec; sections cited as §N):
  * the modes layer makes a random 32-byte data key per object / multipart upload and wraps it;
  * `chunks` derives each part's key and base nonce from the data key, the part number, the chunk
    size and an optional context, and seals/opens chunk i (nonce = base XOR i; final = short);
  * `sizes` maps plaintext sizes to stored sizes and back; `ranges` maps a plaintext byte range to
    the one stored range to fetch plus per-part opening instructions;
  * `envelope` names every metadata key and seals/opens the format's fields under an HMAC keyed
    from the data key (which also commits to the key); the version field selects v1 or v2 rules;
  * `trailer` seals the values a PUT learns after the body (fixed size, after the final chunk)
    and the checksums known before it, both under the data key;
  * `keys` derives IK_meta / IK_records / IK_audit from the keystore's integrity key and holds
    the one salted sealing construction;
  * `metadata` binds every field the proxy returns (headers, user metadata, ETag, checksums, size)
    to the object's name under IK_meta, and seals the SSE-S3 ETag;
  * `records` seals the proxy's internal records under IK_records, bound to name and bucket;
  * `auditchain` MACs and verifies the KMS audit log under IK_audit;
  * `s3proxy.streams` runs the chunks over async byte streams.
Every failure is `IntegrityError`, which says nothing about which check failed (its `field` is
for the proxy's log only).
"""

from s3proxy.format.chunks import DEFAULT_CHUNK_SIZE, TAG_SIZE, PartCipher
from s3proxy.format.envelope import Envelope, open_envelope, seal_envelope, upgrade_envelope
from s3proxy.format.errors import IntegrityError
from s3proxy.format.keys import IntegrityKeys, integrity_keys
from s3proxy.format.metadata import open_metadata, seal_metadata
from s3proxy.format.ranges import RangePlan, Segment, plan_object, plan_range
from s3proxy.format.records import open_record, seal_record
from s3proxy.format.sizes import ciphertext_size, plaintext_size
from s3proxy.format.trailer import TRAILER_SIZE, TrailerValues, open_trailer, seal_trailer

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "TAG_SIZE",
    "TRAILER_SIZE",
    "Envelope",
    "IntegrityError",
    "IntegrityKeys",
    "PartCipher",
    "RangePlan",
    "Segment",
    "TrailerValues",
    "ciphertext_size",
    "integrity_keys",
    "open_envelope",
    "open_metadata",
    "open_record",
    "open_trailer",
    "plaintext_size",
    "plan_object",
    "plan_range",
    "seal_envelope",
    "seal_metadata",
    "seal_record",
    "seal_trailer",
    "upgrade_envelope",
]
