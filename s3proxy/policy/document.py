"""Policy documents: AWS's JSON grammar parsed into compiled statements, strictly or (for stored policies) fail-closed.

    Policy    = {"Version"?, "Id"?, "Statement": Statement | [Statement]}
    Statement = {"Sid"?, "Effect": "Allow"|"Deny",
                 "Principal" | "NotPrincipal" (resource policies only),
                 "Action" | "NotAction", "Resource" | "NotResource", "Condition"?}

`parse(text, grammar)` accepts a document only if every element is one the engine evaluates
exactly as AWS documents it, for that kind of policy (`vocabulary.Grammar`): known actions, known
condition keys with operators of their type, principals it can name, no unknown or duplicated
members. Anything else raises PolicyError, so a typo cannot turn a Deny into a no-op.

`parse_stored(text, grammar)` reads a policy stored before these checks existed. It never raises:
an element it cannot accept is kept as "unknown", and a statement with an unknown element applies
if it is a Deny (it still must match where it can be evaluated) and never if it is an Allow. The
problems are returned so the caller can log them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .conditions import Condition, parse_operator
from .errors import PolicyError
from .patterns import ARN, LIKE, Context, Pattern, is_arn_pattern
from .vocabulary import ACTIONS, Grammar

ALLOW, DENY = "Allow", "Deny"
VERSIONS = ("2012-10-17", "2008-10-17")
_ACCOUNT = re.compile(r"^\d{12}$")
_IAM_PRINCIPAL = re.compile(r"^arn:aws:(iam::\d{12}:(root|user/[\w+=,.@/-]+|role/[\w+=,.@/-]+)"
                            r"|sts::\d{12}:assumed-role/[\w+=,.@/-]+)$")
_STATEMENT_MEMBERS = {"Sid", "Effect", "Principal", "NotPrincipal", "Action", "NotAction", "Resource",
                      "NotResource", "Condition"}
INVALID_PRINCIPALS = "Policy contains a statement with one or more invalid principals."

_SEEN_MAX = 512  # remembered answers per element (actions are few; resource ARNs are not, hence the bound)
# a principal's match against a statement's principals
DIRECT, VIA_ACCOUNT = "direct", "account"


@dataclass(frozen=True)
class Principals:
    """The principals one Principal/NotPrincipal element names."""

    anyone: bool = False
    accounts: frozenset[str] = frozenset()  # "123456789012": every principal of that account, by delegation
    arns: frozenset[str] = frozenset()  # exact user, role or session ARNs

    def match(self, account: str, arn: str) -> str | None:
        if self.anyone or arn in self.arns:
            return DIRECT
        if account in self.accounts:
            return VIA_ACCOUNT
        return None


@dataclass(frozen=True)
class Element:
    """A compiled Action/Resource element, or one that could not be read (`unknown`)."""

    patterns: tuple[Pattern, ...] = ()
    negated: bool = False  # NotAction / NotResource
    unknown: bool = False
    everything: bool = field(init=False, default=False)
    # answers for values seen before, when no pattern has a variable (actions: a small, finite set)
    _seen: dict[str, bool] | None = field(init=False, default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "everything", not self.negated and any(p.everything for p in self.patterns))
        if not any(p.keys for p in self.patterns):
            object.__setattr__(self, "_seen", {})

    def matches(self, value: str, context: Context) -> bool | None:
        if self.unknown:
            return None
        if self.everything:
            return True
        seen = self._seen
        if seen is not None:
            found = seen.get(value)
            if found is not None:
                return found
        hit = any(p.matches(value, context) for p in self.patterns)
        answer = not hit if self.negated else hit
        if seen is not None and len(seen) < _SEEN_MAX:
            seen[value] = answer
        return answer


_UNKNOWN = Element(unknown=True)


@dataclass(frozen=True)
class Statement:
    sid: str | None
    effect: str
    principals: Principals | None  # None: an identity policy's statement (its principal is its owner)
    not_principal: bool
    actions: Element
    resources: Element
    conditions: tuple[Condition, ...] = ()
    conditions_unknown: bool = False
    principal_unknown: bool = False

    def principal_match(self, account: str, arn: str) -> str | None | bool:
        """DIRECT, VIA_ACCOUNT, None (not this principal) or False when the element is unknown."""
        if self.principal_unknown:
            return False
        if self.principals is None:
            return DIRECT
        found = self.principals.match(account, arn)
        if self.not_principal:
            return None if found else DIRECT
        return found

    def applies(self, action: str, resource: str, context: Context) -> bool | None:
        """Whether action, resource and conditions match: True, False, or None when an unknown part decides."""
        unknown = False
        for answer in (self.actions.matches(action, context), self.resources.matches(resource, context)):
            if answer is False:
                return False
            unknown = unknown or answer is None
        if self.conditions_unknown:
            unknown = True
        for condition in self.conditions:
            holds = condition.holds(context)
            if holds is False:
                return False
            unknown = unknown or holds is None
        return None if unknown else True


@dataclass(frozen=True, eq=False)
class Policy:
    """A parsed policy: its statements, and (for stored ones) what could not be read."""

    statements: tuple[Statement, ...]
    version: str = "2012-10-17"
    text: str = field(default="", repr=False)
    problems: tuple[str, ...] = ()
    # an identity policy that is one unconditional Allow of everything (the default): evaluation is a lookup
    allows_all: bool = field(init=False, default=False)
    # whether evaluation reads the request's condition keys at all (conditions, or variables in a pattern)
    reads_context: bool = field(init=False, default=True)

    def __post_init__(self) -> None:
        object.__setattr__(self, "reads_context", any(
            st.conditions or any(p.keys for el in (st.actions, st.resources) for p in el.patterns)
            for st in self.statements))
        only = self.statements[0] if len(self.statements) == 1 else None
        object.__setattr__(self, "allows_all", only is not None and only.effect == ALLOW and only.principals is None
                           and only.actions.everything and only.resources.everything
                           and not only.conditions and not only.conditions_unknown)


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise PolicyError(f"The policy names {k} twice in one object.")
        out[k] = v
    return out


def _strings(value: Any, element: str) -> list[str]:
    items = _as_list(value)
    if not items or not all(isinstance(v, str) and v for v in items):
        raise PolicyError(f"{element} must be a non-empty string or list of strings.")
    return items


def _principals(value: Any) -> Principals:
    if value == "*":
        return Principals(anyone=True)
    if not isinstance(value, dict) or set(value) != {"AWS"}:
        raise PolicyError(INVALID_PRINCIPALS)
    anyone, accounts, arns = False, set(), set()
    for name in _as_list(value["AWS"]):
        if not isinstance(name, str):
            raise PolicyError(INVALID_PRINCIPALS)
        if name == "*":
            anyone = True
        elif _ACCOUNT.match(name):
            accounts.add(name)
        elif _IAM_PRINCIPAL.match(name):
            if name.endswith(":root"):
                accounts.add(name.split(":")[4])
            else:
                arns.add(name)
        else:
            raise PolicyError(INVALID_PRINCIPALS)
    if not (anyone or accounts or arns):
        raise PolicyError(INVALID_PRINCIPALS)
    return Principals(anyone, frozenset(accounts), frozenset(arns))


def _actions(value: Any, grammar: Grammar, negated: bool) -> Element:
    patterns = []
    for text in _strings(value, "Action"):
        if text == "*":
            patterns.append(Pattern.compile("*", LIKE, fold=True))
            continue
        service, colon, name = text.partition(":")
        known = ACTIONS.get(service.lower()) if service.lower() in grammar.services else None
        if not colon or known is None or not name or ":" in name:
            raise PolicyError(f"The action {text} is not one {grammar.a} may name "
                              f"(actions of {', '.join(grammar.services)} only).")
        pattern = Pattern.compile(name, LIKE, fold=True)
        if not any(pattern.matches(a, {}) for a in known):
            raise PolicyError(f"The action {text} matches no {service.lower()} action.")
        patterns.append(Pattern.compile(text, LIKE, fold=True))
    return Element(tuple(patterns), negated)


def _resources(value: Any, grammar: Grammar, negated: bool, variables: bool,
               resolve_key: Callable[[str], str]) -> Element:
    texts = _strings(value, "Resource")
    if grammar.star_resource_only and (negated or texts != ["*"]):
        raise PolicyError(f'The only Resource {grammar.a} accepts is "*" (this key).')
    patterns = []
    for text in texts:
        if not is_arn_pattern(text):
            raise PolicyError(f'Resource {text} must be in ARN format or "*".')
        patterns.append(Pattern.compile(text, ARN, variables=variables, resolve_key=resolve_key))
    return Element(tuple(patterns), negated)


def _conditions(value: Any, grammar: Grammar, variables: bool, resolve_key: Callable[[str], str]) -> tuple[Condition, ...]:
    if not isinstance(value, dict):
        raise PolicyError("Condition must be an object of operators.")
    out = []
    for op_name, body in value.items():
        op = parse_operator(op_name)
        if not isinstance(body, dict) or not body:
            raise PolicyError(f"The condition operator {op_name} needs an object of condition keys.")
        for key, raw in body.items():
            out.append(Condition.parse(op, key, raw, grammar.vocabulary, variables=variables, what=grammar.a,
                                       resolve_key=resolve_key))
    return tuple(out)


def _one_of(st: dict[str, Any], a: str, b: str, required: bool = True) -> str | None:
    if a in st and b in st:
        raise PolicyError(f"A statement may have {a} or {b}, not both.")
    if a not in st and b not in st:
        if required:
            raise PolicyError(f"Each statement needs {a} or {b}.")
        return None
    return a if a in st else b


class _Reader:
    """Reads the statements of one document, strictly or leniently (collecting problems)."""

    def __init__(self, grammar: Grammar, version: str, strict: bool) -> None:
        self.grammar = grammar
        self.variables = version == "2012-10-17"
        self.strict = strict
        self.problems: list[str] = []

    def element(self, read: Callable[[], Any], fallback: Any) -> Any:
        try:
            return read()
        except PolicyError as exc:
            if self.strict:
                raise
            self.problems.append(str(exc))
            return fallback

    def resolve_key(self, name: str) -> str:
        found = self.grammar.vocabulary.lookup(name)
        if found is None or found[1].multi:
            raise PolicyError(f"The policy variable ${{{name}}} names no single-valued condition key of {self.grammar.a}.")
        return found[0]

    def statement(self, st: Any) -> Statement:
        grammar = self.grammar
        if not isinstance(st, dict):
            raise PolicyError("Each statement must be an object.")
        unknown = set(st) - _STATEMENT_MEMBERS
        if unknown:
            self.element(lambda: _raise(f"Statements have no member {sorted(unknown)[0]}."), None)
        effect = st.get("Effect")
        if effect not in (ALLOW, DENY):
            raise PolicyError("Each statement needs an Effect of Allow or Deny.")
        sid = st.get("Sid")
        if sid is not None and not isinstance(sid, str):
            raise PolicyError("Sid must be a string.")
        principals, not_principal, principal_unknown = None, False, False
        if grammar.principals:
            which = self.element(lambda: _one_of(st, "Principal", "NotPrincipal"), None)
            if which == "NotPrincipal" and effect == ALLOW:
                which = self.element(lambda: _raise("NotPrincipal is accepted only with Effect Deny."), None)
            principals = self.element(lambda: _principals(st[which]), None) if which else None
            not_principal = which == "NotPrincipal"
            principal_unknown = principals is None
        elif "Principal" in st or "NotPrincipal" in st:
            self.element(lambda: _raise(f"{grammar.a[0].upper()}{grammar.a[1:]} must not name a Principal."), None)
        action_member = self.element(lambda: _one_of(st, "Action", "NotAction"), None)
        actions = _UNKNOWN if action_member is None else self.element(
            lambda: _actions(st[action_member], grammar, action_member == "NotAction"), _UNKNOWN)
        resource_member = self.element(lambda: _one_of(st, "Resource", "NotResource"), None)
        resources = _UNKNOWN if resource_member is None else self.element(
            lambda: _resources(st[resource_member], grammar, resource_member == "NotResource", self.variables,
                               self.resolve_key), _UNKNOWN)
        conditions = self.element(
            lambda: _conditions(st.get("Condition") or {}, grammar, self.variables, self.resolve_key), None)
        return Statement(sid, effect, principals, not_principal, actions, resources, conditions or (),
                         conditions_unknown=conditions is None, principal_unknown=principal_unknown)


def _raise(message: str) -> Any:
    raise PolicyError(message)


def _document(text: str, grammar: Grammar) -> tuple[dict[str, Any], str]:
    if len(text.encode("utf-8", "surrogatepass")) > grammar.max_bytes:
        raise PolicyError(f"The policy is larger than {grammar.max_bytes // 1024} KB.")
    try:
        doc = json.loads(text, object_pairs_hook=_no_duplicates)
    except PolicyError:
        raise
    except ValueError:
        raise PolicyError("The policy is not valid JSON.") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("Statement"), (list, dict)):
        raise PolicyError("The policy must have a Statement.")
    unknown = set(doc) - {"Version", "Id", "Statement"}
    if unknown:
        raise PolicyError(f"A policy has no top-level member {sorted(unknown)[0]}.")
    version = doc.get("Version", "2008-10-17")
    if version not in VERSIONS:
        raise PolicyError(f"The policy Version must be one of {', '.join(VERSIONS)}.")
    if "Id" in doc and not isinstance(doc["Id"], str):
        raise PolicyError("Id must be a string.")
    return doc, version


def parse(text: str, grammar: Grammar) -> Policy:
    """The policy `text` as a `grammar` kind of policy; PolicyError unless every element is exact."""
    doc, version = _document(text, grammar)
    reader = _Reader(grammar, version, strict=True)
    return Policy(tuple(reader.statement(st) for st in _as_list(doc["Statement"])), version, text)


# what a stored document that cannot even be read as a policy becomes: nothing is allowed, everything denied
_DENY_ALL = Statement(None, DENY, Principals(anyone=True), False, Element(unknown=True), Element(unknown=True))


def parse_stored(text: str, grammar: Grammar) -> Policy:
    """A stored policy, never refused: unreadable elements evaluate fail-closed; `problems` says which."""
    try:
        doc, version = _document(text, grammar)
    except PolicyError as exc:
        return Policy((_DENY_ALL,), text=text, problems=(str(exc),))
    reader = _Reader(grammar, version, strict=False)
    statements = []
    for st in _as_list(doc["Statement"]):
        try:
            statements.append(reader.statement(st))
        except PolicyError as exc:  # no readable Effect: it may have been a Deny
            reader.problems.append(str(exc))
            statements.append(_DENY_ALL)
    return Policy(tuple(statements), version, text, tuple(reader.problems))


def full_access() -> Policy:
    """The identity policy of a user configured without one: every action on every resource."""
    return Policy((Statement(None, ALLOW, None, False, Element((Pattern.compile("*", LIKE, fold=True),)),
                             Element((Pattern.compile("*", ARN),))),), text="")


def allows_everything_on(policy: Policy, service: str) -> bool:
    """True when `policy` surely lets its owner do every `service` action on every resource, whatever the
    request: an unconditional Allow of `*` or `<service>:*` on Resource `*`, and no Deny that could touch it."""
    everything = {"*", f"{service}:*"}
    granted = any(
        st.effect == ALLOW and not st.conditions and not st.conditions_unknown and not st.actions.negated
        and not st.actions.unknown and any(p.text.lower() in everything for p in st.actions.patterns)
        and not st.resources.negated and not st.resources.unknown and any(p.text == "*" for p in st.resources.patterns)
        for st in policy.statements
    )
    known = ACTIONS[service]
    touched = any(
        st.effect == DENY and (st.actions.unknown or any(st.actions.matches(f"{service}:{a}", {}) is not False
                                                         for a in known))
        for st in policy.statements
    )
    return granted and not touched

