"""Verify AWS Signature Version 4 on an incoming request: Authorization header or presigned query.

`verify(...)` checks a request against the proxy's own CredentialStore and returns an
AuthContext, or raises the S3Error AWS would answer (`s3proxy.auth.verify.authenticate` picks
SigV4 or SigV2 per request). It never reads the body: the payload hash the signature covers
(`x-amz-content-sha256`, or a STREAMING-* token) is checked later by
`s3proxy.auth.body.open_body`, which uses AuthContext.signing_key and seed_signature to verify
aws-chunked chunk and trailer signatures.

Rules followed (AWS S3 API reference, "Authenticating Requests (AWS Signature Version 4)",
and the AWS General Reference, "Create a canonical request for Signature Version 4"):

* Canonical URI. For S3 the path is not normalised and each segment is URI-encoded once. We
  decode each segment of the path as sent and re-encode it with the SigV4 rules (everything but
  A-Z a-z 0-9 - _ . ~ percent-encoded, upper-case hex), so a client that sends `!` or `%7e`
  still matches; the path exactly as sent is tried second (both decode to the same key). For
  other services (kms) the path is normalised (dot segments removed, empty segments dropped)
  and encoded twice, as AWS does.
* Canonical query: names and values decoded once and re-encoded the same way, sorted by name
  then value; `?uploads` becomes `uploads=`. X-Amz-Signature is left out for presigned requests.
  The decoded pairs under which the signature matched are returned as AuthContext.query and
  are the only query the request runs with (see `query_readings` for `+`).
* Canonical headers: the signed headers in the order given, values trimmed, inner runs of
  spaces collapsed, repeated headers joined with `,`.
* Signed headers, header or presigned alike: `host` and every `x-amz-*` header present
  (AccessDenied "There were headers present in the request which were not signed" otherwise);
  a presigned request may carry x-amz-content-sha256 unsigned, since the payload line binds it.
* Scope: the region must be this endpoint's and the service the route's (`s3` for S3, `kms`
  for the KMS API), else AuthorizationHeaderMalformed (S3) or InvalidSignatureException (KMS).
* Header auth: the request time (x-amz-date, else Date) must be within 15 minutes of `now`
  (RequestTimeTooSkewed), S3 requests must carry x-amz-content-sha256 (InvalidRequest).
* Presigned: all six X-Amz-* parameters, each once, X-Amz-Expires 0..604800, expiry and "not
  yet valid" (more than 15 minutes in the future) answered AccessDenied as AWS does. Payload is
  UNSIGNED-PAYLOAD unless an x-amz-content-sha256 header is sent.
* SigV4a (AWS4-ECDSA-P256-SHA256 and the STREAMING-AWS4-ECDSA-* payloads) is answered 501
  NotImplemented.
* KMS (service `kms`): clients do not send x-amz-content-sha256; pass the (small) JSON body as
  `body=` and its SHA-256 is used as the payload hash.
* Session tokens (X-Amz-Security-Token) are not issued by the proxy; the parameter is only
  covered by the signature like any other.

Error bodies never carry secrets: SignatureDoesNotMatch lists StringToSign and a canonical
request whose SSE-C key headers are redacted.
"""

from __future__ import annotations

import calendar
import datetime as dt
import email.utils
import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import quote, unquote, unquote_to_bytes

__all__ = ["AuthContext", "verify"]  # AuthContext re-exported: body decoding and tests name it here

from s3proxy import errors
from s3proxy.auth.context import AuthContext, Query, decode_query, split_query
from s3proxy.auth.credentials import CredentialStore

ALGORITHM = "AWS4-HMAC-SHA256"
ECDSA_ALGORITHM = "AWS4-ECDSA-P256-SHA256"
TERMINATOR = "aws4_request"
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
STREAMING_SIGNED = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
STREAMING_SIGNED_TRAILER = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"
STREAMING_UNSIGNED_TRAILER = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
STREAMING_ECDSA = "STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD"
STREAMING_ECDSA_TRAILER = "STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD-TRAILER"
STREAMING_TOKENS = (STREAMING_SIGNED, STREAMING_SIGNED_TRAILER, STREAMING_UNSIGNED_TRAILER)
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
MAX_SKEW_SECONDS = 15 * 60
MAX_EXPIRES_SECONDS = 7 * 24 * 3600

