"""The policy engine, one for S3 and KMS: AWS's policy grammar and its evaluation. Pure: no I/O, no clock.

    parse(text, grammar) -> Policy          strict: PolicyError unless every element is exact
    parse_stored(text, grammar) -> Policy   a policy stored earlier: unreadable parts fail closed
    decide(Request, identity=, resource=, resource_account=, resource_must_allow=) -> Outcome
    evaluate(Policy, Request) -> Match      one policy alone
    denial_message(Request, Outcome)        AWS's "User: ... is not authorized to perform: ..." text

Grammars: KEY_POLICY (KMS key policies), IDENTITY_POLICY (a user's policy, S3 and KMS actions),
BUCKET_POLICY (S3 bucket policies). A Request names a Principal, an action (`kms:Decrypt`,
`s3:GetObject`), a resource ARN, and its condition keys: `global_context` and `time_context`
build the `aws:*` ones; each service adds its own (`kms:EncryptionContext:<k>`, `s3:prefix`, ...)
under the names `normalize_key` gives.
"""

from __future__ import annotations

from .document import ALLOW, DENY, Policy, allows_everything_on, full_access, parse, parse_stored
from .errors import PolicyError
from .evaluate import (
    Match,
    Outcome,
    Principal,
    Request,
    decide,
    denial_message,
    evaluate,
    principal_context,
    time_context,
    unique_id,
)
from .vocabulary import BUCKET_POLICY, IDENTITY_POLICY, KEY_POLICY, Grammar, normalize_key

FULL_ACCESS = full_access()

__all__ = [
    "ALLOW", "BUCKET_POLICY", "DENY", "FULL_ACCESS", "IDENTITY_POLICY", "KEY_POLICY", "Grammar", "Match", "Outcome",
    "Policy", "PolicyError", "Principal", "Request", "allows_everything_on", "decide", "denial_message", "evaluate",
    "normalize_key", "parse", "parse_stored", "principal_context", "time_context", "unique_id",
]
