"""Which signature a request carries, and its verification: the one entry point of authentication.

A request is signed one way only: an `Authorization` header (SigV4 `AWS4-HMAC-SHA256 ...` or
SigV2 `AWS AKID:sig`), or a presigned query (SigV4 `X-Amz-*`, or SigV2 `AWSAccessKeyId` +
`Signature`). Two at once is InvalidArgument, none is AccessDenied, as S3 answers. SigV2 exists
for S3 only, and only while the `sigv2` setting allows it.
"""

from __future__ import annotations

from collections.abc import Mapping

from .. import errors
from . import sigv2, sigv4
from .context import AuthContext, decode_query
from .credentials import ANONYMOUS, CredentialStore

# x-amz-content-sha256 values an unsigned request may carry (a signed-chunk stream needs a signature)
_UNSIGNED_MODES = ("UNSIGNED-PAYLOAD", "STREAMING-UNSIGNED-PAYLOAD-TRAILER")


def authenticate(
    method: str,
    raw_path: str,
    raw_query: str,
    headers: Mapping[str, str],
    store: CredentialStore,
    *,
    now: float,
    region: str,
    service: str = "s3",
    body: bytes | None = None,
    v2_resource: str | None = None,
    sigv2_enabled: bool = True,
    routed_subresources: frozenset[str] = frozenset(),
    anonymous: bool = False,
) -> AuthContext:
    """Verify a request's signature for `service` in `region` and return who signed it.

    raw_path and raw_query are exactly as sent. `v2_resource` is the SigV2 resource when the
    Host names the bucket (virtual-hosted style: SigV2 signs the bucket in the resource).
    `routed_subresources` are the query names routing reads, for SigV2's unsigned-subresource
    rule. `body` is the small JSON body of a KMS request (its SHA-256 is the payload hash).
    `anonymous`: a request with no signature at all is the anonymous principal's (else AccessDenied).
    """
    authorization = headers.get("authorization")
    params = sigv4.query_params(raw_query)
    query_v4 = "X-Amz-Algorithm" in params or "X-Amz-Signature" in params or "X-Amz-Credential" in params
    query_v2 = "Signature" in params and "AWSAccessKeyId" in params
    if authorization is not None and (query_v4 or query_v2):
        raise errors.InvalidArgument(
            "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter, Signature query "
            "string parameter or the Authorization header should be specified",
            ArgumentName="Authorization",
            ArgumentValue=authorization.partition(" ")[0],
        )
    if authorization is not None and authorization.startswith("AWS ") or (query_v2 and not query_v4):
        if service != "s3" or not sigv2_enabled:
            raise sigv4.unsupported_mechanism()
        return sigv2.verify(
            method, v2_resource or raw_path, raw_query, headers, store, now=now, region=region,
            routed=routed_subresources,
        )
    if authorization is None and not query_v4:
        if anonymous and not ("Signature" in params or "AWSAccessKeyId" in params):
            return anonymous_context(raw_query, headers)
        raise errors.AccessDenied()
    return sigv4.verify(
        method, raw_path, raw_query, headers, store, now=now, region=region, service=service,
        presigned=authorization is None, body=body,
    )


def anonymous_context(raw_query: str, headers: Mapping[str, str]) -> AuthContext:
    """An unsigned request: no credential, the query decoded as sent (a `+` is a plus), and the body
    checked against x-amz-content-sha256 when it names a hash."""
    mode = headers.get("x-amz-content-sha256", "UNSIGNED-PAYLOAD")
    if mode not in _UNSIGNED_MODES and not (len(mode) == 64 and all(c in "0123456789abcdefABCDEF" for c in mode)):
        raise errors.AccessDenied()
    return AuthContext(ANONYMOUS, "s3", "", "", "", mode, False, b"", query=decode_query(raw_query, plus_is_space=False),
                       signature_version=0)
