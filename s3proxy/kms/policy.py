"""Key policies and grants as the KMS keeps them: the default policies, strict parsing on put, grants.

Key policies are evaluated by the one policy engine (`s3proxy.policy`, grammar KEY_POLICY): AWS's
grammar with its condition operators, the global `aws:*` keys and the `kms:*` keys this KMS
supplies. A policy is refused on CreateKey/PutKeyPolicy (MalformedPolicyDocumentException) unless
every element is one the engine evaluates exactly; grants match on the grantee and the operation
and enforce their encryption-context constraints.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..policy import KEY_POLICY, Policy, PolicyError, parse
from .errors import MalformedPolicyDocumentException

GRANT_OPERATIONS = (
    "Decrypt", "Encrypt", "GenerateDataKey", "GenerateDataKeyWithoutPlaintext", "ReEncryptFrom",
    "ReEncryptTo", "Sign", "Verify", "GetPublicKey", "CreateGrant", "RetireGrant", "DescribeKey",
    "GenerateDataKeyPair", "GenerateDataKeyPairWithoutPlaintext", "GenerateMac", "VerifyMac",
    "DeriveSharedSecret",
)


def default_policy(account_id: str, principals: Iterable[str]) -> str:
    """The policy a new key gets: full access for its creator and the configured administrators."""
    return json.dumps({
        "Version": "2012-10-17",
        "Id": "key-default-1",
        "Statement": [{
            "Sid": "Enable creator and administrator permissions",
            "Effect": "Allow",
            "Principal": {"AWS": sorted(set(principals))},
            "Action": "kms:*",
            "Resource": "*",
        }],
    }, indent=2)


def aws_managed_policy(account_id: str, via_service: str) -> str:
    """AWS-managed key policy: any user of the account may use it through the service, and read it."""
    return json.dumps({
        "Version": "2012-10-17",
        "Id": "auto-s3-2",
        "Statement": [
            {"Sid": "Allow access through S3 for all principals in the account that are authorized to use S3",
             "Effect": "Allow", "Principal": {"AWS": "*"},
             "Action": ["kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:DescribeKey"],
             "Resource": "*",
             "Condition": {"StringEquals": {"kms:CallerAccount": account_id, "kms:ViaService": via_service}}},
            {"Sid": "Allow direct access to key metadata to the account", "Effect": "Allow",
             "Principal": {"AWS": f"arn:aws:iam::{account_id}:root"},
             "Action": ["kms:Describe*", "kms:Get*", "kms:List*"], "Resource": "*"},
        ],
    }, indent=2)


def parse_key_policy(text: str) -> Policy:
    """A key policy as CreateKey and PutKeyPolicy accept it; MalformedPolicyDocumentException otherwise."""
    if not isinstance(text, str):
        raise MalformedPolicyDocumentException("The policy must be a string.")
    try:
        return parse(text, KEY_POLICY)
    except PolicyError as exc:
        raise MalformedPolicyDocumentException(str(exc)) from None


@dataclass(frozen=True)
class Grant:
    grant_id: str
    token: str
    key_id: str
    grantee: str
    operations: tuple[str, ...]
    created: float
    issuing_account: str
    name: str | None = None
    retiring: str | None = None
    context_equals: Mapping[str, str] | None = None
    context_subset: Mapping[str, str] | None = None
    extra: Mapping[str, str] = field(default_factory=dict)

    def covers(self, operation: str, context: Mapping[str, str] | None) -> bool:
        """Whether the grant allows `operation` with this encryption context (its grantee is checked by the caller)."""
        if operation not in self.operations:
            return False
        ctx = dict(context or {})
        if self.context_equals is not None and ctx != dict(self.context_equals):
            return False
        if self.context_subset is not None and any(ctx.get(k) != v for k, v in self.context_subset.items()):
            return False
        return True

    def to_json(self) -> dict[str, Any]:
        return {
            "GrantId": self.grant_id, "Token": self.token, "KeyId": self.key_id, "GranteePrincipal": self.grantee,
            "Operations": list(self.operations), "CreationDate": self.created, "IssuingAccount": self.issuing_account,
            "Name": self.name, "RetiringPrincipal": self.retiring,
            "ContextEquals": self.context_equals, "ContextSubset": self.context_subset,
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Grant:
        return cls(
            d["GrantId"], d["Token"], d["KeyId"], d["GranteePrincipal"], tuple(d["Operations"]), d["CreationDate"],
            d["IssuingAccount"], d.get("Name"), d.get("RetiringPrincipal"), d.get("ContextEquals"), d.get("ContextSubset"),
        )
