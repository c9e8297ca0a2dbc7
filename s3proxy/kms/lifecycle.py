"""The key state table: which operation may run on a key in which state, and the error otherwise.

From the AWS KMS developer guide, "Key states of AWS KMS keys" (key state table and its notes).
Enabled, Disabled and PendingDeletion are stored; PendingImport is stored too (a key of Origin
EXTERNAL without its material: never imported, deleted, or expired); Unavailable is never stored:
it is how a key in a disconnected custom key store shows (`effective_state`).
"""

from __future__ import annotations

from .errors import DisabledException, KmsError, KMSInvalidStateException

ENABLED = "Enabled"
DISABLED = "Disabled"
PENDING_DELETION = "PendingDeletion"
PENDING_IMPORT = "PendingImport"
UNAVAILABLE = "Unavailable"

# crypto operations: fail on Disabled ([1] DisabledException) and PendingDeletion ([3])
CRYPTO = frozenset({
    "Encrypt", "Decrypt", "ReEncrypt", "GenerateDataKey", "GenerateDataKeyWithoutPlaintext",
    "GenerateDataKeyPair", "GenerateDataKeyPairWithoutPlaintext", "Sign", "Verify", "GetPublicKey",
    "GenerateMac", "VerifyMac", "DeriveSharedSecret",
})
# imported key material: refused while the key waits for deletion, allowed in every other state
IMPORT = frozenset({"GetParametersForImport", "ImportKeyMaterial", "DeleteImportedKeyMaterial"})
# rotation changes: Disabled -> DisabledException, PendingDeletion -> KMSInvalidState
ROTATION = frozenset({"EnableKeyRotation", "DisableKeyRotation", "RotateKeyOnDemand"})
# administration that is refused only while the key waits for deletion ([3])
NOT_WHILE_PENDING = frozenset({
    "ScheduleKeyDeletion", "EnableKey", "DisableKey", "TagResource", "UntagResource",
    "UpdateKeyDescription", "CreateAlias", "CreateGrant", *IMPORT,
})
# always allowed whatever the state
ANY_STATE = frozenset({
    "DescribeKey", "GetKeyPolicy", "PutKeyPolicy", "ListKeyPolicies", "ListGrants", "ListRetirableGrants",
    "RetireGrant", "RevokeGrant", "ListResourceTags", "DeleteAlias", "ListAliases", "ListKeys",
    "GetKeyRotationStatus", "ListKeyRotations", "UpdateAlias",
})


def effective_state(state: str, store_connected: bool = True) -> str:
    """The state a key shows: a key in a disconnected custom key store is Unavailable unless it waits for deletion."""
    return state if store_connected or state == PENDING_DELETION else UNAVAILABLE


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
    if state == PENDING_IMPORT:
        if operation in CRYPTO or operation in ROTATION or operation in ("EnableKey", "DisableKey"):
            return KMSInvalidStateException(f"{arn} is pending import.")
        return None
    if state == UNAVAILABLE:
        if operation in CRYPTO or operation in ROTATION or operation in IMPORT:
            return KMSInvalidStateException(f"{arn} is unavailable: its custom key store is not connected.")
        return None
    return KMSInvalidStateException(f"{arn} is in state {state}.")
