"""Whether a resource policy is public, as S3's Block Public Access judges it, and the policy without its public part.

S3 calls a bucket policy public unless each of its Allow statements either names fixed principals
(accounts, user ARNs: never `*`) or is held to fixed values of a key that pins who or where:
`aws:SourceIp` to CIDRs no wider than /8 (IPv4) or /32 (IPv6), `aws:PrincipalAccount`,
`aws:PrincipalArn`, `aws:userid` or `s3:x-amz-server-side-encryption-aws-kms-key-id` to values
without a wildcard or a policy variable, under a positive operator that is not `...IfExists`
(a condition that holds when the key is absent pins nothing). A statement that could not be read
(a stored policy) grants nothing and is not counted.

BlockPublicPolicy refuses to store a public policy; RestrictPublicBuckets makes its public
statements grant nothing to anyone outside the bucket owner's account (`without_public`).
"""

from __future__ import annotations

import ipaddress

from .conditions import Condition
from .document import ALLOW, Policy, Statement
from .patterns import Variable

_PINNING_KEYS = frozenset({"aws:principalaccount", "aws:principalarn", "aws:userid",
                           "s3:x-amz-server-side-encryption-aws-kms-key-id"})
_FIXED_OPERATORS = frozenset({"StringEquals", "StringEqualsIgnoreCase", "StringLike", "ArnLike"})


def _fixed(condition: Condition) -> bool:
    op = condition.op
    if op.negated or op.if_exists or op.qualifier or not condition.values:
        return False
    if condition.key == "aws:sourceip":
        return op.base == "IpAddress" and all(
            v.prefixlen >= (8 if isinstance(v, ipaddress.IPv4Network) else 32) for v in condition.values)
    if condition.key not in _PINNING_KEYS or op.base not in _FIXED_OPERATORS:
        return False
    return all(not any(isinstance(part, Variable) for part in v.parts) and "*" not in v.text and "?" not in v.text
               for v in condition.values)


def is_public_statement(st: Statement) -> bool:
    if st.effect != ALLOW or st.principal_unknown or st.principals is None:
        return False
    if not (st.principals.anyone or st.not_principal):
        return False
    return not any(_fixed(c) for c in st.conditions)


def is_public(policy: Policy) -> bool:
    return any(is_public_statement(st) for st in policy.statements)


def without_public(policy: Policy) -> Policy:
    """The policy with its public Allow statements taken out (its Denies all kept)."""
    kept = tuple(st for st in policy.statements if not is_public_statement(st))
    return Policy(kept, policy.version, policy.text, policy.problems)
