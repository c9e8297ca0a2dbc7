"""The in-memory twin of the key service: a whole KeyService over a MemoryKeystore and a MemoryAuditSink.

It is the real KeyService (policies, grants, key states, the audit record of every data-key call),
only held in memory: `.audit.records` lists what it audited, which is how a test counts KMS calls.
"""

from __future__ import annotations

from s3proxy.kms.audit import MemoryAuditSink
from s3proxy.kms.keystore.memory import MemoryKeystore
from s3proxy.kms.service import KeyService


def memory_data_keys(account_id: str = "000000000000", region: str = "us-east-1") -> KeyService:
    """A KeyService over a MemoryKeystore and a MemoryAuditSink (its `.audit.records` list)."""
    return KeyService.create(MemoryKeystore(), MemoryAuditSink(), root_key=bytes(32), region=region, account_id=account_id)
