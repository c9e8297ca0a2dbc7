"""SigV2 (HMAC-SHA1) verification for S3: presigned query URLs and `Authorization: AWS AKID:sig`.

AWS S3 still accepts SigV2 in the regions that predate 2014 (us-east-1 among them), and boto3's
`generate_presigned_url` still makes SigV2 URLs for S3 by default, so a proxy that refused them
would break the presigned links users make most. The string to sign is the legacy REST
authentication one (S3 developer guide, "Signing and authenticating REST requests"):

    VERB \n Content-MD5 \n Content-Type \n Date-or-Expires \n CanonicalizedAmzHeaders CanonicalizedResource

* Date-or-Expires: the `Expires` query parameter (presigned), else the Date header, or empty when
  the request carries x-amz-date (which then sits among the amz headers).
* CanonicalizedAmzHeaders: every `x-amz-*` header (and, presigned, every `x-amz-*` query
  parameter), names lower-cased, values trimmed and joined with "," for repeats, sorted, each
  followed by "\n".
* CanonicalizedResource: the path exactly as sent, then the sub-resources S3 signs (the list
  below, as botocore's HmacV1 signer uses), sorted, values decoded, as `?a&b=v`.

Presigned requests are checked against `Expires` (AccessDenied "Request has expired"), header
requests against the 15-minute skew window. The payload is not signed in SigV2: bodies are
checked only by Content-MD5 and checksums, as UNSIGNED-PAYLOAD.

What SigV2 leaves unsigned must not steer a request. The list of signed sub-resources is AWS's,
so signatures made by real clients match; a sub-resource the proxy routes on that the list
lacks (`encryption`, `attributes`, `list-type`: each turns a request into another operation) is
refused on a SigV2 request, as S3 refuses a mechanism it does not accept: sign it with SigV4.
Operators can turn SigV2 off altogether (setting `sigv2`).
"""

from __future__ import annotations

import base64
import email.utils
import hashlib
import hmac
import time
import urllib.parse
from collections.abc import Mapping

from .. import errors
from .context import AuthContext, decode_query
from .credentials import CredentialStore
from .sigv4 import unsupported_mechanism

MAX_SKEW = 15 * 60
SUB_RESOURCES = frozenset(
    "accelerate acl analytics cors defaultObjectAcl delete inventory lifecycle location logging metrics "
    "notification object-lock partNumber policy replication requestPayment response-cache-control "
    "response-content-disposition response-content-encoding response-content-language response-content-type "
    "response-expires restore select select-type storageClass tagging torrent uploadId uploads versionId "
    "versioning versions website".split()
)


def _subresources(raw_query: str, plus_is_space: bool) -> list[tuple[str, str | None]]:
    """The signed sub-resources of a query, values decoded (None: no `=`, as `?uploads`)."""
    subs = []
    for part in raw_query.split("&") if raw_query else []:
        name, sep, value = part.partition("=")
        if name in SUB_RESOURCES:
            value = value.replace("+", " ") if plus_is_space else value
            subs.append((name, urllib.parse.unquote(value) if sep else None))
    return subs


def string_to_sign(method: str, resource_path: str, raw_query: str, headers: Mapping[str, str], date: str,
                   query_amz: Mapping[str, str], *, plus_is_space: bool = False) -> str:
    amz: dict[str, list[str]] = {}
    for name, value in headers.items():
        if name.lower().startswith("x-amz-"):
            amz.setdefault(name.lower(), []).append(value.strip())
    for name, value in query_amz.items():
        amz.setdefault(name.lower(), []).append(value.strip())
    canonical_amz = "".join(f"{k}:{','.join(v)}\n" for k, v in sorted(amz.items()))
    subs = _subresources(raw_query, plus_is_space)
    resource = resource_path
    if subs:
        resource += "?" + "&".join(n if v is None else f"{n}={v}" for n, v in sorted(subs, key=lambda s: s[0]))
    return "\n".join(
        [method.upper(), headers.get("content-md5", "").strip(), headers.get("content-type", "").strip(), date]
    ) + "\n" + canonical_amz + resource


