"""What a verified signature vouches for: the signer, the payload mode, and the query exactly as signed.

Both signature versions (sigv4.py, sigv2.py) return an AuthContext. Its `query` is the request's
query string decoded once, by the rule under which the signature matched; routing and the
operations read this and nothing else, so no parameter means one thing to the verifier and
another to the handler (a `+` read as a space by one and as a plus by the other, say).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import unquote

from .. import errors
from .credentials import ANONYMOUS, Credential

Query = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class AuthContext:
    """Who signed a request and what the body decoder needs to keep verifying it."""

    credential: Credential
    service: str
    region: str
    amz_date: str  # the request time as YYYYMMDDTHHMMSSZ
    scope: str  # date/region/service/aws4_request ("" for SigV2)
    content_sha256: str  # x-amz-content-sha256 as sent; UNSIGNED-PAYLOAD for presigned unless sent
    presigned: bool
    signing_key: bytes = field(repr=False)
    seed_signature: str = ""
    query: Query = ()  # the decoded query the signature covers, in the order sent
    signature_version: int = 4  # 0: an anonymous request (no signature)

    @property
    def anonymous(self) -> bool:
        return self.credential is ANONYMOUS


def split_query(raw_query: str) -> list[tuple[str, str]]:
    """The raw (still encoded) name/value pairs of a query string; `a` gives ("a", "")."""
    pairs = []
    for part in raw_query.split("&"):
        if part:
            name, _, value = part.partition("=")
            pairs.append((name, value))
    return pairs


def _decode(text: str, plus_is_space: bool) -> str:
    if plus_is_space:
        text = text.replace("+", " ")
    return unquote(text, errors="strict")


def decode_query(raw_query: str, *, plus_is_space: bool) -> Query:
    """Every pair percent-decoded once (UTF-8, strictly); `+` is a space only when `plus_is_space`
    (HTML-form encoding), else a plus (RFC 3986). Which rule holds is decided by the signature."""
    try:
        return tuple((_decode(n, plus_is_space), _decode(v, plus_is_space)) for n, v in split_query(raw_query))
    except UnicodeDecodeError:
        raise errors.InvalidArgument("The query string is not valid UTF-8.") from None
