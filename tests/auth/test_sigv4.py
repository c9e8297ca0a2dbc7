"""SigV4 verification: AWS's documented examples, requests signed by real botocore, and every
malformed or wrong request answered with the S3 error AWS gives."""

from __future__ import annotations

import hashlib
import time
from urllib.parse import quote, urlsplit

import pytest
from botocore.auth import S3SigV4Auth, S3SigV4QueryAuth, SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from s3proxy import errors
from s3proxy.auth import sigv4
from s3proxy.auth.credentials import Credential, CredentialStore
from s3proxy.auth.verify import authenticate as _authenticate

from .helpers import AKID, EXAMPLE_NOW, SECRET, example_store, headers

EMPTY = hashlib.sha256(b"").hexdigest()


def authenticate(*args, region=None, service=None, **kwargs):
    """The verifier with this endpoint's region and service filled from what the request was
    signed for (AWS's examples: us-east-1; botocore here: eu-west-1), unless a test pins them."""
    credential = ""
    hdrs = args[3]
    authz = hdrs.get("authorization") or ""
    if "Credential=" in authz:
        credential = authz.split("Credential=", 1)[1].split(",", 1)[0]
    elif "X-Amz-Credential=" in args[2]:
        credential = args[2].split("X-Amz-Credential=", 1)[1].split("&", 1)[0].replace("%2F", "/")
    parts = credential.split("/")
    if region is None:
        region = parts[2] if len(parts) == 5 else "us-east-1"
    if service is None:
        service = "kms" if len(parts) == 5 and parts[3] == "kms" else "s3"
    return _authenticate(*args, region=region, service=service, **kwargs)


def _auth(signed_headers: str, signature: str) -> str:
    return (
        f"AWS4-HMAC-SHA256 Credential={AKID}/20130524/us-east-1/s3/aws4_request,"
        f"SignedHeaders={signed_headers},Signature={signature}"
    )


# AWS S3 API reference, "Signature Calculations for the Authorization Header" and
# "Transferring Payload in Multiple Chunks" / "trailing headers": every row is a documented example.
AWS_EXAMPLES = [
    # GET Object with a Range header
    ("GET", "/test.txt", "", {
        "Host": "examplebucket.s3.amazonaws.com", "Range": "bytes=0-9",
        "x-amz-content-sha256": EMPTY, "x-amz-date": "20130524T000000Z",
        "Authorization": _auth("host;range;x-amz-content-sha256;x-amz-date",
                               "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41")}),
    # PUT Object: '$' in the key is sent encoded, Date header signed beside x-amz-date
    ("PUT", "/test%24file.text", "", {
        "Host": "examplebucket.s3.amazonaws.com", "Date": "Fri, 24 May 2013 00:00:00 GMT",
        "x-amz-date": "20130524T000000Z", "x-amz-storage-class": "REDUCED_REDUNDANCY",
        "x-amz-content-sha256": "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072",
        "Authorization": _auth("date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class",
                               "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd")}),
    # GET Bucket lifecycle: a query parameter without a value
    ("GET", "/", "lifecycle", {
        "Host": "examplebucket.s3.amazonaws.com", "x-amz-date": "20130524T000000Z",
        "x-amz-content-sha256": EMPTY,
        "Authorization": _auth("host;x-amz-content-sha256;x-amz-date",
                               "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543")}),
    # GET Bucket (list objects): query parameters sorted
    ("GET", "/", "max-keys=2&prefix=J", {
        "Host": "examplebucket.s3.amazonaws.com", "x-amz-date": "20130524T000000Z",
        "x-amz-content-sha256": EMPTY,
        "Authorization": _auth("host;x-amz-content-sha256;x-amz-date",
                               "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7")}),
    # chunked upload: the seed signature
    ("PUT", "/examplebucket/chunkObject.txt", "", {
        "Host": "s3.amazonaws.com", "x-amz-date": "20130524T000000Z", "x-amz-storage-class": "REDUCED_REDUNDANCY",
        "x-amz-content-sha256": "STREAMING-AWS4-HMAC-SHA256-PAYLOAD", "Content-Encoding": "aws-chunked",
        "x-amz-decoded-content-length": "66560", "Content-Length": "66824",
        "Authorization": _auth("content-encoding;content-length;host;x-amz-content-sha256;x-amz-date;"
                               "x-amz-decoded-content-length;x-amz-storage-class",
                               "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9")}),
    # chunked upload with a trailing CRC32C: the seed signature
    ("PUT", "/examplebucket/chunkObject.txt", "", {
        "Host": "s3.amazonaws.com", "x-amz-date": "20130524T000000Z", "x-amz-storage-class": "REDUCED_REDUNDANCY",
        "x-amz-content-sha256": "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER", "Content-Encoding": "aws-chunked",
        "x-amz-decoded-content-length": "66560", "x-amz-trailer": "x-amz-checksum-crc32c", "Content-Length": "66824",
        "Authorization": _auth("content-encoding;host;x-amz-content-sha256;x-amz-date;"
                               "x-amz-decoded-content-length;x-amz-storage-class;x-amz-trailer",
                               "106e2a8a18243abcf37539882f36619c00e2dfc72633413f02d3b74544bfeb8e")}),
]


