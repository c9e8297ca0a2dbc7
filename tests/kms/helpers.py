"""Test helpers for the KMS: a whole key service in memory, as the data-path tests of the modes need."""

from __future__ import annotations

from s3proxy.kms.audit import MemoryAuditSink
from s3proxy.kms.keystore.memory import MemoryKeystore
from s3proxy.kms.service import KeyService


def memory_data_keys(account_id: str = "000000000000", region: str = "us-east-1") -> KeyService:
    """A KeyService over a MemoryKeystore and a MemoryAuditSink (its `.audit.records` list)."""
    return KeyService.create(MemoryKeystore(), MemoryAuditSink(), root_key=bytes(32), region=region, account_id=account_id)
