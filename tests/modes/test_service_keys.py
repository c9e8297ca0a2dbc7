"""modes.kms_modes: what the proxy unwraps as itself — a blob of any of its own service keys, never another key's."""

from __future__ import annotations

import pytest

from s3proxy.format.errors import IntegrityError
from s3proxy.kms.caller import Caller
from s3proxy.modes.base import ObjectRef
from s3proxy.modes.kms_modes import ARN_CONTEXT_KEY, service_unwrap, service_wrap
from tests.twins.keys import memory_data_keys

REF = ObjectRef("bucket", "some/key")


async def test_a_blob_of_any_service_key_opens_and_one_of_a_customer_key_never_does() -> None:
    kms = memory_data_keys()
    secret, blob = await service_wrap(kms, REF, None)
    assert await service_unwrap(kms, REF, None, blob) == secret
    # a keystore written before the service key had a fixed id may hold a second one, made by a replica
    # that started at the same moment: objects sealed under it are the proxy's own too
    caller = kms.service_caller()
    second = kms.admin._new_record(caller, "SYMMETRIC_DEFAULT", "ENCRYPT_DECRYPT", '{"Version":"2012-10-17","Statement":[]}',
                                   "s3proxy SSE-S3 key", "SERVICE")
    assert second.arn != kms.service_key()
    made = kms.generate_data_key(caller, second.arn, {ARN_CONTEXT_KEY: REF.arn})
    assert await service_unwrap(kms, REF, None, made.ciphertext_blob) == made.plaintext
    # an SSE-KMS object relabelled AES256 at rest: its customer key's blob is not the proxy's to open
    alice = Caller("AKIAALICE", "alice", "000000000000")
    customer = kms.create_key(alice).key_id
    wrapped = kms.generate_data_key(alice, customer, {ARN_CONTEXT_KEY: REF.arn}).ciphertext_blob
    with pytest.raises(IntegrityError):
        await service_unwrap(kms, REF, None, wrapped)
    assert not kms.is_service_key(kms.admin.aws_managed_key(alice))


def test_the_service_key_has_one_id_per_account_so_concurrent_creators_agree() -> None:
    one, other = memory_data_keys(), memory_data_keys()
    assert one.service_key() == other.service_key()  # the same fixed id on two keystores of one account
    assert memory_data_keys(account_id="111111111111").service_key() != one.service_key()
