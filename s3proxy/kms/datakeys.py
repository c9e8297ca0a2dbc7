"""The DataKeySource seam: everything the S3 data path (modes/, store/, ops/) asks of the KMS, and its answers.

`KeyService` implements it. Each call is audited like the API call it stands for (GenerateDataKey,
Encrypt, Decrypt), as the requesting principal with `kms:ViaService` set to S3, or as the proxy
itself (`service_caller`) for SSE-S3 and the store's own secrets under the hidden service key.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from .caller import Caller


@dataclass(frozen=True)
class DataKey:
    key_arn: str
    plaintext: bytes = field(repr=False)  # empty for the WithoutPlaintext operations
    ciphertext_blob: bytes = field(repr=False)
    key_material_id: str = ""


@dataclass(frozen=True)
class Encrypted:
    ciphertext_blob: bytes = field(repr=False)
    key_arn: str
    encryption_algorithm: str


@runtime_checkable
class DataKeySource(Protocol):
    def generate_data_key(self, caller: Caller, key_id: str, context: Mapping[str, str] | None = None) -> DataKey:
        """A new 256-bit data key and its blob under `key_id` (GenerateDataKey)."""
        ...

    def encrypt(self, caller: Caller, key_id: str, plaintext: bytes, context: Mapping[str, str] | None = None) -> Encrypted:
        """An existing data key wrapped under `key_id` (Encrypt: copies, rewraps, the store's own secrets)."""
        ...

    def decrypt_data_key(self, caller: Caller, blob: bytes, context: Mapping[str, str] | None = None) -> DataKey:
        """The data key inside `blob` (Decrypt); `key_arn` says which key opened it."""
        ...

    def use_bucket_key(self, caller: Caller, key_id: str, key_arn: str, operation: str,
                       context: Mapping[str, str] | None, bucket: str) -> bool:
        """Authorize (and audit) one use of a cached S3 Bucket Key from `key_arn` now; False if `key_id` moved on."""
        ...

    def aws_managed_key(self, caller: Caller, alias: str = "alias/aws/s3") -> str:
        """The ARN of the AWS-managed key behind `alias`, created on first use (SSE-KMS without a key id)."""
        ...

    def service_key(self) -> str:
        """The ARN of the proxy's own key (SSE-S3), created on first use; invisible to API callers."""
        ...

    def is_service_key(self, key_arn: str) -> bool:
        """Whether `key_arn` is one of the proxy's own service keys (what it may unwrap as itself)."""
        ...

    def service_caller(self, request_id: str | None = None) -> Caller:
        """The principal the proxy uses with its service key."""
        ...

    def close(self) -> None:
        """Let go of what the source holds (files, connections); called once, at shutdown."""
        ...
