"""Patterns in policies: wildcards (`*`, `?`), ARNs matched segment by segment, and policy variables.

Three ways to match, each compiled once per policy element:
- exact: the text itself (StringEquals and friends); `*` and `?` are ordinary characters.
- like: `*` matches any run of characters, `?` any one (Action, StringLike).
- arn: like, but within each of an ARN's first five colon-separated segments a wildcard does
  not cross a colon; the sixth (the resource) takes the rest (Resource, ArnLike).

Policy variables (Version 2012-10-17 only): `${key}` is replaced by the request's value of a
single-valued condition key, `${key, 'default'}` falls back to the default when the request has
no value, and `${*}`, `${?}`, `${$}` stand for those characters literally. A substituted value is
always literal: wildcards in it match only themselves. A variable whose key the request lacks
(and has no default) makes the pattern match nothing, as AWS documents.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from .errors import PolicyError

EXACT, LIKE, ARN = "exact", "like", "arn"
Context = Mapping[str, Sequence[str]]
_VARIABLE = re.compile(r"\$\{([^}]*)\}")
_LITERAL_VARIABLES = {"*": "*", "?": "?", "$": "$"}


@dataclass(frozen=True)
class Variable:
    key: str  # normalized condition key name
    default: str | None


Part = str | tuple[str] | Variable  # text with wildcards | (one literal character,) | a variable


def parse_parts(text: str, *, variables: bool, resolve_key: Callable[[str], str]) -> tuple[Part, ...]:
    """Split `text` into literal text, literal characters and variables (`resolve_key` names a key or raises)."""
    if not variables or "${" not in text:
        return (text,)
    parts: list[Part] = []
    at = 0
    for found in _VARIABLE.finditer(text):
        if found.start() > at:
            parts.append(text[at : found.start()])
        inner = found.group(1)
        if inner in _LITERAL_VARIABLES:
            parts.append((_LITERAL_VARIABLES[inner],))
        else:
            name, comma, default = inner.partition(",")
            fallback = None
            if comma:
                default = default.strip()
                if len(default) < 2 or default[0] != "'" or default[-1] != "'":
                    raise PolicyError(f"The policy variable ${{{inner}}} needs its default in single quotes.")
                fallback = default[1:-1]
            parts.append(Variable(resolve_key(name.strip()), fallback))
        at = found.end()
    if at < len(text):
        parts.append(text[at:])
    return tuple(parts)


def _wildcards(text: str, segment: int, kind: str) -> str:
    """Regex for literal text with `*` and `?` active; `segment` counts the ARN colons seen before it."""
    out = []
    for ch in text:
        if ch == "*":
            out.append("[^:]*" if kind == ARN and segment < 5 else ".*")
        elif ch == "?":
            out.append("[^:]" if kind == ARN and segment < 5 else ".")
        else:
            out.append(re.escape(ch))
            if ch == ":":
                segment += 1
    return "".join(out)


def _regex(parts: Sequence[str | tuple[str]], kind: str, fold: bool) -> re.Pattern[str]:
    pieces: list[str] = []
    segment = 0
    for part in parts:
        if isinstance(part, tuple):  # literal
            pieces.append(re.escape(part[0]))
            segment += part[0].count(":")
        elif kind == EXACT:
            pieces.append(re.escape(part))
        else:
            pieces.append(_wildcards(part, segment, kind))
            segment += part.count(":")
    return re.compile("".join(pieces), re.DOTALL | (re.IGNORECASE if fold else 0))


@dataclass(frozen=True)
class Pattern:
    """One compiled pattern: `matches(value, context)`."""

    text: str
    kind: str
    fold: bool = False
    parts: tuple[Part, ...] = ()
    _static: re.Pattern[str] | None = field(default=None, compare=False, repr=False)

    @classmethod
    def compile(cls, text: str, kind: str, *, fold: bool = False, variables: bool = False,
                resolve_key: Callable[[str], str] | None = None) -> Pattern:
        parts = parse_parts(text, variables=variables, resolve_key=resolve_key or _no_variables)
        static = None
        if text == "*" and kind != EXACT:  # everything, an ARN's colons included
            static = re.compile(".*", re.DOTALL)
        elif not any(isinstance(p, Variable) for p in parts):
            static = _regex([p for p in parts if not isinstance(p, Variable)], kind, fold)
        return cls(text, kind, fold, parts, static)

    @property
    def keys(self) -> tuple[str, ...]:
        """The condition keys its variables read."""
        return tuple(p.key for p in self.parts if isinstance(p, Variable))

    @property
    def everything(self) -> bool:
        """`*` as an Action, Resource or StringLike/ArnLike value: matches any value."""
        return self.text == "*" and self.kind != EXACT

    def matches(self, value: str, context: Context) -> bool:
        regex = self._static
        if regex is None:
            resolved: list[str | tuple[str]] = []
            for part in self.parts:
                if isinstance(part, Variable):
                    have = context.get(part.key)
                    text = have[0] if have else part.default
                    if text is None:
                        return False
                    resolved.append((text,))
                else:
                    resolved.append(part)
            regex = _regex(resolved, self.kind, self.fold)
        return regex.fullmatch(value) is not None


def _no_variables(name: str) -> str:
    raise PolicyError("Policy variables are not allowed here.")


def is_arn_pattern(text: str) -> bool:
    """`*`, or text shaped as an ARN: arn:partition:service:region:account:resource."""
    return text == "*" or (text.startswith("arn:") and text.count(":") >= 5)
