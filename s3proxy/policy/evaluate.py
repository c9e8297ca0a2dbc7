"""Evaluation: one policy against a request, and a principal's identity policy with a resource's policy together.

`evaluate(policy, request)` walks the statements: an applying Deny wins at once; otherwise the
best Allow (one naming the principal or `*` directly beats one naming only its account). `decide`
combines the two policies as AWS's "policy evaluation logic" does:

- an explicit Deny in either policy denies;
- same account: an Allow in the identity policy, or a resource-policy Allow naming the principal
  itself (or `*`), allows; a resource policy naming only the account delegates to the identity
  policy. KMS key policies are stricter (`resource_must_allow`): the key policy must allow, directly
  or through the account, and through the account the identity policy must allow too;
- across accounts: the resource policy must allow (in any form) and the identity policy too;
- otherwise access is implicitly denied.

Requests carry a mapping of condition keys (normalized by `vocabulary.normalize_key`) to their
values; `global_context` builds the `aws:*` keys every service shares.
"""

from __future__ import annotations

import base64
import datetime as dt
import enum
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from .document import DENY, DIRECT, Policy


def unique_id(arn: str) -> str:
    """A stable IAM-style unique id ("AIDA" + 17 characters) for a user ARN: the value of aws:userid."""
    digest = base64.b32encode(hashlib.sha256(arn.encode()).digest()).decode()
    return "AIDA" + digest[:17]


@dataclass(frozen=True)
class Principal:
    """An IAM user: `arn:aws:iam::<account>:user/<name>`."""

    account: str
    name: str
    arn: str = field(init=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "arn", f"arn:aws:iam::{self.account}:user/{self.name}")

    @property
    def root(self) -> str:
        return f"arn:aws:iam::{self.account}:root"


@dataclass(frozen=True)
class Request:
    """What a decision looks at: who, which action (`service:Name`), on which resource ARN, and the condition keys."""

    principal: Principal
    action: str
    resource: str
    context: Mapping[str, Sequence[str]]


class Match(enum.IntEnum):
    """What one policy says about a request (ordered: a better Allow is larger)."""

    NONE = 0
    ALLOW_VIA_ACCOUNT = 1  # a resource policy naming the principal's account: delegation
    ALLOW = 2
    DENY = 3


def evaluate(policy: Policy, request: Request) -> Match:
    if policy.allows_all:
        return Match.ALLOW
    principal = request.principal
    arn = principal.arn
    best = Match.NONE
    for st in policy.statements:
        who = st.principal_match(principal.account, arn)
        if who is None:
            continue
        if st.effect == DENY:
            if st.applies(request.action, request.resource, request.context) is not False:
                return Match.DENY
        elif who and st.applies(request.action, request.resource, request.context) is True:
            best = max(best, Match.ALLOW if who == DIRECT else Match.ALLOW_VIA_ACCOUNT)
    return best


class Outcome(enum.Enum):
    ALLOWED = "allowed"
    DENIED_BY_IDENTITY = "with an explicit deny in an identity-based policy"
    DENIED_BY_RESOURCE = "with an explicit deny in a resource-based policy"
    NO_IDENTITY_ALLOW = "because no identity-based policy allows the {action} action"
    NO_RESOURCE_ALLOW = "because no resource-based policy allows the {action} action"

    @property
    def allowed(self) -> bool:
        return self is Outcome.ALLOWED

    @property
    def explicit(self) -> bool:
        return self in (Outcome.DENIED_BY_IDENTITY, Outcome.DENIED_BY_RESOURCE)


def decide(request: Request, *, identity: Policy, resource: Policy | None, resource_account: str,
           resource_must_allow: bool = False) -> Outcome:
    """The identity policy of `request.principal` and the resource's policy (None: it has none) together."""
    mine = evaluate(identity, request)
    if mine is Match.DENY:
        return Outcome.DENIED_BY_IDENTITY
    theirs = evaluate(resource, request) if resource is not None else Match.NONE
    if theirs is Match.DENY:
        return Outcome.DENIED_BY_RESOURCE
    same_account = request.principal.account == resource_account
    if same_account and theirs is Match.ALLOW:
        return Outcome.ALLOWED
    if (resource_must_allow or not same_account) and theirs is Match.NONE:
        return Outcome.NO_RESOURCE_ALLOW
    return Outcome.ALLOWED if mine is Match.ALLOW else Outcome.NO_IDENTITY_ALLOW


def denial_message(request: Request, outcome: Outcome) -> str:
    """AWS's words: `User: <arn> is not authorized to perform: <action> on resource: <arn> <why>`."""
    why = outcome.value.format(action=request.action)
    return f"User: {request.principal.arn} is not authorized to perform: {request.action} on resource: {request.resource} {why}"


def time_context(now: float) -> dict[str, tuple[str, ...]]:
    """aws:CurrentTime and aws:EpochTime for the instant `now` (seconds since the epoch)."""
    when = dt.datetime.fromtimestamp(now, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"aws:currenttime": (when,), "aws:epochtime": (str(int(now)),)}


def principal_context(principal: Principal, *, secure: bool | None, source_ip: str | None, region: str | None,
                      user_agent: str | None = None, via_service: str | None = None) -> dict[str, tuple[str, ...]]:
    """The aws:* keys that depend on who calls and how (everything global but the time).

    A value the caller does not know (None) is left out; for the keys every request carries
    (`vocabulary.KeySpec.always`) the engine then evaluates conditions on them fail-closed."""
    out: dict[str, tuple[str, ...]] = {
        "aws:principalarn": (principal.arn,), "aws:principalaccount": (principal.account,),
        "aws:principaltype": ("User",), "aws:username": (principal.name,), "aws:userid": (unique_id(principal.arn),),
        "aws:viaawsservice": ("true" if via_service else "false",),
    }
    if secure is not None:
        out["aws:securetransport"] = ("true" if secure else "false",)
    if source_ip:
        out["aws:sourceip"] = (source_ip,)
    if region:
        out["aws:requestedregion"] = (region,)
    if user_agent:
        out["aws:useragent"] = (user_agent,)
    return out
