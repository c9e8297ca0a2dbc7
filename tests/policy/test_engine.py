"""The policy engine (s3proxy.policy) alone: grammar, condition operators, evaluation, fail-closed reading.

Tables, one row per case, each commented with why it matters; then hypothesis properties (a Deny
never grants, an unknown key never grants, order does not matter); then AWS's documented example
key policies (default, console, cross-account, AWS-managed, conditions) with the decisions AWS
documents for them. The engine is pure, so every test here runs in microseconds.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from s3proxy.policy import (
    BUCKET_POLICY,
    FULL_ACCESS,
    IDENTITY_POLICY,
    KEY_POLICY,
    Match,
    Outcome,
    Policy,
    PolicyError,
    Principal,
    Request,
    allows_everything_on,
    decide,
    denial_message,
    evaluate,
    normalize_key,
    parse,
    parse_stored,
    principal_context,
    time_context,
)
from s3proxy.policy.conditions import Condition, parse_operator
from s3proxy.policy.vocabulary import IDENTITY_POLICY as _IDENTITY

A, B = "111122223333", "444455556666"
ALICE, BOB, CAROL = Principal(A, "alice"), Principal(A, "bob"), Principal(B, "carol")
KEY = f"arn:aws:kms:us-east-1:{A}:key/1234abcd-12ab-34cd-56ef-1234567890ab"
NOW = 1_650_000_000.0  # 2022-04-15


def doc(*statements: dict[str, Any], version: str = "2012-10-17") -> str:
    return json.dumps({"Version": version, "Statement": list(statements)})


def allow(**extra: Any) -> dict[str, Any]:
    return {"Effect": "Allow", "Principal": {"AWS": ALICE.arn}, "Action": "kms:*", "Resource": "*", **extra}


def request(principal: Principal = ALICE, action: str = "kms:Decrypt", resource: str = KEY, *, secure: bool | None = True,
            ip: str | None = "10.1.2.3", via: str | None = None, **keys: Any) -> Request:
    context: dict[str, Any] = {**principal_context(principal, secure=secure, source_ip=ip, region="us-east-1",
                                                   via_service=via), **time_context(NOW)}
    context["kms:calleraccount"] = (principal.account,)
    for name, value in keys.items():
        context[normalize_key(name.replace("__", ":"))] = value if isinstance(value, tuple) else (value,)
    return Request(principal, action, resource, context)


def key_policy(*statements: dict[str, Any]) -> Policy:
    return parse(doc(*statements), KEY_POLICY)


# --- the grammar: what is refused when put --------------------------------------------------------------------------

REFUSED = [
    # (document, grammar, words the message must contain)
    ("not json", KEY_POLICY, "not valid JSON"),  # garbage is no policy
    ('{"Statement": [], "Statement": []}', KEY_POLICY, "twice"),  # duplicate members: which one would AWS read?
    ('{"Statement": [{"Effect": "Deny", "Effect": "Allow", "Principal": "*", "Action": "kms:*", "Resource": "*"}]}',
     KEY_POLICY, "twice"),  # Effect twice: Allow or Deny?
    (json.dumps({"Statement": [allow()], "Condition": {}}), KEY_POLICY, "top-level member"),  # a misplaced Condition
    (doc(allow(), version="2013-01-01"), KEY_POLICY, "Version"),  # only AWS's two grammar versions
    ("{}", KEY_POLICY, "Statement"),  # a policy needs statements
    (doc(allow(Effect="allow")), KEY_POLICY, "Effect"),  # Effect is case-sensitive
    (doc({"Effect": "Allow", "Principal": "*", "Action": "kms:*", "NotAction": "kms:Decrypt", "Resource": "*"}),
     KEY_POLICY, "not both"),  # Action and NotAction together are ambiguous
    (doc({"Effect": "Allow", "Principal": "*", "Action": "kms:*"}), KEY_POLICY, "Resource"),  # KMS requires Resource
    (doc(allow(Resource=KEY)), KEY_POLICY, 'only Resource'),  # a key policy's Resource is "*" (this key)
    (doc({"Effect": "Deny", "Principal": "*", "Action": "kms:*", "NotResource": "*"}), KEY_POLICY, "only Resource"),
    (doc(allow(Principal={"Service": "s3.amazonaws.com"})), KEY_POLICY, "invalid principals"),  # no service principals
    (doc(allow(Principal={"AWS": f"arn:aws:iam::{A}:user/*"})), KEY_POLICY, "invalid principals"),  # no wildcards in ARNs
    (doc(allow(Principal={"AWS": "bob"})), KEY_POLICY, "invalid principals"),  # a bare name is no principal
    (doc(allow(Principal={"AWS": []})), KEY_POLICY, "invalid principals"),  # naming nobody
    (doc({"Effect": "Allow", "NotPrincipal": {"AWS": ALICE.arn}, "Action": "kms:*", "Resource": "*"}), KEY_POLICY,
     "NotPrincipal"),  # Allow everyone-but: refused, as AWS advises
    (doc({"Effect": "Allow", "Principal": "*", "Action": "s3:*", "Resource": "*"}), IDENTITY_POLICY,
     "must not name a Principal"),  # an identity policy's principal is its owner
    (doc(allow(Action="kms:Encrpt")), KEY_POLICY, "matches no kms action"),  # a typo must not make a Deny a no-op
    (doc(allow(Action="kms:Foo*")), KEY_POLICY, "matches no kms action"),  # a pattern matching nothing, likewise
    (doc(allow(Action="s3:GetObject")), KEY_POLICY, "not one a key policy may name"),  # S3 actions in a key policy
    (doc({"Effect": "Allow", "Action": "ec2:*", "Resource": "*"}), IDENTITY_POLICY, "not one"),  # a service not served
    (doc(allow(Action="kms:Decrypt:x")), KEY_POLICY, "not one"),  # one colon only
    (doc(allow(Action="Decrypt")), KEY_POLICY, "not one"),  # a service prefix is required
    (doc(allow(Condition={"Bool": {"aws:SecureTransprt": "false"}})), KEY_POLICY, "not permitted"),  # unknown key
    (doc(allow(Condition={"StringEquals": {"s3:prefix": "a/"}})), KEY_POLICY, "not permitted"),  # an S3 key in KMS
    (doc(allow(Condition={"StringEquals": {"aws:RequestTag/team": "x"}})), KEY_POLICY, "not permitted"),  # not supplied
    (doc(allow(Condition={"StringEqualz": {"aws:username": "x"}})), KEY_POLICY, "not supported"),  # unknown operator
    (doc(allow(Condition={"NullIfExists": {"aws:username": "true"}})), KEY_POLICY, "not supported"),  # Null has no IfExists
    (doc(allow(Condition={"ForAllValues:Null": {"aws:username": "true"}})), KEY_POLICY, "not supported"),
    (doc(allow(Condition={"ForSomeValues:StringEquals": {"aws:username": "x"}})), KEY_POLICY, "not supported"),
    (doc(allow(Condition={"BinaryEquals": {"aws:username": "eA=="}})), KEY_POLICY, "not supported"),  # no binary keys here
    (doc(allow(Condition={"Bool": {"aws:SecureTransport": "yes"}})), KEY_POLICY, "true or false"),  # Bool takes true/false
    (doc(allow(Condition={"NumericLessThan": {"aws:EpochTime": "ten"}})), KEY_POLICY, "not a number"),
    (doc(allow(Condition={"DateLessThan": {"aws:CurrentTime": "yesterday"}})), KEY_POLICY, "not a date"),
    (doc(allow(Condition={"IpAddress": {"aws:SourceIp": "10.0.0.300/8"}})), KEY_POLICY, "not an IP"),
    (doc(allow(Condition={"ArnLike": {"aws:PrincipalArn": "arn:aws:*:user/alice"}})), KEY_POLICY, "not an ARN"),
    (doc(allow(Condition={"Bool": {"aws:SourceIp": "true"}})), KEY_POLICY, "cannot test"),  # type mismatch
    (doc(allow(Condition={"NumericEquals": {"kms:EncryptionContext:n": "1"}})), KEY_POLICY, "cannot test"),
    (doc(allow(Condition={"StringEquals": {"kms:EncryptionContextKeys": "a"}})), KEY_POLICY, "multivalued"),  # needs a set op
    (doc(allow(Condition={"StringEquals": {"aws:username": {"nested": "x"}}})), KEY_POLICY, "strings, numbers"),
    (doc(allow(Condition={"StringEquals": {"aws:username": []}})), KEY_POLICY, "no values"),
    (doc(allow(Condition={"StringEquals": {}})), KEY_POLICY, "needs an object"),
    (doc(allow(Condition=["Bool"])), KEY_POLICY, "Condition must be"),
    (doc(allow(Effects="Allow")), KEY_POLICY, "no member Effects"),  # a misspelt member is refused, not ignored
    (doc(allow(Sid=7)), KEY_POLICY, "Sid"),
    (json.dumps({"Statement": ["Allow"]}), KEY_POLICY, "must be an object"),
    (doc({"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::b/${aws:nosuch}"}), IDENTITY_POLICY,
     "policy variable"),  # a variable naming no key
    (doc({"Effect": "Allow", "Action": "kms:*", "Resource": "*",
          "Condition": {"StringEquals": {"aws:username": "${kms:EncryptionContextKeys}"}}}), IDENTITY_POLICY,
     "policy variable"),  # a multivalued key cannot be a variable
    (doc({"Effect": "Allow", "Action": "s3:GetObject", "Resource": "bucket/*"}), IDENTITY_POLICY, "ARN format"),
    (doc(allow(Sid="x" * 33000)), KEY_POLICY, "larger than 32 KB"),  # AWS's size limit
]


@pytest.mark.parametrize(("text", "grammar", "words"), REFUSED)
def test_refused_when_put(text: str, grammar: Any, words: str) -> None:
    with pytest.raises(PolicyError) as e:
        parse(text, grammar)
    assert words in str(e.value)


ACCEPTED = [
    # (document, grammar): what AWS accepts must be accepted
    (json.dumps({"Statement": allow()}), KEY_POLICY),  # one statement, not in a list; Version defaults to 2008-10-17
    (doc(allow(Principal="*")), KEY_POLICY),  # everyone
    (doc(allow(Principal={"AWS": "*"})), KEY_POLICY),
    (doc(allow(Principal={"AWS": A})), KEY_POLICY),  # a bare account id means its root
    (doc(allow(Principal={"AWS": [f"arn:aws:iam::{A}:root", f"arn:aws:iam::{A}:role/KeyAdmins",
                                  f"arn:aws:sts::{A}:assumed-role/Admin/session"]})), KEY_POLICY),
    (doc({"Effect": "Deny", "NotPrincipal": {"AWS": ALICE.arn}, "Action": "kms:*", "Resource": "*"}), KEY_POLICY),
    (doc(allow(Action=["kms:Get*", "KMS:describekey", "kms:ReEncrypt?*"])), KEY_POLICY),  # actions are case-insensitive
    (doc(allow(Condition={"NumericLessThan": {"aws:EpochTime": 1700000000}, "Bool": {"aws:SecureTransport": True}})),
     KEY_POLICY),  # JSON numbers and booleans as values
    (doc({"Effect": "Allow", "Action": ["s3:*", "kms:Decrypt"], "NotResource": "arn:aws:s3:::secret/*"}), IDENTITY_POLICY),
    (doc({"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::b/*",
          "Condition": {"StringLike": {"s3:ExistingObjectTag/Team": "a*"}}}), BUCKET_POLICY),
    (doc({"Effect": "Allow", "Action": "s3:*", "Resource": "arn:aws:s3:::b/${aws:username, 'nobody'}/*"}),
     IDENTITY_POLICY),  # a variable with a default
]


@pytest.mark.parametrize(("text", "grammar"), ACCEPTED)
def test_accepted(text: str, grammar: Any) -> None:
    assert parse(text, grammar).statements


# --- condition operators: True, False, or None (cannot evaluate: fail closed) ---------------------------------------

OPERATORS = [
    # (operator, key, policy values, request values (None: absent), holds)
    ("StringEquals", "kms:EncryptionContext:app", "x", ("x",), True),  # exact match
    ("StringEquals", "kms:EncryptionContext:app", "x", ("X",), False),  # case-sensitive
    ("StringEquals", "kms:EncryptionContext:app", ["x", "y"], ("y",), True),  # several values are ORed
    ("StringEquals", "kms:EncryptionContext:app", "x", None, False),  # absent: a positive operator fails
    ("StringNotEquals", "kms:EncryptionContext:app", "x", None, True),  # absent: a negated operator holds (AWS)
    ("StringNotEquals", "kms:EncryptionContext:app", ["x", "y"], ("y",), False),  # negated: matches none of them
    ("StringNotEquals", "kms:EncryptionContext:app", ["x", "y"], ("z",), True),
    ("StringEquals", "kms:EncryptionContext:app", "a*", ("abc",), False),  # no wildcards in StringEquals
    ("StringEqualsIgnoreCase", "kms:EncryptionContext:app", "X", ("x",), True),
    ("StringNotEqualsIgnoreCase", "kms:EncryptionContext:app", "X", ("x",), False),
    ("StringLike", "kms:EncryptionContext:app", "a*c", ("abbc",), True),  # * is any run
    ("StringLike", "kms:EncryptionContext:app", "a?c", ("abbc",), False),  # ? is exactly one
    ("StringNotLike", "kms:EncryptionContext:app", "a*", ("b",), True),
    ("StringEqualsIfExists", "kms:EncryptionContext:app", "x", None, True),  # IfExists: absent holds
    ("StringEqualsIfExists", "kms:EncryptionContext:app", "x", ("y",), False),  # ...present is tested
    ("StringEquals", "kms:encryptioncontext:app", "x", ("x",), True),  # the key's prefix is case-insensitive
    ("StringEquals", "kms:EncryptionContext:App", "x", None, False),  # ...the context key after it is not
    ("NumericLessThanEquals", "s3:max-keys", "100", ("50",), True),
    ("NumericLessThan", "s3:max-keys", "100", ("100",), False),
    ("NumericGreaterThan", "s3:max-keys", "10", ("ten",), False),  # a non-number never compares
    ("NumericNotEquals", "s3:max-keys", "5", ("5",), False),
    ("NumericEquals", "s3:max-keys", "5", ("5.0",), True),  # numbers, not strings
    ("DateGreaterThan", "aws:CurrentTime", "2020-01-01T00:00:00Z", ("2022-04-15T05:20:00Z",), True),
    ("DateLessThan", "aws:CurrentTime", "2020-01-01T00:00:00Z", ("2022-04-15T05:20:00Z",), False),
    ("DateLessThan", "aws:EpochTime", "1700000000", ("1650000000",), True),  # epoch seconds are dates too
    ("NumericLessThan", "aws:EpochTime", "1700000000", ("1650000000",), True),  # ...and numbers
    ("DateEquals", "aws:CurrentTime", "2022-04-15", ("2022-04-15T00:00:00Z",), True),  # a date alone is midnight UTC
    ("Bool", "aws:SecureTransport", "false", ("false",), True),
    ("Bool", "aws:SecureTransport", "false", ("true",), False),
    ("Bool", "aws:SecureTransport", "False", ("false",), True),  # true/false in any case
    ("Bool", "aws:SecureTransport", "false", None, None),  # a key every request has, missing: cannot evaluate
    ("BoolIfExists", "aws:MultiFactorAuthPresent", "false", None, True),  # AWS's MFA idiom: no MFA key, IfExists holds
    ("IpAddress", "aws:SourceIp", "10.0.0.0/8", ("10.1.2.3",), True),
    ("IpAddress", "aws:SourceIp", "10.0.0.0/8", ("192.168.1.1",), False),
    ("IpAddress", "aws:SourceIp", "203.0.113.5", ("203.0.113.5",), True),  # one address is a /32
    ("IpAddress", "aws:SourceIp", "2001:db8::/32", ("2001:db8::1",), True),  # IPv6
    ("IpAddress", "aws:SourceIp", "10.0.0.0/8", ("::1",), False),  # another family never matches
    ("NotIpAddress", "aws:SourceIp", "10.0.0.0/8", ("192.168.1.1",), True),
    ("NotIpAddress", "aws:SourceIp", "10.0.0.0/8", None, True),  # negated, absent: holds
    ("ArnLike", "aws:PrincipalArn", "arn:aws:iam::*:user/a*", (ALICE.arn,), True),
    ("ArnLike", "aws:PrincipalArn", "arn:aws:iam::*:user/a*", (f"arn:aws:iam::{A}:role/a",), False),
    ("ArnLike", "aws:PrincipalArn", "arn:*:iam::111122223333:user/alice", ("arn:aws:x:iam::111122223333:user/alice",),
     False),  # a wildcard in an ARN segment does not cross a colon
    ("ArnEquals", "aws:PrincipalArn", f"arn:aws:iam::{A}:user/*", (ALICE.arn,), True),  # ArnEquals takes wildcards too
    ("ArnNotEquals", "aws:PrincipalArn", ALICE.arn, (BOB.arn,), True),
    ("ArnLike", "aws:PrincipalArn", "arn:aws:iam::*:user/*", ("not-an-arn",), False),
    ("Null", "aws:SourceIp", "true", None, True),  # Null true: absent
    ("Null", "aws:SourceIp", "false", None, False),
    ("Null", "kms:EncryptionContext:app", "false", ("x",), True),  # Null false: present
    ("Null", "aws:SecureTransport", "true", None, None),  # a must-have key missing: cannot evaluate
    ("ForAnyValue:StringEquals", "kms:EncryptionContextKeys", ["a", "b"], ("c", "a"), True),
    ("ForAnyValue:StringEquals", "kms:EncryptionContextKeys", ["a", "b"], None, False),  # any of nothing: false
    ("ForAllValues:StringEquals", "kms:EncryptionContextKeys", ["a", "b"], ("a", "b"), True),
    ("ForAllValues:StringEquals", "kms:EncryptionContextKeys", ["a", "b"], ("a", "c"), False),
    ("ForAllValues:StringEquals", "kms:EncryptionContextKeys", ["a"], None, True),  # all of nothing: true (AWS's caveat)
    ("ForAllValues:StringEquals", "kms:EncryptionContextKeys", ["a"], (), True),
    ("ForAnyValue:StringNotEquals", "kms:EncryptionContextKeys", ["a", "b"], ("a", "c"), True),  # c is neither
    ("ForAllValues:StringNotEquals", "kms:EncryptionContextKeys", ["a", "b"], ("c", "d"), True),
    ("ForAllValues:StringNotEquals", "kms:EncryptionContextKeys", ["a", "b"], ("a", "d"), False),
    ("ForAnyValue:StringLike", "kms:GrantOperations", "Generate*", ("Decrypt", "GenerateDataKey"), True),
]


def holds(op: str, key: str, values: Any, have: tuple[str, ...] | None) -> bool | None:
    condition = Condition.parse(parse_operator(op), key, values, _IDENTITY.vocabulary, variables=True, what="a test",
                                resolve_key=lambda name: name.lower())
    context = {} if have is None else {condition.key: have}
    return condition.holds(context)


@pytest.mark.parametrize(("op", "key", "values", "have", "expected"), OPERATORS)
def test_condition_operators(op: str, key: str, values: Any, have: tuple[str, ...] | None, expected: bool | None) -> None:
    assert holds(op, key, values, have) is expected


# --- one policy: statements, principals, actions, resources, variables ---------------------------------------------

def test_explicit_deny_beats_any_allow() -> None:
    p = key_policy(allow(), {"Effect": "Deny", "Principal": "*", "Action": "kms:Decrypt", "Resource": "*"})
    assert evaluate(p, request()) is Match.DENY
    assert evaluate(p, request(action="kms:Encrypt")) is Match.ALLOW


PRINCIPALS = [
    # (principal element, caller, match)
    ({"AWS": ALICE.arn}, ALICE, Match.ALLOW),  # the user by name
    ({"AWS": ALICE.arn}, BOB, Match.NONE),  # ...and nobody else
    ({"AWS": f"arn:aws:iam::{A}:root"}, BOB, Match.ALLOW_VIA_ACCOUNT),  # the account: delegation to its users' policies
    ({"AWS": A}, BOB, Match.ALLOW_VIA_ACCOUNT),  # the bare account id means the same
    ({"AWS": f"arn:aws:iam::{A}:root"}, CAROL, Match.NONE),  # another account's user is not in it
    ("*", CAROL, Match.ALLOW),  # everyone, any account
    ({"AWS": [BOB.arn, f"arn:aws:iam::{A}:root"]}, BOB, Match.ALLOW),  # named directly wins over via the account
    ({"AWS": f"arn:aws:iam::{A}:role/alice"}, ALICE, Match.NONE),  # a role of the same name is not the user
]


@pytest.mark.parametrize(("principal", "caller", "expected"), PRINCIPALS)
def test_principal_matching(principal: Any, caller: Principal, expected: Match) -> None:
    assert evaluate(key_policy(allow(Principal=principal)), request(caller)) is expected


def test_not_principal_deny_spares_those_it_names() -> None:
    p = key_policy(allow(Principal="*"), {"Effect": "Deny", "NotPrincipal": {"AWS": ALICE.arn}, "Action": "kms:*",
                                          "Resource": "*"})
    assert evaluate(p, request(ALICE)) is Match.ALLOW
    assert evaluate(p, request(BOB)) is Match.DENY


def test_actions_are_case_insensitive_patterns_and_not_action_inverts() -> None:
    p = key_policy(allow(Action="KMS:generatedatakey*"))
    assert evaluate(p, request(action="kms:GenerateDataKeyWithoutPlaintext")) is Match.ALLOW
    assert evaluate(p, request(action="kms:Decrypt")) is Match.NONE
    q = key_policy({"Effect": "Allow", "Principal": {"AWS": ALICE.arn}, "NotAction": "kms:Decrypt", "Resource": "*"})
    assert evaluate(q, request(action="kms:Encrypt")) is Match.ALLOW
    assert evaluate(q, request(action="kms:Decrypt")) is Match.NONE


RESOURCES = [
    # (Resource, requested resource, matches): case-sensitive, segment-wise wildcards
    ("arn:aws:s3:::bucket/*", "arn:aws:s3:::bucket/a/b:c", True),  # the resource segment takes colons too
    ("arn:aws:s3:::bucket/*", "arn:aws:s3:::Bucket/a", False),  # case-sensitive
    ("arn:aws:s3:::bucket", "arn:aws:s3:::bucket/a", False),  # the bucket is not its objects
    ("arn:aws:kms:*:111122223333:key/*", KEY, True),
    ("arn:aws:kms:*:444455556666:key/*", KEY, False),
    ("arn:aws:kms:us-east-?:111122223333:key/*", KEY, True),
    ("*", "arn:aws:s3:::anything/at:all", True),
]


@pytest.mark.parametrize(("pattern", "resource", "expected"), RESOURCES)
def test_resource_patterns(pattern: str, resource: str, expected: bool) -> None:
    p = parse(doc({"Effect": "Allow", "Action": ["s3:*", "kms:*"], "Resource": pattern}), IDENTITY_POLICY)
    got = evaluate(p, request(action="s3:GetObject", resource=resource))
    assert (got is Match.ALLOW) is expected


def test_policy_variables_substitute_literally() -> None:
    home = parse(doc({"Effect": "Allow", "Action": "s3:*", "Resource": "arn:aws:s3:::home/${aws:username}/*"}),
                 IDENTITY_POLICY)
    assert evaluate(home, request(action="s3:PutObject", resource="arn:aws:s3:::home/alice/notes")) is Match.ALLOW
    assert evaluate(home, request(action="s3:PutObject", resource="arn:aws:s3:::home/bob/notes")) is Match.NONE
    # a value is literal: a user named "*" would not match every home (user names cannot hold "*", but values can)
    wild = parse(doc({"Effect": "Allow", "Action": "kms:*", "Resource": "*",
                      "Condition": {"StringLike": {"kms:EncryptionContext:owner": "${kms:EncryptionContext:who}"}}}),
                 IDENTITY_POLICY)
    assert evaluate(wild, request(kms__EncryptionContext__who="*", kms__EncryptionContext__owner="x")) is Match.NONE
    assert evaluate(wild, request(kms__EncryptionContext__who="*", kms__EncryptionContext__owner="*")) is Match.ALLOW
    # ${*} is a literal star; a variable without a value and without a default matches nothing
    star = parse(doc({"Effect": "Allow", "Action": "s3:*", "Resource": "arn:aws:s3:::b/${*}"}), IDENTITY_POLICY)
    assert evaluate(star, request(action="s3:GetObject", resource="arn:aws:s3:::b/*")) is Match.ALLOW
    assert evaluate(star, request(action="s3:GetObject", resource="arn:aws:s3:::b/x")) is Match.NONE
    agent = parse(doc({"Effect": "Allow", "Action": "s3:*", "Resource": "arn:aws:s3:::b/${aws:UserAgent}"}),
                  IDENTITY_POLICY)
    assert evaluate(agent, request(action="s3:GetObject", resource="arn:aws:s3:::b/")) is Match.NONE
    fallback = parse(doc({"Effect": "Allow", "Action": "s3:*", "Resource": "arn:aws:s3:::b/${aws:UserAgent, 'none'}"}),
                     IDENTITY_POLICY)
    assert evaluate(fallback, request(action="s3:GetObject", resource="arn:aws:s3:::b/none")) is Match.ALLOW
    # Version 2008-10-17 has no variables: the text is literal
    old = parse(doc({"Effect": "Allow", "Action": "s3:*", "Resource": "arn:aws:s3:::b/${aws:username}"},
                    version="2008-10-17"), IDENTITY_POLICY)
    assert evaluate(old, request(action="s3:GetObject", resource="arn:aws:s3:::b/${aws:username}")) is Match.ALLOW
    assert evaluate(old, request(action="s3:GetObject", resource="arn:aws:s3:::b/alice")) is Match.NONE


# --- identity and resource policy together (AWS's policy evaluation logic) -----------------------------------------

ONLY_S3 = parse(doc({"Effect": "Allow", "Action": "s3:*", "Resource": "*"}), IDENTITY_POLICY)
DENY_DECRYPT = parse(doc({"Effect": "Allow", "Action": "*", "Resource": "*"},
                         {"Effect": "Deny", "Action": "kms:Decrypt", "Resource": "*"}), IDENTITY_POLICY)
DECIDE = [
    # (resource policy principal (None: no resource policy), caller, identity, resource must allow, outcome)
    ({"AWS": ALICE.arn}, ALICE, FULL_ACCESS, True, Outcome.ALLOWED),  # named in the key policy
    ({"AWS": ALICE.arn}, ALICE, ONLY_S3, True, Outcome.ALLOWED),  # same account, named directly: no IAM needed
    ({"AWS": f"arn:aws:iam::{A}:root"}, ALICE, ONLY_S3, True, Outcome.NO_IDENTITY_ALLOW),  # root delegates to IAM
    ({"AWS": f"arn:aws:iam::{A}:root"}, ALICE, FULL_ACCESS, True, Outcome.ALLOWED),
    ({"AWS": BOB.arn}, ALICE, FULL_ACCESS, True, Outcome.NO_RESOURCE_ALLOW),  # KMS: IAM alone never suffices
    ({"AWS": BOB.arn}, ALICE, FULL_ACCESS, False, Outcome.ALLOWED),  # S3, same account: IAM alone suffices
    ("*", CAROL, FULL_ACCESS, True, Outcome.ALLOWED),  # cross-account: resource allows and IAM allows
    ("*", CAROL, ONLY_S3, True, Outcome.NO_IDENTITY_ALLOW),  # ...both are needed
    ({"AWS": f"arn:aws:iam::{B}:root"}, CAROL, FULL_ACCESS, True, Outcome.ALLOWED),  # granting the other account
    ({"AWS": ALICE.arn}, CAROL, FULL_ACCESS, True, Outcome.NO_RESOURCE_ALLOW),  # not granted to carol's account
    (None, CAROL, FULL_ACCESS, False, Outcome.NO_RESOURCE_ALLOW),  # cross-account, no resource policy: denied
    (None, ALICE, FULL_ACCESS, False, Outcome.ALLOWED),  # same account, no resource policy: IAM decides
    ({"AWS": ALICE.arn}, ALICE, DENY_DECRYPT, True, Outcome.DENIED_BY_IDENTITY),  # an explicit deny anywhere wins
]


@pytest.mark.parametrize(("principal", "caller", "identity", "must_allow", "expected"), DECIDE)
def test_decide(principal: Any, caller: Principal, identity: Policy, must_allow: bool, expected: Outcome) -> None:
    resource = None if principal is None else key_policy(allow(Principal=principal))
    got = decide(request(caller), identity=identity, resource=resource, resource_account=A, resource_must_allow=must_allow)
    assert got is expected


def test_denial_messages_are_aws_words() -> None:
    r = request(BOB)
    assert denial_message(r, Outcome.NO_RESOURCE_ALLOW) == (
        f"User: {BOB.arn} is not authorized to perform: kms:Decrypt on resource: {KEY} "
        "because no resource-based policy allows the kms:Decrypt action")
    assert denial_message(r, Outcome.DENIED_BY_IDENTITY).endswith("with an explicit deny in an identity-based policy")


# --- stored policies: what was accepted before is evaluated fail-closed --------------------------------------------

STORED = [
    # (stored document, request, match): an unreadable part makes a Deny apply and an Allow not
    (doc(allow(Condition={"Bool": {"aws:SecureTransprt": "false"}})), request(), Match.NONE),  # unknown key in an Allow
    (doc(allow(), {"Effect": "Deny", "Principal": "*", "Action": "kms:Decrypt", "Resource": "*",
                   "Condition": {"Bool": {"aws:SecureTransprt": "false"}}}), request(), Match.DENY),  # ...in a Deny
    (doc(allow(), {"Effect": "Deny", "Principal": "*", "Action": "kms:Decrypt", "Resource": "*",
                   "Condition": {"Bool": {"aws:SecureTransprt": "false"}}}), request(action="kms:Encrypt"),
     Match.ALLOW),  # a Deny still has to match what it can: Encrypt is not Decrypt
    (doc(allow(), {"Effect": "Deny", "Principal": {"Service": "x.amazonaws.com"}, "Action": "kms:Decrypt",
                   "Resource": "*"}), request(), Match.DENY),  # a principal we cannot read: the Deny applies
    (doc(allow(), {"Effect": "Deny", "Principal": "*", "Action": "kms:Decrpt", "Resource": "*"}), request(),
     Match.DENY),  # an action we do not know in a Deny: it applies
    (doc(allow(Action="kms:Decrpt")), request(), Match.NONE),
    (doc(allow(Condition={"NumericWobbly": {"aws:EpochTime": "1"}})), request(), Match.NONE),  # unknown operator
    (doc({"Principal": "*", "Action": "kms:*", "Resource": "*"}, allow()), request(), Match.DENY),  # no Effect: deny
    ("[1, 2]", request(), Match.DENY),  # not a policy at all: deny everything
    (json.dumps({"Statement": [{"Effect": "Allow", "Principal": {"AWS": ALICE.arn}, "Action": "kms:*"}]}), request(),
     Match.NONE),  # no Resource (accepted before Aug 2025 by AWS too): such an Allow grants nothing
]


@pytest.mark.parametrize(("text", "req", "expected"), STORED)
def test_stored_policies_fail_closed(text: str, req: Request, expected: Match) -> None:
    stored = parse_stored(text, KEY_POLICY)
    assert stored.problems  # each says what it could not read
    assert evaluate(stored, req) is expected


def test_a_request_missing_a_must_have_key_is_evaluated_fail_closed() -> None:
    """Defence in depth: a Caller built without aws:SecureTransport must not slip past a Deny on it."""
    p = key_policy(allow(), {"Effect": "Deny", "Principal": "*", "Action": "kms:*", "Resource": "*",
                             "Condition": {"Bool": {"aws:SecureTransport": "false"}}})
    assert evaluate(p, request(secure=True)) is Match.ALLOW
    assert evaluate(p, request(secure=False)) is Match.DENY
    assert evaluate(p, request(secure=None)) is Match.DENY  # unknown transport: the Deny applies
    q = key_policy(allow(Condition={"Bool": {"aws:SecureTransport": "true"}}))
    assert evaluate(q, request(secure=None)) is Match.NONE  # ...and an Allow on it does not


def test_allows_everything_on() -> None:
    assert allows_everything_on(FULL_ACCESS, "s3")
    assert not allows_everything_on(ONLY_S3, "kms")
    assert allows_everything_on(ONLY_S3, "s3")
    kms_deny = parse(doc({"Effect": "Allow", "Action": "*", "Resource": "*"},
                         {"Effect": "Deny", "Action": "kms:Decrypt", "Resource": "*"}), IDENTITY_POLICY)
    assert allows_everything_on(kms_deny, "s3") and not allows_everything_on(kms_deny, "kms")
    not_action = parse(doc({"Effect": "Allow", "Action": "*", "Resource": "*"},
                           {"Effect": "Deny", "NotAction": "kms:*", "Resource": "*"}), IDENTITY_POLICY)
    assert not allows_everything_on(not_action, "s3")  # NotAction kms:* denies every s3 action
    conditional = parse(doc({"Effect": "Allow", "Action": "s3:*", "Resource": "*",
                             "Condition": {"Bool": {"aws:SecureTransport": "true"}}}), IDENTITY_POLICY)
    assert not allows_everything_on(conditional, "s3")


# --- properties ------------------------------------------------------------------------------------------------------

PRINCIPAL_CHOICES = ["*", {"AWS": ALICE.arn}, {"AWS": BOB.arn}, {"AWS": f"arn:aws:iam::{A}:root"}, {"AWS": B}]
ACTION_CHOICES = ["kms:*", "kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey*", "kms:Describe*"]
CONDITION_CHOICES: list[dict[str, Any] | None] = [
    None,
    {"StringEquals": {"kms:EncryptionContext:app": "x"}},
    {"StringNotEquals": {"kms:EncryptionContext:app": ["x", "y"]}},
    {"Bool": {"aws:SecureTransport": "false"}},
    {"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}},
    {"ForAnyValue:StringEquals": {"kms:EncryptionContextKeys": ["app", "b"]}},
    {"ForAllValues:StringLike": {"kms:EncryptionContextKeys": "a*"}},
    {"StringEqualsIfExists": {"kms:ViaService": "s3.us-east-1.amazonaws.com"}},
    {"Null": {"kms:EncryptionContext:app": "true"}},
]
statements = st.builds(
    lambda effect, principal, action, negate, condition: {
        "Effect": effect, "Principal": principal, ("NotAction" if negate else "Action"): action, "Resource": "*",
        **({"Condition": condition} if condition else {})},
    st.sampled_from(["Allow", "Deny"]), st.sampled_from(PRINCIPAL_CHOICES), st.sampled_from(ACTION_CHOICES),
    st.booleans(), st.sampled_from(CONDITION_CHOICES),
)
requests = st.builds(
    lambda caller, action, secure, ip, ctx, via: request(caller, action, secure=secure, ip=ip, via=via, **ctx),
    st.sampled_from([ALICE, BOB, CAROL]), st.sampled_from(["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey",
                                                           "kms:DescribeKey", "kms:PutKeyPolicy"]),
    st.booleans(), st.sampled_from(["10.1.2.3", "192.168.0.1"]),
    st.sampled_from([{}, {"kms__EncryptionContext__app": "x", "kms__EncryptionContextKeys": ("app",)},
                     {"kms__EncryptionContext__app": "y", "kms__EncryptionContext__b": "z",
                      "kms__EncryptionContextKeys": ("app", "b")}]),
    st.sampled_from([None, "s3.us-east-1.amazonaws.com"]),
)
identities = st.sampled_from([FULL_ACCESS, ONLY_S3, DENY_DECRYPT])


def outcome(stmts: list[dict[str, Any]], r: Request, identity: Policy) -> Outcome:
    return decide(r, identity=identity, resource=key_policy(*stmts), resource_account=A, resource_must_allow=True)


@settings(max_examples=300, deadline=None)
@given(st.lists(statements, max_size=4), statements, requests, identities)
def test_adding_a_deny_never_grants(stmts: list[dict[str, Any]], extra: dict[str, Any], r: Request,
                                    identity: Policy) -> None:
    deny = {**extra, "Effect": "Deny"}
    if outcome(stmts + [deny], r, identity).allowed:
        assert outcome(stmts, r, identity).allowed


@settings(max_examples=300, deadline=None)
@given(st.lists(statements, max_size=4), statements, requests, identities)
def test_adding_an_allow_never_denies(stmts: list[dict[str, Any]], extra: dict[str, Any], r: Request,
                                      identity: Policy) -> None:
    grant = {**extra, "Effect": "Allow"}
    if outcome(stmts, r, identity).allowed:
        assert outcome(stmts + [grant], r, identity).allowed


@settings(max_examples=300, deadline=None)
@given(st.lists(statements, max_size=4), statements, requests, st.sampled_from(["aws:SecureTransprt", "kms:Nonsense",
                                                                                  "s3:prefix", "aws:RequestTag/x"]))
def test_an_unknown_key_never_grants_and_never_undenies(stmts: list[dict[str, Any]], extra: dict[str, Any], r: Request,
                                                        unknown: str) -> None:
    with_unknown = {**extra, "Condition": {"StringEquals": {unknown: "x"}}}
    with pytest.raises(PolicyError):  # refused when put
        parse(doc(*stmts, with_unknown), KEY_POLICY)
    stored = evaluate(parse_stored(doc(*stmts, with_unknown), KEY_POLICY), r)
    without = evaluate(key_policy(*stmts), r)
    if extra["Effect"] == "Allow":
        assert stored is without  # the Allow adds nothing
    else:
        # the Deny applies wherever its principal and action match, whatever its (unreadable) condition says
        unconditional = evaluate(key_policy(*stmts, {k: v for k, v in extra.items() if k != "Condition"}), r)
        assert stored is unconditional


@settings(max_examples=200, deadline=None)
@given(st.lists(statements, min_size=1, max_size=5), requests, st.randoms(use_true_random=False))
def test_statement_order_does_not_matter(stmts: list[dict[str, Any]], r: Request, rnd: Any) -> None:
    shuffled = list(stmts)
    rnd.shuffle(shuffled)
    assert evaluate(key_policy(*stmts), r) is evaluate(key_policy(*shuffled), r)


# --- AWS's documented example key policies ---------------------------------------------------------------------------

def test_aws_default_key_policy_delegates_to_iam() -> None:
    """The policy CreateKey gives a key without one: the account root, kms:* — IAM policies then decide."""
    p = key_policy({"Sid": "Enable IAM User Permissions", "Effect": "Allow",
                    "Principal": {"AWS": f"arn:aws:iam::{A}:root"}, "Action": "kms:*", "Resource": "*"})
    assert decide(request(ALICE), identity=FULL_ACCESS, resource=p, resource_account=A, resource_must_allow=True).allowed
    assert decide(request(ALICE), identity=ONLY_S3, resource=p, resource_account=A,
                  resource_must_allow=True) is Outcome.NO_IDENTITY_ALLOW
    assert decide(request(CAROL), identity=FULL_ACCESS, resource=p, resource_account=A,
                  resource_must_allow=True) is Outcome.NO_RESOURCE_ALLOW


def test_aws_console_default_key_policy() -> None:
    """The console's default policy: root, key administrators and users (roles), and grants for AWS resources."""
    admins, users = f"arn:aws:iam::{A}:role/KeyAdmins", f"arn:aws:iam::{A}:role/KeyUsers"
    p = key_policy(
        {"Sid": "Enable IAM User Permissions", "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{A}:root"},
         "Action": "kms:*", "Resource": "*"},
        {"Sid": "Allow access for Key Administrators", "Effect": "Allow", "Principal": {"AWS": admins},
         "Action": ["kms:Create*", "kms:Describe*", "kms:Enable*", "kms:List*", "kms:Put*", "kms:Update*",
                    "kms:Revoke*", "kms:Disable*", "kms:Get*", "kms:Delete*", "kms:TagResource", "kms:UntagResource",
                    "kms:ScheduleKeyDeletion", "kms:CancelKeyDeletion", "kms:RotateKeyOnDemand"], "Resource": "*"},
        {"Sid": "Allow use of the key", "Effect": "Allow", "Principal": {"AWS": users},
         "Action": ["kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:DescribeKey"],
         "Resource": "*"},
        {"Sid": "Allow attachment of persistent resources", "Effect": "Allow", "Principal": {"AWS": users},
         "Action": ["kms:CreateGrant", "kms:ListGrants", "kms:RevokeGrant"], "Resource": "*",
         "Condition": {"Bool": {"kms:GrantIsForAWSResource": "true"}}},
    )
    assert len(p.statements) == 4
    assert evaluate(p, request(ALICE)) is Match.ALLOW_VIA_ACCOUNT  # users (not those roles) through the root statement


