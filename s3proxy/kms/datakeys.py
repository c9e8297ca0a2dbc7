"""The DataKeySource seam: the only things the S3 data path (SSE-S3 / SSE-KMS) asks of the KMS.

`KeyService` implements it; `memory_data_keys()` builds a twin over an in-memory keystore and
audit list for tests of the modes. Each call is audited like the API call it stands for
(GenerateDataKey / Decrypt), as the requesting principal, with `kms:ViaService` set to S3.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Protocol, runtime_checkable

from .caller import Caller


@dataclass(frozen=True)
class DataKey:
    key_arn: str
    plaintext: bytes = field(repr=False)  # empty for the WithoutPlaintext operations
    ciphertext_blob: bytes = field(repr=False)
    key_material_id: str = ""


@runtime_checkable
class DataKeySource(Protocol):
    def generate_data_key(self, caller: Caller, key_id: str, context: Mapping[str, str] | None = None) -> DataKey: ...

    def decrypt_data_key(self, caller: Caller, blob: bytes, context: Mapping[str, str] | None = None) -> DataKey: ...

    def resolve_key(self, caller: Caller, key_id: str) -> str: ...

    def aws_managed_key(self, caller: Caller, alias: str = "alias/aws/s3") -> str: ...

    def service_key(self) -> str: ...


def memory_data_keys(account_id: str = "000000000000", region: str = "us-east-1"):  # type: ignore[no-untyped-def]
    """A KeyService over a MemoryKeystore and a MemoryAuditSink (its `.audit.records` list)."""
    from .audit import MemoryAuditSink
    from .keystore.memory import MemoryKeystore
    from .service import KeyService

    return KeyService.create(MemoryKeystore(), MemoryAuditSink(), root_key=bytes(32), region=region, account_id=account_id)