@pytest.mark.parametrize("method,path,query,hdrs", AWS_EXAMPLES)
def test_aws_documented_examples_verify(method, path, query, hdrs):
    ctx = authenticate(method, path, query, headers(hdrs), example_store(), now=EXAMPLE_NOW, region="us-east-1")
    assert ctx.credential.access_key == AKID
    assert (ctx.service, ctx.region, ctx.scope) == ("s3", "us-east-1", "20130524/us-east-1/s3/aws4_request")
    assert ctx.seed_signature == hdrs["Authorization"].rsplit("=", 1)[1]
    assert "secret" not in repr(ctx).lower() and SECRET not in repr(ctx) and "signing_key" not in repr(ctx)


@pytest.mark.parametrize("method,path,query,hdrs", AWS_EXAMPLES)
def test_aws_documented_examples_fail_when_one_byte_changes(method, path, query, hdrs):
    changed = dict(hdrs, Host=hdrs["Host"] + "x")
    with pytest.raises(errors.SignatureDoesNotMatch) as info:
        authenticate(method, path, query, headers(changed), example_store(), now=EXAMPLE_NOW)
    assert info.value.fields["StringToSign"].startswith("AWS4-HMAC-SHA256\n20130524T000000Z\n")


def test_aws_documented_presigned_url():
    query = (
        "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2F"
        "aws4_request&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host&X-Amz-Signature="
        "aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"
    )
    hdrs = headers({"Host": "examplebucket.s3.amazonaws.com"})
    ctx = authenticate("GET", "/test.txt", query, hdrs, example_store(), now=EXAMPLE_NOW + 3600)
    assert ctx.presigned and ctx.content_sha256 == "UNSIGNED-PAYLOAD"
    with pytest.raises(errors.AccessDenied, match="Request has expired"):
        authenticate("GET", "/test.txt", query, hdrs, example_store(), now=EXAMPLE_NOW + 86401)
    with pytest.raises(errors.AccessDenied, match="not valid yet"):
        authenticate("GET", "/test.txt", query, hdrs, example_store(), now=EXAMPLE_NOW - 3600)


# --- requests signed by real botocore -----------------------------------------------------------

ENDPOINT = "http://127.0.0.1:8999"
KEYS = [
    "plain.txt",
    "with space.txt",
    "ünïcödé/ключ/鍵",
    "a+b=c&d",
    "100%25 and %",
    "~tilde~",
    "dots/../and/./slashes//x",
    "!$'()*,;:@",
]


