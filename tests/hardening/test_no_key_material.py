"""Keys are sacred: no plaintext key material in logs, the audit log, backend metadata or errors."""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import uuid

import pytest
from botocore.exceptions import ClientError


def _forms(key: bytes) -> list[str]:
    return [base64.b64encode(key).decode(), key.hex(), key.hex().upper()]


def test_workload_leaves_no_key_material_in_logs_audit_or_backend(moto_proxy, caplog):
    s3, kms = moto_proxy.client(), moto_proxy.client("kms")
    bucket = f"k-{uuid.uuid4().hex[:12]}"
    customer_key = os.urandom(32)
    with caplog.at_level(logging.DEBUG, logger="s3proxy"):
        s3.create_bucket(Bucket=bucket)
        key_id = kms.create_key()["KeyMetadata"]["KeyId"]
        data_key = kms.generate_data_key(KeyId=key_id, KeySpec="AES_256")
        s3.put_object(Bucket=bucket, Key="c", Body=b"secret body", SSECustomerAlgorithm="AES256", SSECustomerKey=customer_key)
        s3.put_object(Bucket=bucket, Key="k", Body=b"kms body", ServerSideEncryption="aws:kms", SSEKMSKeyId=key_id)
        with pytest.raises(ClientError):  # an error path, with the key in the request
            s3.get_object(Bucket=bucket, Key="k", SSECustomerAlgorithm="AES256", SSECustomerKey=customer_key)
        with pytest.raises(ClientError):
            s3.get_object(Bucket=bucket, Key="c", SSECustomerAlgorithm="AES256", SSECustomerKey=os.urandom(32))
    secrets = _forms(customer_key) + _forms(data_key["Plaintext"]) + [moto_proxy.secret_key]
    logged = "\n".join(r.getMessage() for r in caplog.records)
    audit = (moto_proxy.data_dir / "kms" / "audit.log").read_text()
    backend = moto_proxy.backend_client()
    stored = "\n".join(
        f"{k}={v}" for key in ("c", "k") for k, v in backend.head_object(Bucket=bucket, Key=key)["Metadata"].items()
    )
    for secret in secrets:
        assert secret not in logged
        assert secret not in audit
        assert secret not in stored
    # not even the customer key's MD5 (an unsalted fingerprint) is kept at rest
    assert base64.b64encode(hashlib.md5(customer_key).digest()).decode() not in stored
    assert b"secret body" not in backend.get_object(Bucket=bucket, Key="c")["Body"].read()
