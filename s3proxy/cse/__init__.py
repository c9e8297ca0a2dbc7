"""Client-side encryption compatible with the AWS S3 Encryption Client (formats v1 read, v2 and v3).

The flow: a `Keyring` (keyrings.py: kms+context through any AWS-compatible KMS, AES/GCM with a local
key, RSA-OAEP-SHA1) generates and wraps a per-object data key; `content.py` encrypts the body as a
stream (v3: key-committing AES-GCM via HKDF-SHA512; v2: AES-GCM); `envelope.py` turns what the
reader needs into S3 metadata or an instruction file; `client.py` drives boto3 clients the caller
passes in (PutObject or a multipart upload with parts encrypted as read; GetObject streamed into a
writable and authenticated at the end; rewrap by rewriting only the envelope); `cli.py` serves it as
`s3proxy cse put|get|ls|rewrap`. The server only ever sees ciphertext. See docs/CSE.md.
"""

import importlib
from typing import Any

# name -> submodule; loaded on first use, so the proxy (which reads envelope.py only) never loads
# the client and its boto3/botocore
_EXPORTS = {
    **dict.fromkeys(("CseClient", "GetResult", "ObjectInfo", "PutResult", "RewrapResult"), "client"),
    **dict.fromkeys(("CseError", "DecryptionFailed", "EncryptionContextMismatch", "EnvelopeError", "InstructionFileMissing",
                     "KeyringMismatch", "UnsupportedAlgorithm"), "errors"),
    **dict.fromkeys(("AesGcmKeyring", "Keyring", "KmsKeyring", "RsaOaepKeyring"), "keyrings"),
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 's3proxy.cse' has no attribute {name!r}")
    return getattr(importlib.import_module(f"s3proxy.cse.{module}"), name)


__all__ = [
    "AesGcmKeyring", "CseClient", "CseError", "DecryptionFailed", "EncryptionContextMismatch", "EnvelopeError",
    "GetResult", "InstructionFileMissing", "Keyring", "KeyringMismatch", "KmsKeyring", "ObjectInfo", "PutResult",
    "RewrapResult", "RsaOaepKeyring", "UnsupportedAlgorithm",
]