def _botocore_signed(method, url, *, body=b"", extra=None, service="s3", auth_cls=None, expires=None):
    request = AWSRequest(method=method, url=url, data=body, headers=dict(extra or {}))
    creds = Credentials(AKID, SECRET)
    if expires is not None:
        S3SigV4QueryAuth(creds, service, "eu-west-1", expires=expires).add_auth(request)
    else:
        (auth_cls or S3SigV4Auth)(creds, service, "eu-west-1").add_auth(request)
    parts = urlsplit(request.url)
    hdrs = headers(list(request.headers.items()) + [("Host", parts.netloc)])
    return parts.path, parts.query, hdrs


@pytest.mark.parametrize("key", KEYS)
def test_botocore_header_signed_keys(key):
    path, query, hdrs = _botocore_signed("PUT", f"{ENDPOINT}/bucket/{quote(key, safe='/~')}", body=b"hello",
                                         extra={"x-amz-meta-note": "  two   spaces  ", "Content-Type": "text/plain"})
    ctx = authenticate("PUT", path, query, hdrs, example_store(), now=time.time(), region="eu-west-1")
    assert ctx.content_sha256 == hashlib.sha256(b"hello").hexdigest()


@pytest.mark.parametrize("query", ["list-type=2&prefix=&delimiter=%2F", "uploads", "acl=", "b=2&a=1&a=0&A=3",
                                   "prefix=%E2%9C%93%20x%2By&max-keys=5", "versionId=a%3Db%2Fc"])
def test_botocore_header_signed_queries(query):
    path, q, hdrs = _botocore_signed("GET", f"{ENDPOINT}/bucket?{query}")
    authenticate("GET", path, q, hdrs, example_store(), now=time.time())


def test_path_encoded_differently_from_the_signer_still_verifies():
    # the client signed the canonical form but sent "!" bare and "~" encoded in lower-case hex
    path, query, hdrs = _botocore_signed("GET", f"{ENDPOINT}/bucket/a%21b~c")
    authenticate("GET", "/bucket/a!b%7ec", query, hdrs, example_store(), now=time.time())


@pytest.mark.parametrize("key", KEYS)
def test_botocore_presigned_keys(key):
    path, query, hdrs = _botocore_signed("GET", f"{ENDPOINT}/bucket/{quote(key, safe='/~')}", expires=600)
    ctx = authenticate("GET", path, query, hdrs, example_store(), now=time.time())
    assert ctx.presigned and ctx.content_sha256 == "UNSIGNED-PAYLOAD"
    with pytest.raises(errors.AccessDenied, match="expired"):
        authenticate("GET", path, query, hdrs, example_store(), now=time.time() + 601)


def test_boto3_generate_presigned_url_put():
    import boto3
    from botocore.config import Config

    client = boto3.client("s3", endpoint_url=ENDPOINT, region_name="eu-west-1", config=Config(signature_version="s3v4"),
                          aws_access_key_id=AKID, aws_secret_access_key=SECRET)
    url = client.generate_presigned_url("put_object", Params={"Bucket": "bucket", "Key": "a b/ü+.txt"}, ExpiresIn=60)
    parts = urlsplit(url)
    ctx = authenticate("PUT", parts.path, parts.query, headers({"Host": parts.netloc}), example_store(),
                       now=time.time())
    assert ctx.presigned
    with pytest.raises(errors.SignatureDoesNotMatch):
        authenticate("GET", parts.path, parts.query, headers({"Host": parts.netloc}), example_store(), now=time.time())


def test_boto3_default_presigned_url_is_sigv2_and_verified_as_us_east_1_still_does():
    import boto3

    client = boto3.client("s3", endpoint_url=ENDPOINT, region_name="eu-west-1",
                          aws_access_key_id=AKID, aws_secret_access_key=SECRET)
    parts = urlsplit(client.generate_presigned_url("get_object", Params={"Bucket": "b", "Key": "k"}))
    assert "AWSAccessKeyId=" in parts.query  # still SigV2 by default in boto3
    ctx = authenticate("GET", parts.path, parts.query, headers({"Host": parts.netloc}), example_store(), now=time.time())
    assert ctx.presigned and ctx.content_sha256 == "UNSIGNED-PAYLOAD"
    with pytest.raises(errors.SignatureDoesNotMatch):  # the key is signed
        authenticate("GET", parts.path + "x", parts.query, headers({"Host": parts.netloc}), example_store(), now=time.time())


