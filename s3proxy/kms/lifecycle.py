"""The key state table: which operation may run on a key in which state, and the error otherwise.

From the AWS KMS developer guide, "Key states of AWS KMS keys" (key state table and its notes).
Only Enabled, Disabled and PendingDeletion exist here (no imported material, no custom key stores).
"""

from __future__ import annotations

from .errors import DisabledException, KmsError, KMSInvalidStateException

ENABLED = "Enabled"
DISABLED = "Disabled"
PENDING_DELETION = "PendingDeletion"

# crypto operations: fail on Disabled ([1] DisabledException) and PendingDeletion ([3])
CRYPTO = frozenset({
    "Encrypt", "Decrypt", "ReEncrypt", "GenerateDataKey", "GenerateDataKeyWithoutPlaintext",
    "GenerateDataKeyPair", "GenerateDataKeyPairWithoutPlaintext", "Sign", "Verify", "GetPublicKey",
    "GenerateMac", "VerifyMac",
})
# rotation changes: Disabled -> DisabledException, PendingDeletion -> KMSInvalidState
ROTATION = frozenset({"EnableKeyRotation", "DisableKeyRotation", "RotateKeyOnDemand"})
# administration that is refused only while the key waits for deletion ([3])
NOT_WHILE_PENDING = frozenset({
    "ScheduleKeyDeletion", "EnableKey", "DisableKey", "TagResource", "UntagResource",
    "UpdateKeyDescription", "CreateAlias", "CreateGrant",
})
# always allowed whatever the state
ANY_STATE = frozenset({
    "DescribeKey", "GetKeyPolicy", "PutKeyPolicy", "ListKeyPolicies", "ListGrants", "ListRetirableGrants",
    "RetireGrant", "RevokeGrant", "ListResourceTags", "DeleteAlias", "ListAliases", "ListKeys",
    "GetKeyRotationStatus", "ListKeyRotations", "UpdateAlias",
})


def check_state(operation: str, state: str, arn: str) -> None:
    """Raise the error AWS gives for `operation` on a key in `state`; return if it may run."""
    error = state_error(operation, state, arn)
    if error is not None:
        raise error


def state_error(operation: str, state: str, arn: str) -> KmsError | None:
    if operation == "CancelKeyDeletion":
        return None if state == PENDING_DELETION else KMSInvalidStateException(f"{arn} is not pending deletion.")
    if state == ENABLED or operation in ANY_STATE:
        return None
    if state == DISABLED:
        if operation in CRYPTO or operation in ROTATION:
            return DisabledException(f"{arn} is disabled.")
        return None
    if state == PENDING_DELETION:
        return KMSInvalidStateException(f"{arn} is pending deletion.")
    return KMSInvalidStateException(f"{arn} is in state {state}.")
