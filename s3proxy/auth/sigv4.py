"""Verify AWS Signature Version 4 on an incoming request: Authorization header or presigned query.

`authenticate(...)` checks a request against the proxy's own CredentialStore and returns an
AuthContext, or raises the S3Error AWS would answer. It never reads the body: the payload hash
the signature covers (`x-amz-content-sha256`, or a STREAMING-* token) is checked later by
`s3proxy.auth.body.open_body`, which uses AuthContext.signing_key and seed_signature to verify
aws-chunked chunk and trailer signatures.

Rules followed (AWS S3 API reference, "Authenticating Requests (AWS Signature Version 4)",
and the AWS General Reference, "Create a canonical request for Signature Version 4"):

* Canonical URI. For S3 the path is not normalised and each segment is URI-encoded once. We
  decode each segment of the path as sent and re-encode it with the SigV4 rules (everything but
  A-Z a-z 0-9 - _ . ~ percent-encoded, upper-case hex), so a client that sends `!` or `%7e`
  still matches; the path exactly as sent is tried second. For other services (kms) the path is
  normalised (dot segments removed, empty segments dropped) and encoded twice, as AWS does.
* Canonical query: names and values decoded and re-encoded the same way, sorted by name then
  value; `?uploads` becomes `uploads=`. X-Amz-Signature is left out for presigned requests.
* Canonical headers: the signed headers in the order given, values trimmed, inner runs of
  spaces collapsed, repeated headers joined with `,`.
* Header auth: every `x-amz-*` header present must be signed (AccessDenied otherwise), the
  request time (x-amz-date, else Date) must be within 15 minutes of `now`
  (RequestTimeTooSkewed), S3 requests must carry x-amz-content-sha256 (InvalidRequest).
* Presigned: all six X-Amz-* parameters, X-Amz-Expires 0..604800, expiry and "not yet valid"
  (more than 15 minutes in the future) answered AccessDenied as AWS does. Payload is
  UNSIGNED-PAYLOAD unless an x-amz-content-sha256 header is sent.
* SigV2 (`Authorization: AWS AKID:sig`, or `?AWSAccessKeyId=&Signature=`) is verified by
  `sigv2.py`, as S3's pre-2014 regions (us-east-1 among them) still do: boto3 presigns S3 URLs
  with it by default. SigV4a (AWS4-ECDSA-P256-SHA256 and the STREAMING-AWS4-ECDSA-* payloads) is
  answered 501 NotImplemented.
* KMS (service `kms`): clients do not send x-amz-content-sha256; pass the (small) JSON body as
  `body=` and its SHA-256 is used as the payload hash.
* Session tokens (X-Amz-Security-Token) are not issued by the proxy; the parameter is only
  covered by the signature like any other.

Error bodies never carry secrets: SignatureDoesNotMatch lists StringToSign and a canonical
request whose SSE-C key headers are redacted.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import hashlib
import hmac
import re
from dataclasses import dataclass, field
from typing import Mapping
from urllib.parse import quote, unquote, unquote_to_bytes

from s3proxy import errors
from s3proxy.auth.credentials import Credential, CredentialStore

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
SERVICES = ("s3", "kms")

# headers whose values are key material: never echoed in an error
_SECRET_HEADERS = frozenset(
    {
        "x-amz-server-side-encryption-customer-key",
        "x-amz-copy-source-server-side-encryption-customer-key",
    }
)
_HEX64 = re.compile(r"[0-9a-fA-F]{64}\Z")
_AMZ_DATE = re.compile(r"\d{8}T\d{6}Z\Z")
_PRESIGN_PARAMS = (
    "X-Amz-Algorithm",
    "X-Amz-Credential",
    "X-Amz-Signature",
    "X-Amz-Date",
    "X-Amz-SignedHeaders",
    "X-Amz-Expires",
)


@dataclass(frozen=True)
class AuthContext:
    """Who signed a request and what the body decoder needs to keep verifying it."""

    credential: Credential
    service: str
    region: str
    amz_date: str  # the request time as YYYYMMDDTHHMMSSZ
    scope: str  # date/region/service/aws4_request
    content_sha256: str  # x-amz-content-sha256 as sent; UNSIGNED-PAYLOAD for presigned unless sent
    presigned: bool
    signing_key: bytes = field(repr=False)
    seed_signature: str = ""


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


def _split_query(raw_query: str) -> list[tuple[str, str]]:
    """The raw (still encoded) name/value pairs of a query string; `a` gives ("a", "")."""
    pairs = []
    for part in raw_query.split("&"):
        if part:
            name, _, value = part.partition("=")
            pairs.append((name, value))
    return pairs


def canonical_query(raw_query: str, *, drop: frozenset[str] = frozenset()) -> str:
    pairs = [
        (_uri_encode(unquote_to_bytes(name)), _uri_encode(unquote_to_bytes(value)))
        for name, value in _split_query(raw_query)
        if unquote(name) not in drop
    ]
    return "&".join(f"{name}={value}" for name, value in sorted(pairs))


def _raw_query(raw_query: str, *, drop: frozenset[str] = frozenset()) -> str:
    pairs = [(name, value) for name, value in _split_query(raw_query) if unquote(name) not in drop]
    return "&".join(f"{name}={value}" for name, value in sorted(pairs))


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
    if not _AMZ_DATE.match(amz_date):
        return None
    try:
        when = dt.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.timezone.utc)
    except ValueError:
        return None
    return when.timestamp()


def _iso(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


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
            return errors.AuthorizationQueryParametersError(
                "Error parsing the X-Amz-Credential parameter; " + detail, **fields
            )
        return errors.AuthorizationHeaderMalformed("The authorization header is malformed; " + detail, **fields)


def _unsupported_mechanism() -> errors.S3Error:
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
        raise _unsupported_mechanism()
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
    return when.astimezone(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")


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


def _check_scope(signed: _Signed, region: str | None) -> None:
    malformed = _Malformed(signed.presigned)
    if signed.terminator != TERMINATOR:
        raise malformed(f'incorrect terminal "{signed.terminator}". This endpoint uses "{TERMINATOR}".')
    if signed.service not in SERVICES:
        raise malformed(f'incorrect service "{signed.service}". This endpoint belongs to "s3".')
    if region is not None and signed.region != region:
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
        raise errors.AccessDenied(
            "Request has expired",
            **{"X-Amz-Expires": str(expires), "Expires": _iso(when + expires), "ServerTime": _iso(now)},
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


def _check_all_amz_signed(headers: Mapping[str, str], signed_headers: list[str]) -> None:
    signed = set(signed_headers)
    unsigned = sorted({k.lower() for k in headers.keys() if k.lower().startswith("x-amz-")} - signed)
    if unsigned:
        raise errors.AccessDenied(
            "There were headers present in the request which were not signed", HeadersNotSigned=", ".join(unsigned)
        )


def _query_params(raw_query: str) -> dict[str, str]:
    params: dict[str, str] = {}
    for name, value in _split_query(raw_query):
        params.setdefault(unquote(name), unquote(value))
    return params


def authenticate(
    method: str,
    raw_path: str,
    raw_query: str,
    headers: Mapping[str, str],
    store: CredentialStore,
    *,
    now: float,
    region: str | None = None,
    body: bytes | None = None,
    v2_resource: str | None = None,
) -> AuthContext:
    """Verify a request's SigV4 signature (header or presigned) and return who signed it.

    raw_path and raw_query are exactly as sent (percent-encoded; aiohttp: request.raw_path split
    at "?"). headers is case-insensitive (aiohttp's request.headers). now is the server clock in
    epoch seconds. region=None accepts any region in the credential scope. body is for small
    non-S3 requests (KMS JSON) whose payload hash is the SHA-256 of the body.
    """
    authorization = headers.get("authorization")
    params = _query_params(raw_query)
    query_v4 = "X-Amz-Algorithm" in params or "X-Amz-Signature" in params or "X-Amz-Credential" in params
    query_v2 = "Signature" in params and "AWSAccessKeyId" in params
    if authorization is not None and (query_v4 or query_v2):
        raise errors.InvalidArgument(
            "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter, Signature query "
            "string parameter or the Authorization header should be specified",
            ArgumentName="Authorization",
            ArgumentValue=authorization,
        )
    if (authorization or "").startswith("AWS ") or (query_v2 and not query_v4):
        from .sigv2 import authenticate_v2  # SigV2, as S3's pre-2014 regions still accept it

        # SigV2 signs the bucket in the resource even when the Host names it (virtual-hosted style)
        return authenticate_v2(method, v2_resource or raw_path, raw_query, headers, store, now=now, region=region)
    expires: int | None = None
    if authorization is not None:
        signed = _parse_header_auth(authorization, headers)
        raw_time = headers.get("x-amz-date") or headers.get("date") or ""
    elif query_v4:
        signed, expires = _parse_query_auth(params)
        raw_time = signed.amz_date
    elif query_v2:
        raise _unsupported_mechanism()
    else:
        raise errors.AccessDenied()
    _check_scope(signed, region)
    credential = store.lookup(signed.access_key)
    if credential is None:
        raise errors.InvalidAccessKeyId(AWSAccessKeyId=signed.access_key)
    _check_time(signed, expires, now, raw_time)
    payload_hash = _payload_hash(signed, headers, body)
    if not signed.presigned:
        _check_all_amz_signed(headers, signed.signed_headers)

    scope = f"{signed.date}/{signed.region}/{signed.service}/{TERMINATOR}"
    key = derive_signing_key(credential.secret_key, signed.date, signed.region, signed.service)
    drop = frozenset({"X-Amz-Signature"}) if signed.presigned else frozenset()
    signed_list = ";".join(signed.signed_headers)
    header_block = canonical_headers(headers, signed.signed_headers)
    candidates = [(canonical_uri(raw_path, signed.service), canonical_query(raw_query, drop=drop))]
    if signed.service == "s3":
        as_sent = (raw_path or "/", _raw_query(raw_query, drop=drop))
        if as_sent != candidates[0]:
            candidates.append(as_sent)
    first_string_to_sign = ""
    for uri, query in candidates:
        canonical = "\n".join((method.upper(), uri, query, header_block, signed_list, payload_hash))
        string_to_sign = _string_to_sign(signed.amz_date, scope, canonical)
        first_string_to_sign = first_string_to_sign or string_to_sign
        if signatures_equal(sign(key, string_to_sign), signed.signature):
            break
    else:
        uri, query = candidates[0]
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
    )


def _string_to_sign(amz_date: str, scope: str, canonical_request: str) -> str:
    digest = hashlib.sha256(canonical_request.encode("utf-8", "surrogateescape")).hexdigest()
    return "\n".join((ALGORITHM, amz_date, scope, digest))


def sha256_mismatch(client: str, computed: str) -> errors.S3Error:
    return errors.XAmzContentSHA256Mismatch(ClientComputedContentSHA256=client, S3ComputedContentSHA256=computed)