def test_kms_json_request_signed_by_botocore():
    body = b'{"KeyId": "alias/x", "Plaintext": "aGk="}'
    path, query, hdrs = _botocore_signed(
        "POST", f"{ENDPOINT}/", body=body, service="kms", auth_cls=SigV4Auth,
        extra={"X-Amz-Target": "TrentService.Encrypt", "Content-Type": "application/x-amz-json-1.1"})
    ctx = authenticate("POST", path, query, hdrs, example_store(), now=time.time(), body=body)
    assert ctx.service == "kms" and ctx.content_sha256 == hashlib.sha256(body).hexdigest()
    with pytest.raises(errors.SignatureDoesNotMatch):
        authenticate("POST", path, query, hdrs, example_store(), now=time.time(), body=body + b" ")
    with pytest.raises(errors.InvalidRequest):  # the caller must hand over the small JSON body
        authenticate("POST", path, query, hdrs, example_store(), now=time.time())


# --- errors ------------------------------------------------------------------------------------


def _signed_get(**extra):
    return _botocore_signed("GET", f"{ENDPOINT}/bucket/key", extra=extra)


def _replace_auth(hdrs, old, new):
    hdrs = hdrs.copy()
    hdrs["Authorization"] = hdrs["Authorization"].replace(old, new)
    return hdrs


def test_no_authentication_is_access_denied():
    with pytest.raises(errors.AccessDenied, match="Access Denied"):
        authenticate("GET", "/bucket/key", "", headers({"Host": "h"}), example_store(), now=time.time())


def test_unknown_access_key():
    other = CredentialStore([Credential("OTHERKEY", "secret", "o")])
    path, query, hdrs = _signed_get()
    with pytest.raises(errors.InvalidAccessKeyId) as info:
        authenticate("GET", path, query, hdrs, other, now=time.time())
    assert info.value.status == 403 and info.value.fields["AWSAccessKeyId"] == AKID


def test_wrong_secret_is_signature_mismatch_and_error_carries_no_secret():
    wrong = CredentialStore([Credential(AKID, "not-the-secret", "x")])
    path, query, hdrs = _signed_get(**{"x-amz-server-side-encryption-customer-key": "S0VZS0VZS0VZ"})
    with pytest.raises(errors.SignatureDoesNotMatch) as info:
        authenticate("GET", path, query, hdrs, wrong, now=time.time())
    text = repr(info.value) + str(info.value) + repr(info.value.fields)
    assert "S0VZS0VZS0VZ" not in text and "not-the-secret" not in text
    assert "<redacted>" in info.value.fields["CanonicalRequest"]


@pytest.mark.parametrize("skew", [-901, 901])
def test_request_time_too_skewed(skew):
    path, query, hdrs = _signed_get()
    with pytest.raises(errors.RequestTimeTooSkewed) as info:
        authenticate("GET", path, query, hdrs, example_store(), now=time.time() + skew)
    assert info.value.fields["MaxAllowedSkewMilliseconds"] == "900000"


@pytest.mark.parametrize("skew", [-899, 899])
def test_skew_within_fifteen_minutes_is_accepted(skew):
    path, query, hdrs = _signed_get()
    authenticate("GET", path, query, hdrs, example_store(), now=time.time() + skew)