def test_aws_cross_account_key_policy() -> None:
    """Allowing an external account to use a key: its users need their own IAM permission too."""
    p = key_policy(
        allow(Principal={"AWS": f"arn:aws:iam::{A}:root"}),
        {"Sid": "Allow an external account to use this KMS key", "Effect": "Allow",
         "Principal": {"AWS": [f"arn:aws:iam::{B}:root"]},
         "Action": ["kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:DescribeKey"],
         "Resource": "*"},
    )
    use = dict(identity=FULL_ACCESS, resource=p, resource_account=A, resource_must_allow=True)
    assert decide(request(CAROL, "kms:Decrypt"), **use).allowed  # type: ignore[arg-type]
    assert decide(request(CAROL, "kms:DisableKey"), **use) is Outcome.NO_RESOURCE_ALLOW  # type: ignore[arg-type]
    assert decide(request(CAROL, "kms:Decrypt"), **{**use, "identity": ONLY_S3}) is Outcome.NO_IDENTITY_ALLOW  # type: ignore[arg-type]


def test_aws_managed_key_policy_via_service_and_caller_account() -> None:
    """aws/s3's policy: anyone of the account, but only through S3 (kms:ViaService, kms:CallerAccount)."""
    p = key_policy({"Effect": "Allow", "Principal": {"AWS": "*"},
                    "Action": ["kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:DescribeKey"],
                    "Resource": "*", "Condition": {"StringEquals": {"kms:CallerAccount": A,
                                                                    "kms:ViaService": "s3.us-east-1.amazonaws.com"}}})
    assert evaluate(p, request(BOB, via="s3.us-east-1.amazonaws.com", kms__ViaService="s3.us-east-1.amazonaws.com"))\
        is Match.ALLOW
    assert evaluate(p, request(BOB)) is Match.NONE  # directly, not through S3
    assert evaluate(p, request(CAROL, via="s3.us-east-1.amazonaws.com", kms__ViaService="s3.us-east-1.amazonaws.com"))\
        is Match.NONE  # another account, even through S3


