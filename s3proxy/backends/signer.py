"""AWS Signature Version 4 for the requests the S3 backend sends: one Authorization header per request.

What botocore's S3SigV4Auth puts on the wire, without its per-request objects:
- Canonical URI: the path exactly as sent. S3 paths are not normalised, so the caller encodes each
  key byte for byte once (`quote_path`: RFC 3986 unreserved characters and "/" kept), and that
  encoding is already the canonical one.
- Canonical query: names and values encoded the same way, sorted by name then value; the request
  sends the same encoded pairs in the caller's order (`query_strings` makes both at once).
- Every header sent is signed (lower-case names, sorted; values trimmed, inner runs of white space
  collapsed, as botocore does), and `host`, `x-amz-date` and `x-amz-content-sha256` always are.
- The payload hash is the caller's: SHA-256 of a small body, UNSIGNED-PAYLOAD for a streamed one
  (sent with its Content-Length, never chunked), EMPTY_SHA256 for none.
The signing key is derived once per (date, region, service): a Signer has one region and service,
so it keeps the key of the current date. The secret key never leaves the Signer (nor its repr).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Mapping, Sequence
from urllib.parse import quote

from s3proxy.auth.sigv4 import ALGORITHM, EMPTY_SHA256, TERMINATOR, UNSIGNED_PAYLOAD, derive_signing_key, sign

__all__ = ["EMPTY_SHA256", "UNSIGNED_PAYLOAD", "Signer", "query_strings", "quote_path"]


def quote_path(value: str) -> str:
    """A bucket name or key for the path: every byte but A-Z a-z 0-9 - _ . ~ and / percent-encoded (UTF-8)."""
    return quote(value, safe="/~")


def query_strings(pairs: Sequence[tuple[str, str]]) -> tuple[str, str]:
    """The query as sent (pairs in the given order) and its canonical form (sorted by name, then
    value), both with every byte of names and values but A-Z a-z 0-9 - _ . ~ percent-encoded."""
    encoded = [(quote(name, safe="~"), quote(value, safe="~")) for name, value in pairs]
    return "&".join(f"{n}={v}" for n, v in encoded), "&".join(f"{n}={v}" for n, v in sorted(encoded))


class Signer:
    """Signs requests with one credential for one region and service."""

    __slots__ = ("_access_key", "_clock", "_key", "_region", "_secret_key", "_service")

    def __init__(self, access_key: str, secret_key: str, region: str, service: str = "s3",
                 clock: Callable[[], float] = time.time) -> None:
        self._access_key = access_key
        self._secret_key = secret_key
        self._region = region
        self._service = service
        self._clock = clock
        self._key: tuple[str, bytes] = ("", b"")  # (date, signing key of that date)

    def __repr__(self) -> str:  # never the secret key
        return f"Signer(region={self._region!r}, service={self._service!r})"

    def signing_key(self, date: str) -> bytes:
        cached, key = self._key
        if cached != date:
            key = derive_signing_key(self._secret_key, date, self._region, self._service)
            self._key = (date, key)
        return key

    def sign(self, method: str, path: str, query: str, headers: Mapping[str, str], payload_hash: str) -> dict[str, str]:
        """The headers to send: `headers` (which must name the host) under lower-case names, with
        x-amz-date, x-amz-content-sha256 and authorization added.

        `path` is sent as given and must already be canonical (`quote_path`); `query` is the
        canonical query (`query_strings`). A header named twice (in any case) is refused: it could not be signed
        as one value and sent as another.
        """
        out = {name.lower(): value for name, value in headers.items()}
        if len(out) != len(headers) or "host" not in out:
            raise ValueError("the headers to sign must name the host, and no header twice")
        amz_date = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(self._clock()))
        out["x-amz-date"] = amz_date
        out["x-amz-content-sha256"] = payload_hash
        names = sorted(out)
        signed = ";".join(names)
        canonical_headers = "".join(f"{name}:{' '.join(out[name].split())}\n" for name in names)
        request = f"{method}\n{path}\n{query}\n{canonical_headers}\n{signed}\n{payload_hash}"
        date = amz_date[:8]
        scope = f"{date}/{self._region}/{self._service}/{TERMINATOR}"
        digest = hashlib.sha256(request.encode("utf-8", "surrogateescape")).hexdigest()
        signature = sign(self.signing_key(date), f"{ALGORITHM}\n{amz_date}\n{scope}\n{digest}")
        out["authorization"] = (f"{ALGORITHM} Credential={self._access_key}/{scope}, "
                                f"SignedHeaders={signed}, Signature={signature}")
        return out