@pytest.mark.parametrize("old,new,error,message", [
    # why each row: the part of the header AWS validates before the signature
    ("Credential=", "Credentail=", errors.AuthorizationHeaderMalformed, "requires three components"),
    ("/eu-west-1/s3/aws4_request", "/eu-west-1/s3", errors.AuthorizationHeaderMalformed, "Credential is mal-formed"),
    ("/s3/aws4_request", "/sqs/aws4_request", errors.AuthorizationHeaderMalformed, "incorrect service"),
    ("/s3/aws4_request", "/s3/aws5_request", errors.AuthorizationHeaderMalformed, "incorrect terminal"),
    ("SignedHeaders=", "SignedHeaders", errors.AuthorizationHeaderMalformed, "is malformed"),
    ("AWS4-HMAC-SHA256 ", "AWS4-HMAC-SHA512 ", errors.InvalidArgument, "Unsupported Authorization Type"),
    ("AWS4-HMAC-SHA256 ", "AWS4-ECDSA-P256-SHA256 ", errors.NotImplemented, "SigV4a"),
])
def test_malformed_authorization_header(old, new, error, message):
    path, query, hdrs = _signed_get()
    with pytest.raises(error, match=message):
        authenticate("GET", path, query, _replace_auth(hdrs, old, new), example_store(), now=time.time())


def test_wrong_region_when_pinned():
    path, query, hdrs = _signed_get()
    with pytest.raises(errors.AuthorizationHeaderMalformed, match="the region 'eu-west-1' is wrong") as info:
        authenticate("GET", path, query, hdrs, example_store(), now=time.time(), region="us-east-1")
    assert info.value.fields["Region"] == "us-east-1"


def test_credential_date_must_match_request_date():
    path, query, hdrs = _signed_get()
    hdrs = hdrs.copy()
    day = hdrs["X-Amz-Date"][:8]
    hdrs["Authorization"] = hdrs["Authorization"].replace(f"/{day}/", "/20000101/")
    with pytest.raises(errors.AuthorizationHeaderMalformed, match="Invalid credential date"):
        authenticate("GET", path, query, hdrs, example_store(), now=time.time())


def test_sigv2_header_and_query_are_checked_like_s3_checks_them():
    # S3's legacy REST authentication example (developer guide): GET /photos/puppy.jpg signed with the
    # documented example key pair gives this string to sign; a forged signature never passes
    hdrs = headers({"Host": "h", "Date": "Tue, 27 Mar 2007 19:36:42 +0000", "Authorization": f"AWS {AKID}:c2lnbmF0dXJl"})
    from s3proxy.auth.sigv2 import string_to_sign

    assert string_to_sign("GET", "/johnsmith/photos/puppy.jpg", "", hdrs, hdrs["Date"], {}) == (
        "GET\n\n\nTue, 27 Mar 2007 19:36:42 +0000\n/johnsmith/photos/puppy.jpg")
    with pytest.raises(errors.RequestTimeTooSkewed):  # 2007 is far outside the 15-minute window
        authenticate("GET", "/b/k", "", hdrs, example_store(), now=EXAMPLE_NOW)
    # the documented signature of that example verifies, at the example's own time
    signed = headers({"Host": "h", "Date": hdrs["Date"], "Authorization": f"AWS {AKID}:bWq2s1WEIj+Ydj0vQ697zp+IXMU="})
    ctx = authenticate("GET", "/johnsmith/photos/puppy.jpg", "", signed, example_store(), now=1175024202)
    assert ctx.credential.access_key == AKID and not ctx.presigned
    query = f"AWSAccessKeyId={AKID}&Expires=1369353600&Signature=abc%3D"
    with pytest.raises(errors.AccessDenied, match="expired"):
        authenticate("GET", "/b/k", query, headers({"Host": "h"}), example_store(), now=1369353601)
    with pytest.raises(errors.SignatureDoesNotMatch):
        authenticate("GET", "/b/k", query, headers({"Host": "h"}), example_store(), now=1369353000)