def verify(
    method: str, resource_path: str, raw_query: str, headers: Mapping[str, str], store: CredentialStore, *,
    now: float, region: str, routed: frozenset[str] = frozenset(),
) -> AuthContext:
    """Verify a SigV2 request. `routed` names the sub-resources the caller routes on: one that
    SigV2 does not sign (not in SUB_RESOURCES) could be added to a signed URL unseen, so a SigV2
    request carrying it is refused as S3 refuses a mechanism it does not accept."""
    full_query = raw_query
    pairs = decode_query(raw_query, plus_is_space=False)
    unsigned = sorted({name for name, _ in pairs} & (routed - SUB_RESOURCES))
    if unsigned:
        raise unsupported_mechanism()
    params = dict(reversed(pairs))  # the first value of each name
    authorization = headers.get("authorization")
    if authorization is not None:
        access_key, sep, signature = authorization[4:].strip().rpartition(":")
        if not sep or not access_key or not signature:
            raise errors.InvalidArgument("AWS authorization header is invalid.  Expected AwsAccessKeyId:signature",
                                         ArgumentName="Authorization", ArgumentValue="AWS " + access_key + ":<redacted>")
        date = "" if "x-amz-date" in headers else headers.get("date", "")
        when = _http_time(headers.get("x-amz-date") or headers.get("date"))
        if when is None:
            raise errors.AccessDenied("AWS authentication requires a valid Date or x-amz-date header")
        if abs(now - when) > MAX_SKEW:
            raise errors.RequestTimeTooSkewed(
                RequestTime=headers.get("x-amz-date") or headers.get("date", ""),
                ServerTime=email.utils.formatdate(now, usegmt=True),
                MaxAllowedSkewMilliseconds="900000",
            )
        query_amz: dict[str, str] = {}
    else:
        access_key, signature, date = params["AWSAccessKeyId"], params["Signature"], params.get("Expires", "")
        if not date.isascii() or not date.isdigit():
            raise errors.AccessDenied("Query-string authentication requires the Signature, Expires and AWSAccessKeyId parameters")
        if now > int(date):
            raise errors.AccessDenied("Request has expired", Expires=email.utils.formatdate(int(date), usegmt=True),
                                      ServerTime=email.utils.formatdate(now, usegmt=True))
        query_amz = {k: v for k, v in params.items() if k.lower().startswith("x-amz-")}
        raw_query = "&".join(
            p for p in raw_query.split("&") if p.partition("=")[0] not in ("AWSAccessKeyId", "Signature", "Expires")
        )
    credential = store.lookup(access_key)
    if credential is None:
        raise errors.InvalidAccessKeyId(AWSAccessKeyId=access_key)
    # a bucket's resource is "/bucket/" to some signers (botocore) and "/bucket" to others
    paths = [resource_path]
    if resource_path.count("/") == 1 and len(resource_path) > 1:
        paths.append(resource_path + "/")
    # a `+` reads as a space (form encoding) or as a plus (botocore sends %2B): the reading the
    # signature matched is the query that runs, as for SigV4; when both read alike, the form one
    rules = (True, False) if "+" in raw_query else (False,)
    provided = signature.encode("utf-8", "surrogateescape")
    secret = credential.secret_key.encode()
    first = ""
    for plus_is_space in rules:
        for path in paths:
            text = string_to_sign(method, path, raw_query, headers, date, query_amz, plus_is_space=plus_is_space)
            first = first or text
            digest = hmac.new(secret, text.encode("utf-8", "surrogateescape"), hashlib.sha1).digest()
            if hmac.compare_digest(base64.b64encode(digest), provided):
                break
        else:
            continue
        break
    else:
        raise errors.SignatureDoesNotMatch(AWSAccessKeyId=access_key, StringToSign=_redacted(first), SignatureProvided=signature)
    if plus_is_space:
        pairs = decode_query(full_query, plus_is_space=True)
    return AuthContext(
        credential=credential,
        service="s3",
        region=region,
        amz_date=time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now)),
        scope="",
        content_sha256="UNSIGNED-PAYLOAD",
        presigned=authorization is None,
        signing_key=b"",
        query=pairs,
        signature_version=2,
    )


def _redacted(to_sign: str) -> str:
    """The string to sign as an error may show it: SSE-C key headers never echoed."""
    lines = []
    for line in to_sign.split("\n"):
        name, sep, _ = line.partition(":")
        lines.append(f"{name}:<redacted>" if sep and name.endswith("-customer-key") else line)
    return "\n".join(lines)


def _http_time(value: str | None) -> float | None:
    if not value:
        return None
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return parsed.timestamp() if parsed.tzinfo else None
