"""Condition operators: parsing one `"Operator": {"key": value(s)}` entry and testing it against a request.

The operators are AWS's (IAM user guide, "Condition operators"): String*, Numeric*, Date*, Bool,
IpAddress / NotIpAddress, Arn*, Null, each but Null with an `...IfExists` form and the
`ForAllValues:` / `ForAnyValue:` set qualifiers. Several values for one key are ORed; the negated
operators (StringNotEquals, NotIpAddress, ...) hold when the request's value matches none of them.
With the key absent from the request a condition is false, except that a negated operator or an
`IfExists` one is true, `ForAllValues:` is true and `Null` tests exactly that.

Every condition answers True, False or None. None means "cannot be evaluated here": a key the
engine does not know (only a stored policy accepted before these checks can carry one), or a key
every request carries that this one lacks (a fault in whoever built the request). The statement
then applies if it is a Deny and not if it is an Allow: unknown never grants and never un-denies.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .errors import PolicyError
from .patterns import ARN, EXACT, LIKE, Context, Pattern, is_arn_pattern
from .vocabulary import ARN as ARN_TYPE
from .vocabulary import BOOL, DATE, IP, NUMERIC, STRING, KeySpec, Vocabulary

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class Operator:
    name: str  # as written, e.g. "ForAnyValue:StringNotLikeIfExists"
    base: str  # e.g. "StringLike" (negation folded into `negated`)
    family: str  # STRING, NUMERIC, DATE, BOOL, IP, ARN or "Null"
    negated: bool = False
    if_exists: bool = False
    qualifier: str = ""  # "", "ForAllValues" or "ForAnyValue"


# base name -> (family, positive base, negated)
_BASES: dict[str, tuple[str, str, bool]] = {
    "StringEquals": (STRING, "StringEquals", False), "StringNotEquals": (STRING, "StringEquals", True),
    "StringEqualsIgnoreCase": (STRING, "StringEqualsIgnoreCase", False),
    "StringNotEqualsIgnoreCase": (STRING, "StringEqualsIgnoreCase", True),
    "StringLike": (STRING, "StringLike", False), "StringNotLike": (STRING, "StringLike", True),
    "NumericEquals": (NUMERIC, "Equals", False), "NumericNotEquals": (NUMERIC, "Equals", True),
    "NumericLessThan": (NUMERIC, "LessThan", False), "NumericLessThanEquals": (NUMERIC, "LessThanEquals", False),
    "NumericGreaterThan": (NUMERIC, "GreaterThan", False),
    "NumericGreaterThanEquals": (NUMERIC, "GreaterThanEquals", False),
    "DateEquals": (DATE, "Equals", False), "DateNotEquals": (DATE, "Equals", True),
    "DateLessThan": (DATE, "LessThan", False), "DateLessThanEquals": (DATE, "LessThanEquals", False),
    "DateGreaterThan": (DATE, "GreaterThan", False), "DateGreaterThanEquals": (DATE, "GreaterThanEquals", False),
    "Bool": (BOOL, "Bool", False),
    "IpAddress": (IP, "IpAddress", False), "NotIpAddress": (IP, "IpAddress", True),
    "ArnEquals": (ARN_TYPE, "ArnLike", False), "ArnLike": (ARN_TYPE, "ArnLike", False),
    "ArnNotEquals": (ARN_TYPE, "ArnLike", True), "ArnNotLike": (ARN_TYPE, "ArnLike", True),
    "Null": ("Null", "Null", False),
}
_ORDER: dict[str, Callable[[float, float], bool]] = {
    "Equals": lambda a, b: a == b, "LessThan": lambda a, b: a < b, "LessThanEquals": lambda a, b: a <= b,
    "GreaterThan": lambda a, b: a > b, "GreaterThanEquals": lambda a, b: a >= b,
}


def parse_operator(name: str) -> Operator:
    """The operator `name` spells; PolicyError if AWS has no such operator."""
    qualifier, colon, rest = name.rpartition(":")
    if colon and qualifier not in ("ForAllValues", "ForAnyValue"):
        raise PolicyError(f"The condition operator {name} is not supported.")
    if_exists = rest.endswith("IfExists") and rest != "IfExists"
    base_name = rest.removesuffix("IfExists") if if_exists else rest
    found = _BASES.get(base_name)
    if found is None or (found[0] == "Null" and (if_exists or qualifier)):
        raise PolicyError(f"The condition operator {name} is not supported.")
    family, base, negated = found
    return Operator(name, base, family, negated, if_exists, qualifier)


def parse_number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def parse_date(text: str) -> float | None:
    """Seconds since the epoch for an ISO 8601 date/time (UTC when no offset) or epoch seconds; None otherwise."""
    if text.isdigit():
        return float(text)
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return when.timestamp()


def parse_bool(text: str) -> bool | None:
    low = text.lower()
    return True if low == "true" else False if low == "false" else None


def _as_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, int, float)):
        return str(value)
    raise PolicyError("Condition values must be strings, numbers or booleans.")


@dataclass(frozen=True)
class Condition:
    """One key under one operator, with its values parsed for that operator."""

    op: Operator
    key: str  # normalized key name
    spec: KeySpec | None  # None: a key the engine does not know (a stored policy only)
    values: tuple[Any, ...]

    @classmethod
    def parse(cls, op: Operator, name: str, raw: Any, vocabulary: Vocabulary, *, variables: bool, what: str,
              resolve_key: Callable[[str], str]) -> Condition:
        """`what` names the kind of policy, article included; `resolve_key` checks a policy variable's key."""
        found = vocabulary.lookup(name)
        if found is None:
            raise PolicyError(f"These condition keys are not permitted in {what}: {name}")
        key, spec = found
        if op.family not in (STRING, "Null") and op.family not in spec.types:
            raise PolicyError(f"The condition operator {op.name} cannot test {spec.name} (a {'/'.join(spec.types)} key).")
        if spec.multi and not op.qualifier and op.family != "Null":
            raise PolicyError(f"{spec.name} is multivalued: test it with ForAllValues: or ForAnyValue:.")
        items = raw if isinstance(raw, list) else [raw]
        if not items:
            raise PolicyError(f"The condition on {name} has no values.")
        return cls(op, key, spec, tuple(_parse_value(op, _as_text(v), variables, resolve_key) for v in items))

    def holds(self, context: Context) -> bool | None:
        spec = self.spec
        if spec is None:
            return None
        have = context.get(self.key)
        op = self.op
        if op.family == "Null":
            if have is None and spec.always:
                return None
            present = bool(have)
            return any(want != present for want in self.values)  # Null true: absent; false: present
        if have is None:
            if spec.always:
                return None
            if op.qualifier == "ForAllValues":
                return True
            if op.qualifier == "ForAnyValue":
                return False
            return op.if_exists or op.negated
        if op.qualifier == "ForAllValues":
            return all(self._one(v, context) for v in have)
        if op.qualifier == "ForAnyValue":
            return any(self._one(v, context) for v in have)
        if not have:
            return op.if_exists or op.negated
        return self._one(have[0], context)

    def _one(self, value: str, context: Context) -> bool:
        hit = any(self._match(value, want, context) for want in self.values)
        return not hit if self.op.negated else hit

    def _match(self, value: str, want: Any, context: Context) -> bool:
        family = self.op.family
        if family in (STRING, ARN_TYPE):
            return bool(want.matches(value, context))
        if family == NUMERIC or family == DATE:
            have = parse_number(value) if family == NUMERIC else parse_date(value)
            return have is not None and _ORDER[self.op.base](have, want)
        if family == BOOL:
            return parse_bool(value) is want
        if family == IP:
            try:
                address = ipaddress.ip_address(value)
            except ValueError:
                return False
            return address.version == want.version and address in want
        return False


def _parse_value(op: Operator, text: str, variables: bool, resolve_key: Callable[[str], str]) -> Any:
    family = op.family
    if family == STRING:
        kind = LIKE if op.base == "StringLike" else EXACT
        return Pattern.compile(text, kind, fold=op.base == "StringEqualsIgnoreCase", variables=variables,
                               resolve_key=resolve_key)
    if family == ARN_TYPE:
        if not is_arn_pattern(text):
            raise PolicyError(f"The value {text!r} of {op.name} is not an ARN.")
        return Pattern.compile(text, ARN, variables=variables, resolve_key=resolve_key)
    if family in (NUMERIC, DATE):
        number = parse_number(text) if family == NUMERIC else parse_date(text)
        if number is None:
            raise PolicyError(f"The value {text!r} of {op.name} is not a {'number' if family == NUMERIC else 'date'}.")
        return number
    if family in (BOOL, "Null"):
        flag = parse_bool(text)
        if flag is None:
            raise PolicyError(f"The value {text!r} of {op.name} must be true or false.")
        return flag
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise PolicyError(f"The value {text!r} of {op.name} is not an IP address or CIDR block.") from None
