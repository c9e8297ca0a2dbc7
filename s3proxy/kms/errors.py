"""The KMS error tree: every error the key service raises, with its AWS `__type`, HTTP status and message.

The JSON API renders a KmsError as `{"__type": code, "message": text}` with `status`; the S3 data
path maps them to `KMS.<code>` S3 errors. Messages never carry key material or plaintext.
"""

from __future__ import annotations

from typing import ClassVar


class KmsError(Exception):
    """An error with an AWS KMS wire form; subclasses set code, status and a default message."""

    code: ClassVar[str] = "KMSInternalException"
    status: ClassVar[int] = 500
    message: ClassVar[str] = "An internal error occurred."

    def __init__(self, message: str | None = None) -> None:
        self.text = message or type(self).message
        super().__init__(self.text)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.code}, {self.status}, {self.text!r})"


def _error(name: str, code: str, status: int, message: str) -> type[KmsError]:
    return type(name, (KmsError,), {"code": code, "status": status, "message": message, "__module__": __name__})


# (class, __type, status, default message). Statuses as the AWS KMS API answers them: every
# client fault is 400 (AccessDenied included), service faults 500 (KMSInternal) or 503 (unavailable).
KMSInternalException = KmsError
NotFoundException = _error("NotFoundException", "NotFoundException", 400, "The request was rejected because the specified entity or resource could not be found.")
DisabledException = _error("DisabledException", "DisabledException", 400, "The request was rejected because the specified KMS key is not enabled.")
KMSInvalidStateException = _error("KMSInvalidStateException", "KMSInvalidStateException", 400, "The request was rejected because the state of the specified resource is not valid for this request.")
InvalidCiphertextException = _error("InvalidCiphertextException", "InvalidCiphertextException", 400, "")
IncorrectKeyException = _error("IncorrectKeyException", "IncorrectKeyException", 400, "The key ID in the request does not identify a CMK that can perform this operation.")
InvalidKeyUsageException = _error("InvalidKeyUsageException", "InvalidKeyUsageException", 400, "The request was rejected because the specified KeySpec or KeyUsage value is not valid for this key.")
AccessDeniedException = _error("AccessDeniedException", "AccessDeniedException", 400, "Access denied.")
ValidationException = _error("ValidationException", "ValidationException", 400, "The input fails to satisfy the constraints specified by the service.")
AlreadyExistsException = _error("AlreadyExistsException", "AlreadyExistsException", 400, "The request was rejected because it attempted to create a resource that already exists.")
UnsupportedOperationException = _error("UnsupportedOperationException", "UnsupportedOperationException", 400, "The request was rejected because a specified parameter is not supported or a specified resource is not valid for this operation.")
LimitExceededException = _error("LimitExceededException", "LimitExceededException", 400, "The request was rejected because a quota was exceeded.")
InvalidArnException = _error("InvalidArnException", "InvalidArnException", 400, "The request was rejected because a specified ARN, or an ARN in a key policy, is not valid.")
InvalidAliasNameException = _error("InvalidAliasNameException", "InvalidAliasNameException", 400, "The request was rejected because the specified alias name is not valid.")
InvalidGrantIdException = _error("InvalidGrantIdException", "InvalidGrantIdException", 400, "The request was rejected because the specified GrantId is not valid.")
InvalidGrantTokenException = _error("InvalidGrantTokenException", "InvalidGrantTokenException", 400, "The request was rejected because the specified grant token is not valid.")
MalformedPolicyDocumentException = _error("MalformedPolicyDocumentException", "MalformedPolicyDocumentException", 400, "The request was rejected because the specified policy is not syntactically or semantically correct.")
TagException = _error("TagException", "TagException", 400, "The request was rejected because one or more tags are not valid.")
KMSInvalidSignatureException = _error("KMSInvalidSignatureException", "KMSInvalidSignatureException", 400, "The request was rejected because the signature verification failed.")
KMSInvalidMacException = _error("KMSInvalidMacException", "KMSInvalidMacException", 400, "The request was rejected because the HMAC verification failed.")
UnknownOperationException = _error("UnknownOperationException", "UnknownOperationException", 400, "The requested operation is not supported.")
SerializationException = _error("SerializationException", "SerializationException", 400, "The request body could not be parsed as JSON.")
IncorrectKeyMaterialException = _error("IncorrectKeyMaterialException", "IncorrectKeyMaterialException", 400, "The key material in the request is invalid, or is not the key material imported into this KMS key before.")
ExpiredImportTokenException = _error("ExpiredImportTokenException", "ExpiredImportTokenException", 400, "The import token has expired: call GetParametersForImport again and wrap the key material under the new public key.")
InvalidImportTokenException = _error("InvalidImportTokenException", "InvalidImportTokenException", 400, "The import token is invalid, or belongs to another KMS key or to an earlier GetParametersForImport call.")
KeyUnavailableException = _error("KeyUnavailableException", "KeyUnavailableException", 500, "The KMS key is not available now (its key store cannot be reached); retry later.")
CustomKeyStoreNotFoundException = _error("CustomKeyStoreNotFoundException", "CustomKeyStoreNotFoundException", 400, "No custom key store has this name or ID.")
CustomKeyStoreNameInUseException = _error("CustomKeyStoreNameInUseException", "CustomKeyStoreNameInUseException", 400, "Another custom key store of this account has this name.")
CustomKeyStoreInvalidStateException = _error("CustomKeyStoreInvalidStateException", "CustomKeyStoreInvalidStateException", 400, "The custom key store's connection state does not allow this request.")
CustomKeyStoreHasCMKsException = _error("CustomKeyStoreHasCMKsException", "CustomKeyStoreHasCMKsException", 400, "The custom key store still holds KMS keys.")
CloudHsmClusterNotActiveException = _error("CloudHsmClusterNotActiveException", "CloudHsmClusterNotActiveException", 400, "The key store's PKCS#11 token cannot be reached.")
CloudHsmClusterInvalidConfigurationException = _error("CloudHsmClusterInvalidConfigurationException", "CloudHsmClusterInvalidConfigurationException", 400, "The key store's PKCS#11 token does not accept this configuration.")
CloudHsmClusterInUseException = _error("CloudHsmClusterInUseException", "CloudHsmClusterInUseException", 400, "The PKCS#11 token is already the token of another custom key store.")
CloudHsmClusterNotFoundException = _error("CloudHsmClusterNotFoundException", "CloudHsmClusterNotFoundException", 400, "No PKCS#11 token matches the CloudHsmClusterId.")
CloudHsmClusterNotRelatedException = _error("CloudHsmClusterNotRelatedException", "CloudHsmClusterNotRelatedException", 400, "The PKCS#11 token does not hold the key material of this custom key store's KMS keys.")
IncorrectTrustAnchorException = _error("IncorrectTrustAnchorException", "IncorrectTrustAnchorException", 400, "The trust anchor certificate is not a PEM-encoded X.509 certificate.")
DependencyTimeoutException = _error("DependencyTimeoutException", "DependencyTimeoutException", 503, "A service this KMS depends on did not answer in time; retry later.")
DryRunOperationException = _error("DryRunOperationException", "DryRunOperationException", 412, "The request would have succeeded, but the DryRun option is set.")


_HIDDEN = object()


def member_error(member: str, must: str, value: object = _HIDDEN) -> KmsError:
    """The ValidationException AWS answers when request member `member` breaks a constraint ("Member must <must>").

    The message shows `value` quoted, None as `null`, and nothing when no value is given (blobs, messages).
    """
    shown = "" if value is _HIDDEN else " null" if value is None else f" '{value}'"
    return ValidationException(
        f"1 validation error detected: Value{shown} at '{member}' failed to satisfy constraint: Member must {must}"
    )


class KeystoreConflict(Exception):
    """A compare-and-swap on the keystore lost: the entry changed since it was read."""


class RootKeyError(Exception):
    """The root key file is missing, unreadable, too widely readable, or does not open this keystore."""


class Pkcs11Error(Exception):
    """A PKCS#11 configuration that cannot work: a bad URI, no such token or key, a wrong PIN, a missing library.
    `reason` says which, for callers that answer differently: "token" (no such token), "pin" (wrong PIN),
    "locked" (the user PIN is locked), or "" (anything else)."""

    def __init__(self, message: str, reason: str = "") -> None:
        super().__init__(message)
        self.reason = reason