def test_aws_encryption_context_and_transport_conditions() -> None:
    """Context conditions (kms:EncryptionContext:Department) and the secure-transport Deny."""
    p = key_policy(
        allow(Principal={"AWS": BOB.arn}, Action="kms:Decrypt",
              Condition={"StringEquals": {"kms:EncryptionContext:Department": "IT"}}),
        {"Sid": "DenyInsecure", "Effect": "Deny", "Principal": "*", "Action": "kms:*", "Resource": "*",
         "Condition": {"Bool": {"aws:SecureTransport": "false"}}},
        {"Sid": "DenyOutside", "Effect": "Deny", "Principal": "*", "Action": "kms:*", "Resource": "*",
         "Condition": {"NotIpAddress": {"aws:SourceIp": ["10.0.0.0/8", "192.0.2.0/24"]}}},
    )
    assert evaluate(p, request(BOB, kms__EncryptionContext__Department="IT")) is Match.ALLOW
    assert evaluate(p, request(BOB, kms__EncryptionContext__Department="HR")) is Match.NONE
    assert evaluate(p, request(BOB, secure=False, kms__EncryptionContext__Department="IT")) is Match.DENY
    assert evaluate(p, request(BOB, ip="198.51.100.7", kms__EncryptionContext__Department="IT")) is Match.DENY
