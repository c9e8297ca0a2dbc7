"""Key policies and grants: does this caller may perform this kms: action on this key?

Key policies use AWS's JSON grammar (IAM policy reference: "Policy evaluation logic", "Condition
operators"): Statement[] with Effect Allow|Deny, Principal ("*", {"AWS": arn | [arns]}),
Action / NotAction with `*` and `?` wildcards, Condition. An explicit Deny wins; otherwise an
Allow in the policy or a grant allows; otherwise access is denied.

There is no IAM here, so a principal of the account root (`arn:aws:iam::<acct>:root` or the bare
account id) matches every user of that account: in AWS it delegates to IAM policies, which we
do not have.

Supported condition keys: `kms:EncryptionContext:<key>`, `kms:EncryptionContextKeys`,
`kms:CallerAccount`, `kms:ViaService`, `kms:GrantOperations`, `aws:username`, `aws:PrincipalArn`,
`aws:SourceIp`. Operators: String(Not)Equals(IgnoreCase), String(Not)Like, Null, Bool, each with
the `ForAnyValue:` / `ForAllValues:` prefixes and the `IfExists` suffix.
"""

from __future__ import annotations

import fnmatch
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .caller import Caller
from .errors import MalformedPolicyDocumentException

ALLOW, DENY = "Allow", "Deny"
POLICY_MAX = 32768
GRANT_OPERATIONS = (
    "Decrypt", "Encrypt", "GenerateDataKey", "GenerateDataKeyWithoutPlaintext", "ReEncryptFrom",
    "ReEncryptTo", "Sign", "Verify", "GetPublicKey", "CreateGrant", "RetireGrant", "DescribeKey",
    "GenerateDataKeyPair", "GenerateDataKeyPairWithoutPlaintext", "GenerateMac", "VerifyMac",
    "DeriveSharedSecret",
)
_OPERATORS = {
    "StringEquals", "StringNotEquals", "StringEqualsIgnoreCase", "StringNotEqualsIgnoreCase",
    "StringLike", "StringNotLike", "Null", "Bool",
}


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


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def parse_policy(text: str) -> dict[str, Any]:
    """Parse and check a policy document; MalformedPolicyDocumentException if it is not one we can evaluate."""
    if len(text) > POLICY_MAX:
        raise MalformedPolicyDocumentException("The policy is larger than 32 KB.")
    try:
        doc = json.loads(text)
    except ValueError:
        raise MalformedPolicyDocumentException("The policy is not valid JSON.") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("Statement"), (list, dict)):
        raise MalformedPolicyDocumentException("The policy must have a Statement.")
    for st in _as_list(doc["Statement"]):
        if not isinstance(st, dict) or st.get("Effect") not in (ALLOW, DENY):
            raise MalformedPolicyDocumentException("Each statement needs an Effect of Allow or Deny.")
        if "Principal" not in st or ("Action" not in st and "NotAction" not in st):
            raise MalformedPolicyDocumentException("Each statement needs a Principal and an Action.")
        for op, body in (st.get("Condition") or {}).items():
            base = op.split(":", 1)[-1].removesuffix("IfExists")
            if base not in _OPERATORS or not isinstance(body, dict):
                raise MalformedPolicyDocumentException(f"Condition operator {op} is not supported.")
    return doc


@dataclass(frozen=True)
class Request:
    """What a policy decision looks at."""

    caller: Caller
    action: str  # "kms:Encrypt"
    context: Mapping[str, str] | None = None
    grant_operations: tuple[str, ...] = ()

    def values(self, key: str) -> list[str] | None:
        """The condition key's values for this request; None when the key is absent."""
        k = key.lower()
        c = self.caller
        if k.startswith("kms:encryptioncontext:"):
            name = key.split(":", 2)[2]
            ctx = self.context or {}
            return [ctx[name]] if name in ctx else None
        if k == "kms:encryptioncontextkeys":
            return list(self.context) if self.context else None
        if k == "kms:grantoperations":
            return list(self.grant_operations) or None
        simple = {
            "kms:calleraccount": c.account_id, "kms:viaservice": c.via_service, "aws:username": c.user_name,
            "aws:principalarn": c.arn, "aws:sourceip": c.source_ip,
        }.get(k)
        return [simple] if simple is not None else None


def _principal_matches(principal: Any, caller: Caller) -> bool:
    if principal == "*":
        return True
    if isinstance(principal, dict):
        names = _as_list(principal.get("AWS", []))
    else:
        names = _as_list(principal)
    for name in names:
        if name in ("*", caller.arn, caller.account_root, caller.account_id):
            return True
    return False


def _action_matches(patterns: Any, action: str) -> bool:
    return any(fnmatch.fnmatchcase(action.lower(), str(p).lower()) for p in _as_list(patterns))


def _compare(base: str, have: str, want: str) -> bool:
    if base in ("StringEquals", "StringNotEquals"):
        return have == want
    if base in ("StringEqualsIgnoreCase", "StringNotEqualsIgnoreCase"):
        return have.lower() == want.lower()
    if base in ("StringLike", "StringNotLike"):
        return re.fullmatch(fnmatch.translate(want).removesuffix(r"\Z"), have) is not None
    if base == "Bool":
        return have.lower() == str(want).lower()
    return False


def _condition_holds(op: str, key: str, wanted: Any, request: Request) -> bool:
    qualifier, _, base = op.rpartition(":")
    if_exists = base.endswith("IfExists")
    base = base.removesuffix("IfExists")
    wants = [str(w) if not isinstance(w, bool) else str(w).lower() for w in _as_list(wanted)]
    have = request.values(key)
    if base == "Null":
        return (have is None) == (wants[0].lower() == "true")
    negated = "Not" in base
    if have is None:
        return if_exists or negated or qualifier == "ForAllValues"
    def one(value: str) -> bool:
        hit = any(_compare(base, value, w) for w in wants)
        return not hit if negated else hit
    if qualifier == "ForAllValues":
        return all(one(v) for v in have)
    if qualifier == "ForAnyValue":
        return any(one(v) for v in have)
    return one(have[0]) if len(have) == 1 else any(one(v) for v in have)


def evaluate(doc: Mapping[str, Any], request: Request) -> str | None:
    """ALLOW, DENY, or None (no statement applies)."""
    decision = None
    for st in _as_list(doc.get("Statement", [])):
        if not _principal_matches(st.get("Principal"), request.caller):
            continue
        if "Action" in st and not _action_matches(st["Action"], request.action):
            continue
        if "NotAction" in st and _action_matches(st["NotAction"], request.action):
            continue
        conditions = st.get("Condition") or {}
        if not all(_condition_holds(op, k, v, request) for op, body in conditions.items() for k, v in body.items()):
            continue
        if st["Effect"] == DENY:
            return DENY
        decision = ALLOW
    return decision


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

    def allows(self, caller: Caller, operation: str, context: Mapping[str, str] | None) -> bool:
        if caller.arn != self.grantee or operation not in self.operations:
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