# headers whose values are key material: never echoed in an error
_SECRET_HEADERS = frozenset(
    {
        "x-amz-server-side-encryption-customer-key",
        "x-amz-copy-source-server-side-encryption-customer-key",
    }
)
_HEX64 = re.compile(r"[0-9a-fA-F]{64}\Z")
_AMZ_DATE = re.compile(r"(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z\Z", re.ASCII)
_PRESIGN_PARAMS = (
    "X-Amz-Algorithm",
    "X-Amz-Credential",
    "X-Amz-Signature",
    "X-Amz-Date",
    "X-Amz-SignedHeaders",
    "X-Amz-Expires",
)


# --- primitives shared with the body decoder and with tests ------------------------------------


def derive_signing_key(secret_key: str, date: str, region: str, service: str) -> bytes:
    """kSigning = HMAC(HMAC(HMAC(HMAC("AWS4" + secret, date), region), service), "aws4_request")."""
    key = ("AWS4" + secret_key).encode("utf-8")
    for part in (date, region, service, TERMINATOR):
        key = hmac.new(key, part.encode("utf-8"), hashlib.sha256).digest()
    return key


def sign(signing_key: bytes, string_to_sign: str) -> str:
    # surrogateescape: header bytes that are not UTF-8 reach us escaped; they are hashed as sent
    return hmac.new(signing_key, string_to_sign.encode("utf-8", "surrogateescape"), hashlib.sha256).hexdigest()


def chunk_string_to_sign(amz_date: str, scope: str, previous_signature: str, chunk_sha256: str) -> str:
    """The string to sign of one aws-chunked chunk (S3 API, "Transferring Payload in Multiple Chunks")."""
    return "\n".join(("AWS4-HMAC-SHA256-PAYLOAD", amz_date, scope, previous_signature, EMPTY_SHA256, chunk_sha256))


def trailer_string_to_sign(amz_date: str, scope: str, previous_signature: str, trailer_sha256: str) -> str:
    """The string to sign of the trailing headers (S3 API, "Signature calculations for trailing headers")."""
    return "\n".join(("AWS4-HMAC-SHA256-TRAILER", amz_date, scope, previous_signature, trailer_sha256))


def signatures_equal(expected: str, provided: str) -> bool:
    return hmac.compare_digest(expected.encode("ascii"), provided.lower().encode("ascii", "replace"))


def _uri_encode(raw: bytes) -> str:
    # quote() always keeps A-Z a-z 0-9 _ . - ~ and, with safe="", encodes everything else
    return quote(raw, safe="")


def canonical_uri(raw_path: str, service: str) -> str:
    """The canonical URI of a path as sent (still percent-encoded)."""
    path = raw_path or "/"
    if service == "s3":
        return "/".join(_uri_encode(unquote_to_bytes(segment)) for segment in path.split("/"))
    return quote(_remove_dot_segments(path), safe="/~")


def _remove_dot_segments(path: str) -> str:
    kept: list[str] = []
    for segment in path.split("/"):
        if segment in ("", "."):
            continue
        if segment == "..":
            if kept:
                kept.pop()
            continue
        kept.append(segment)
    trailing = "/" if path.endswith("/") and kept else ""
    return "/" + "/".join(kept) + trailing


def canonical_query(pairs: Query, *, drop: frozenset[str] = frozenset()) -> str:
    """The canonical query string of decoded pairs: names and values encoded with the SigV4
    rules, sorted by name then value; parameters named in `drop` left out."""
    encoded = [(_uri_encode(n.encode("utf-8")), _uri_encode(v.encode("utf-8"))) for n, v in pairs if n not in drop]
    return "&".join(f"{name}={value}" for name, value in sorted(encoded))


def _raw_query(raw_query: str, *, drop: frozenset[str] = frozenset()) -> str:
    pairs = [(name, value) for name, value in split_query(raw_query) if unquote(name) not in drop]
    return "&".join(f"{name}={value}" for name, value in sorted(pairs))