def test_header_and_query_auth_together_is_invalid_argument():
    path, query, hdrs = _botocore_signed("GET", f"{ENDPOINT}/bucket/key", expires=60)
    both = hdrs.copy()
    both["Authorization"] = _signed_get()[2]["Authorization"]
    with pytest.raises(errors.InvalidArgument, match="Only one auth mechanism"):
        authenticate("GET", path, query, both, example_store(), now=time.time())


def test_missing_date():
    path, query, hdrs = _signed_get()
    hdrs = hdrs.copy()
    del hdrs["X-Amz-Date"]
    with pytest.raises(errors.AccessDenied, match="valid Date or x-amz-date"):
        authenticate("GET", path, query, hdrs, example_store(), now=time.time())


def test_unsigned_amz_header_is_refused():
    path, query, hdrs = _signed_get()
    hdrs = hdrs.copy()
    hdrs["x-amz-meta-added"] = "later"
    with pytest.raises(errors.AccessDenied, match="not signed") as info:
        authenticate("GET", path, query, hdrs, example_store(), now=time.time())
    assert info.value.fields["HeadersNotSigned"] == "x-amz-meta-added"


@pytest.mark.parametrize("value,error", [
    ("STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD", errors.NotImplemented),
    ("not-a-hash", errors.InvalidArgument),
])
def test_bad_content_sha256_values(value, error):
    path, query, hdrs = _botocore_signed("PUT", f"{ENDPOINT}/bucket/key")
    hdrs = hdrs.copy()
    hdrs["X-Amz-Content-SHA256"] = value  # botocore overwrites it while signing
    with pytest.raises(error):
        authenticate("PUT", path, query, hdrs, example_store(), now=time.time())


def test_missing_content_sha256_for_s3():
    path, query, hdrs = _botocore_signed("GET", f"{ENDPOINT}/bucket/key", auth_cls=SigV4Auth)
    with pytest.raises(errors.InvalidRequest, match="x-amz-content-sha256"):
        authenticate("GET", path, query, hdrs, example_store(), now=time.time())


def _presigned_query(**changes):
    path, query, hdrs = _botocore_signed("GET", f"{ENDPOINT}/bucket/key", expires=60)
    pairs = dict(p.split("=", 1) for p in query.split("&"))
    for name, value in changes.items():
        name = name.replace("_", "-")
        if value is None:
            pairs.pop(name)
        else:
            pairs[name] = value
    return path, "&".join(f"{k}={v}" for k, v in pairs.items()), hdrs


@pytest.mark.parametrize("changes,message", [
    ({"X_Amz_Signature": None}, "requires the X-Amz-Algorithm"),
    ({"X_Amz_Algorithm": "AWS4-HMAC-SHA1"}, "only supports"),
    ({"X_Amz_Expires": "604801"}, "less than a week"),
    ({"X_Amz_Expires": "-1"}, "non-negative"),
    ({"X_Amz_Expires": "soon"}, "should be a number"),
    ({"X_Amz_Date": "2013-05-24"}, "ISO8601"),
    ({"X_Amz_Credential": "AKIAIOSFODNN7EXAMPLE%2F20130524"}, "Credential is mal-formed"),
])
def test_malformed_presigned_query(changes, message):
    path, query, hdrs = _presigned_query(**changes)
    with pytest.raises(errors.AuthorizationQueryParametersError, match=message):
        authenticate("GET", path, query, hdrs, example_store(), now=time.time())


def test_presigned_signature_tampered():
    path, query, hdrs = _presigned_query()
    with pytest.raises(errors.SignatureDoesNotMatch):
        authenticate("GET", path, query + "&extra=1", hdrs, example_store(), now=time.time())


def test_signing_key_matches_aws_general_reference():
    # AWS General Reference, "Examples of how to derive a signing key for Signature Version 4"
    key = sigv4.derive_signing_key("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "20120215", "us-east-1", "iam")
    assert key.hex() == "f4780e2d9f65fa895f9c67b32ce1baf0b0d8a43505a000a1a9e090d414db404d"
