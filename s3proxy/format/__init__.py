"""The at-rest format: chunked AES-256-GCM (C2SP chunked encryption, raw mode) as pure functions, no I/O.

Flow (docs/FORMAT.md is the spec; sections cited as §N):
  * the modes layer makes a random 32-byte data key per object / multipart upload and wraps it;
  * `chunks` derives each part's key and base nonce from the data key, the part number, the chunk
    size and an optional context, and seals/opens chunk i (nonce = base XOR i; final = short);
  * `sizes` maps plaintext sizes to stored sizes and back; `ranges` maps a plaintext byte range to
    the one stored range to fetch plus per-part opening instructions;
  * `envelope` names every metadata key and seals/opens the format's fields under an HMAC keyed
    from the data key (which also commits to the key);
  * `s3proxy.streams` runs the chunks over async byte streams.
Every failure is `IntegrityError`, which says nothing about which check failed.
"""

from s3proxy.format.chunks import DEFAULT_CHUNK_SIZE, TAG_SIZE, PartCipher
from s3proxy.format.envelope import Envelope, open_envelope, seal_envelope
from s3proxy.format.errors import IntegrityError
from s3proxy.format.ranges import RangePlan, Segment, plan_object, plan_range
from s3proxy.format.sizes import ciphertext_size, plaintext_size

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "TAG_SIZE",
    "Envelope",
    "IntegrityError",
    "PartCipher",
    "RangePlan",
    "Segment",
    "ciphertext_size",
    "open_envelope",
    "plaintext_size",
    "plan_object",
    "plan_range",
    "seal_envelope",
]