def query_readings(raw_query: str, drop: frozenset[str]) -> list[tuple[str, Query]]:
    """Each way the query may have been signed, with the query it means: (string signed, pairs).

    A `+` is ambiguous: HTML-form encoders send it for a space (and sign `%20`), RFC 3986 reads it
    as a plus (signed `%2B`). Both readings are offered only when a `+` is present, and each
    carries its own decoded pairs, so whichever the signature matched is the query that runs.
    A client that signed the string exactly as sent (not re-encoded) is read with `+` a plus.
    """
    readings: list[tuple[str, Query]] = []
    for plus_is_space in ((True, False) if "+" in raw_query else (False,)):
        pairs = decode_query(raw_query, plus_is_space=plus_is_space)
        readings.append((canonical_query(pairs, drop=drop), pairs))
    as_sent = _raw_query(raw_query, drop=drop)
    if all(as_sent != signed for signed, _ in readings):
        readings.append((as_sent, decode_query(raw_query, plus_is_space=False)))
    return readings


def _header_values(headers: Mapping[str, str], name: str) -> list[str]:
    getall = getattr(headers, "getall", None)
    if getall is not None:
        return list(getall(name, []))
    value = headers.get(name)
    if value is None:  # a plain dict with other casing
        value = next((v for k, v in headers.items() if k.lower() == name), None)
    return [] if value is None else [value]


def canonical_headers(headers: Mapping[str, str], signed: list[str], *, redact: bool = False) -> str:
    lines = []
    for name in signed:
        values = _header_values(headers, name)
        if redact and name in _SECRET_HEADERS:
            values = ["<redacted>"] * len(values)
        lines.append(name + ":" + ",".join(" ".join(v.split()) for v in values) + "\n")
    return "".join(lines)


def amz_date_to_epoch(amz_date: str) -> float | None:
    """YYYYMMDDTHHMMSSZ (ASCII digits) as epoch seconds; None when malformed or not a real time.
    Read by slicing, not strptime: on a small request that was ~15% of the signature check."""
    found = _AMZ_DATE.match(amz_date)
    if found is None:
        return None
    year, month, day, hour, minute, second = (int(g) for g in found.groups())
    try:
        dt.datetime(year, month, day, hour, minute, second)  # a real date and time (no month 13, no 25:00)
    except ValueError:
        return None
    return float(calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0)))


def _iso(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- the parsed request ------------------------------------------------------------------------


@dataclass(frozen=True)
class _Signed:
    access_key: str
    date: str
    region: str
    service: str
    terminator: str
    signed_headers: list[str]
    signature: str
    amz_date: str
    presigned: bool


class _Malformed:
    """Builds the right error for a malformed credential/header in header or query mode."""

    def __init__(self, presigned: bool) -> None:
        self.presigned = presigned

    def __call__(self, detail: str, **fields: str) -> errors.S3Error:
        if self.presigned:
            message = "Error parsing the X-Amz-Credential parameter; " + detail
            return errors.AuthorizationQueryParametersError(message).with_fields(fields)
        return errors.AuthorizationHeaderMalformed("The authorization header is malformed; " + detail).with_fields(fields)


def unsupported_mechanism() -> errors.S3Error:
    return errors.InvalidRequest(
        "The authorization mechanism you have provided is not supported. Please use AWS4-HMAC-SHA256."
    )


def _parse_credential(value: str, malformed: _Malformed) -> tuple[str, str, str, str, str]:
    parts = value.split("/")
    if len(parts) != 5 or not all(parts):
        raise malformed('the Credential is mal-formed; expecting "<YOUR-AKID>/YYYYMMDD/REGION/SERVICE/aws4_request".')
    access_key, date, region, service, terminator = parts
    return access_key, date, region, service, terminator


def _parse_header_auth(authorization: str, headers: Mapping[str, str]) -> _Signed:
    algorithm, _, rest = authorization.strip().partition(" ")
    if algorithm == "AWS":
        raise unsupported_mechanism()
    if algorithm == ECDSA_ALGORITHM:
        raise errors.NotImplemented("SigV4a (AWS4-ECDSA-P256-SHA256) signing is not implemented by this endpoint.")
    if algorithm != ALGORITHM:
        raise errors.InvalidArgument(
            "Unsupported Authorization Type", ArgumentName="Authorization", ArgumentValue=authorization
        )
    malformed = _Malformed(presigned=False)
    components: dict[str, str] = {}
    for component in rest.split(","):
        component = component.strip()
        if not component:
            continue
        name, eq, value = component.partition("=")
        if not eq:
            raise malformed(f'the authorization component "{component}" is malformed.')
        components[name.strip()] = value.strip()
    if not all(k in components for k in ("Credential", "SignedHeaders", "Signature")):
        raise malformed(
            "the authorization header requires three components: Credential, SignedHeaders, and Signature."
        )
    access_key, date, region, service, terminator = _parse_credential(components["Credential"], malformed)
    amz_date = _request_date(headers)
    return _Signed(
        access_key=access_key,
        date=date,
        region=region,
        service=service,
        terminator=terminator,
        signed_headers=components["SignedHeaders"].lower().split(";"),
        signature=components["Signature"],
        amz_date=amz_date,
        presigned=False,
    )


def _request_date(headers: Mapping[str, str]) -> str:
    """The request time of a header-signed request as YYYYMMDDTHHMMSSZ (x-amz-date, else Date)."""
    missing = errors.AccessDenied("AWS authentication requires a valid Date or x-amz-date header")
    amz = headers.get("x-amz-date")
    if amz is not None:
        if amz_date_to_epoch(amz.strip()) is None:
            raise missing
        return amz.strip()
    date = headers.get("date")
    if date is None:
        raise missing
    try:
        when = email.utils.parsedate_to_datetime(date)
    except (TypeError, ValueError, IndexError):
        raise missing from None
    if when is None or when.tzinfo is None:
        raise missing
    return when.astimezone(dt.UTC).strftime("%Y%m%dT%H%M%SZ")


def _parse_query_auth(params: dict[str, str]) -> tuple[_Signed, int]:
    if not all(name in params for name in _PRESIGN_PARAMS):
        raise errors.AuthorizationQueryParametersError(
            "Query-string authentication version 4 requires the X-Amz-Algorithm, X-Amz-Credential, "
            "X-Amz-Signature, X-Amz-Date, X-Amz-SignedHeaders, and X-Amz-Expires parameters."
        )
    if params["X-Amz-Algorithm"] == ECDSA_ALGORITHM:
        raise errors.NotImplemented("SigV4a (AWS4-ECDSA-P256-SHA256) signing is not implemented by this endpoint.")
    if params["X-Amz-Algorithm"] != ALGORITHM:
        raise errors.AuthorizationQueryParametersError('X-Amz-Algorithm only supports "AWS4-HMAC-SHA256"')
    amz_date = params["X-Amz-Date"]
    if amz_date_to_epoch(amz_date) is None:
        raise errors.AuthorizationQueryParametersError(
            "X-Amz-Date must be in the ISO8601 Long Format \"yyyyMMdd'T'HHmmss'Z'\""
        )
    expires_text = params["X-Amz-Expires"]
    if not re.fullmatch(r"-?\d{1,12}", expires_text):
        raise errors.AuthorizationQueryParametersError("X-Amz-Expires should be a number")
    expires = int(expires_text)
    if expires < 0:
        raise errors.AuthorizationQueryParametersError("X-Amz-Expires must be non-negative")
    if expires > MAX_EXPIRES_SECONDS:
        raise errors.AuthorizationQueryParametersError(
            "X-Amz-Expires must be less than a week (in seconds); that is, the given X-Amz-Expires must be "
            "less than 604800 seconds"
        )
    access_key, date, region, service, terminator = _parse_credential(
        params["X-Amz-Credential"], _Malformed(presigned=True)
    )
    signed = _Signed(
        access_key=access_key,
        date=date,
        region=region,
        service=service,
        terminator=terminator,
        signed_headers=params["X-Amz-SignedHeaders"].lower().split(";"),
        signature=params["X-Amz-Signature"],
        amz_date=amz_date,
        presigned=True,
    )
    return signed, expires


def _check_scope(signed: _Signed, region: str, service: str) -> None:
    """The credential scope must name this endpoint: its region, and the service of the route (a
    signature made for the KMS API is no signature for S3, nor one for another region)."""
    malformed = _Malformed(signed.presigned)
    if signed.terminator != TERMINATOR:
        raise malformed(f'incorrect terminal "{signed.terminator}". This endpoint uses "{TERMINATOR}".')
    if signed.service != service:
        if service == "kms":  # AWS KMS's words (InvalidSignatureException)
            raise errors.SignatureDoesNotMatch("Credential should be scoped to correct service: 'kms'.")
        raise malformed(f'incorrect service "{signed.service}". This endpoint belongs to "{service}".')
    if signed.region != region:
        if service == "kms":
            raise errors.SignatureDoesNotMatch(f"Credential should be scoped to a valid region, not '{signed.region}'.")
        raise malformed(f"the region '{signed.region}' is wrong; expecting '{region}'", Region=region)
    if signed.date != signed.amz_date[:8]:
        raise malformed("Invalid credential date. Date is not the same as X-Amz-Date.")


def _check_time(signed: _Signed, expires: int | None, now: float, raw_time: str) -> None:
    when = amz_date_to_epoch(signed.amz_date)
    assert when is not None  # validated while parsing
    if expires is None:
        if abs(now - when) > MAX_SKEW_SECONDS:
            raise errors.RequestTimeTooSkewed(
                RequestTime=raw_time,
                ServerTime=_iso(now),
                MaxAllowedSkewMilliseconds=str(MAX_SKEW_SECONDS * 1000),
            )
        return
    if when - now > MAX_SKEW_SECONDS:
        raise errors.AccessDenied("Request is not valid yet")
    if now > when + expires:
        raise errors.AccessDenied("Request has expired").with_fields(
            {"X-Amz-Expires": str(expires), "Expires": _iso(when + expires), "ServerTime": _iso(now)}
        )


def _payload_hash(signed: _Signed, headers: Mapping[str, str], body: bytes | None) -> str:
    sent = headers.get("x-amz-content-sha256")
    if sent is None:
        if signed.presigned and signed.service == "s3":
            return UNSIGNED_PAYLOAD
        if body is not None:
            return hashlib.sha256(body).hexdigest()
        raise errors.InvalidRequest("Missing required header for this request: x-amz-content-sha256")
    sent = sent.strip()
    if sent in (STREAMING_ECDSA, STREAMING_ECDSA_TRAILER):
        raise errors.NotImplemented(
            "SigV4a streaming payloads are not implemented by this endpoint.", Header="x-amz-content-sha256"
        )
    if sent != UNSIGNED_PAYLOAD and sent not in STREAMING_TOKENS and not _HEX64.match(sent):
        raise errors.InvalidArgument(
            "x-amz-content-sha256 must be UNSIGNED-PAYLOAD, STREAMING-UNSIGNED-PAYLOAD-TRAILER, "
            "STREAMING-AWS4-HMAC-SHA256-PAYLOAD, STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER, "
            "STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD, STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD-TRAILER "
            "or a valid sha256 value.",
            ArgumentName="x-amz-content-sha256",
            ArgumentValue=sent,
        )
    return sent


# x-amz-* headers a presigned request may carry unsigned: the payload hash is bound anyway, as the
# last line of the canonical request (S3 tolerates it the same way)
_PRESIGNED_UNSIGNED_OK = frozenset({"x-amz-content-sha256"})


def _check_signed_headers(headers: Mapping[str, str], signed: _Signed) -> None:
    """`host` and every `x-amz-*` header present must be signed, presigned or not: an unsigned
    header could otherwise re-route a request (Host) or change what it does (x-amz-copy-source
    turns a PUT into a copy, x-amz-target one KMS call into another). AccessDenied as S3 answers."""
    names = set(signed.signed_headers)
    present = {k.lower() for k in headers.keys() if k.lower().startswith("x-amz-")}
    unsigned = sorted(present - names - (_PRESIGNED_UNSIGNED_OK if signed.presigned else frozenset()))
    if "host" not in names:
        unsigned.insert(0, "host")
    if unsigned:
        raise errors.AccessDenied(
            "There were headers present in the request which were not signed", HeadersNotSigned=", ".join(unsigned)
        )


def query_params(raw_query: str) -> dict[str, str]:
    """The query's parameters by decoded name (first value), to find which mechanism signed it.
    An authentication parameter given twice is refused: which one counts would be a guess."""
    params: dict[str, str] = {}
    for name, value in split_query(raw_query):
        name = unquote(name)
        if name in params and name in _AUTH_PARAMS:
            raise errors.AuthorizationQueryParametersError(f"The {name} parameter is given more than once.")
        params.setdefault(name, unquote(value))
    return params


_AUTH_PARAMS = frozenset(_PRESIGN_PARAMS) | {"X-Amz-Security-Token", "AWSAccessKeyId", "Signature", "Expires"}


def verify(
    method: str,
    raw_path: str,
    raw_query: str,
    headers: Mapping[str, str],
    store: CredentialStore,
    *,
    now: float,
    region: str,
    service: str,
    presigned: bool,
    body: bytes | None = None,
) -> AuthContext:
    """Verify a request's SigV4 signature (Authorization header, or presigned query) and return
    who signed it. `s3proxy.auth.verify.authenticate` decides which mechanism a request uses.

    raw_path and raw_query are exactly as sent (percent-encoded; aiohttp: request.raw_path split
    at "?"). headers is case-insensitive (aiohttp's request.headers). now is the server clock in
    epoch seconds. The credential scope must name `region` and `service` (s3 for S3 routes, kms
    for the KMS API). body is for small non-S3 requests (KMS JSON) whose payload hash is the
    SHA-256 of the body.
    """
    expires: int | None = None
    if presigned:
        signed, expires = _parse_query_auth(query_params(raw_query))
        raw_time = signed.amz_date
    else:
        signed = _parse_header_auth(headers.get("authorization", ""), headers)
        raw_time = headers.get("x-amz-date") or headers.get("date") or ""
    _check_scope(signed, region, service)
    credential = store.lookup(signed.access_key)
    if credential is None:
        raise errors.InvalidAccessKeyId(AWSAccessKeyId=signed.access_key)
    _check_time(signed, expires, now, raw_time)
    payload_hash = _payload_hash(signed, headers, body)
    _check_signed_headers(headers, signed)

    scope = f"{signed.date}/{signed.region}/{signed.service}/{TERMINATOR}"
    key = store.signing_key(credential, signed.date, signed.region, signed.service, derive_signing_key)
    drop = frozenset({"X-Amz-Signature"}) if signed.presigned else frozenset()
    signed_list = ";".join(signed.signed_headers)
    header_block = canonical_headers(headers, signed.signed_headers)
    uris = [canonical_uri(raw_path, signed.service)]
    if signed.service == "s3" and (raw_path or "/") != uris[0]:
        uris.append(raw_path or "/")  # a path sent exactly as the client signed it; it decodes alike
    candidates = [(uri, query, pairs) for uri in uris for query, pairs in query_readings(raw_query, drop)]
    first_string_to_sign = ""
    for uri, query, pairs in candidates:  # noqa: B007 - after the break, `pairs` is the reading that matched
        canonical = "\n".join((method.upper(), uri, query, header_block, signed_list, payload_hash))
        string_to_sign = _string_to_sign(signed.amz_date, scope, canonical)
        first_string_to_sign = first_string_to_sign or string_to_sign
        if signatures_equal(sign(key, string_to_sign), signed.signature):
            break
    else:
        uri, query, _ = candidates[0]
        redacted = canonical_headers(headers, signed.signed_headers, redact=True)
        raise errors.SignatureDoesNotMatch(
            AWSAccessKeyId=signed.access_key,
            StringToSign=first_string_to_sign,
            SignatureProvided=signed.signature,
            CanonicalRequest="\n".join((method.upper(), uri, query, redacted, signed_list, payload_hash)),
        )
    if body is not None and _HEX64.match(payload_hash) and hashlib.sha256(body).hexdigest() != payload_hash.lower():
        raise sha256_mismatch(payload_hash, hashlib.sha256(body).hexdigest())
    return AuthContext(
        credential=credential,
        service=signed.service,
        region=signed.region,
        amz_date=signed.amz_date,
        scope=scope,
        content_sha256=payload_hash,
        presigned=signed.presigned,
        signing_key=key,
        seed_signature=signed.signature.lower(),
        query=pairs,
    )


def _string_to_sign(amz_date: str, scope: str, canonical_request: str) -> str:
    digest = hashlib.sha256(canonical_request.encode("utf-8", "surrogateescape")).hexdigest()
    return "\n".join((ALGORITHM, amz_date, scope, digest))


def sha256_mismatch(client: str, computed: str) -> errors.S3Error:
    return errors.XAmzContentSHA256Mismatch(ClientComputedContentSHA256=client, S3ComputedContentSHA256=computed)
