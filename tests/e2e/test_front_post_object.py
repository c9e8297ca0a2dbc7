"""POST Object (browser-based uploads) through the front door, in front of both backends: boto3's
`generate_presigned_post` and the real `requests.post` a web app would make (issue 20: a generic
403 and nothing said why).

Facts: S3 developer guide, "POST Object" and "Creating a POST Policy" (see auth/post_policy.py for
the error answers as S3 gives them). The file streams through the encrypt path of a PutObject:
the object is encrypted at rest like any other, bucket default encryption applies, SSE fields
work as SSE headers do.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import urllib.parse
import xml.etree.ElementTree as ET

import boto3
import pytest
import requests
from botocore.config import Config
from botocore.exceptions import ClientError

from .conftest import ACCESS_KEY, REGION, SECRET_KEY, start_proxy
from .front_helpers import client_for, serve_args, start_served
from .sse_helpers import CustomerKey, assert_sealed

MiB = 1024 * 1024


def _presigner(proxy, version: str = "s3v4"):
    return boto3.client("s3", endpoint_url=proxy.url, aws_access_key_id=proxy.access_key, aws_secret_access_key=proxy.secret_key,
                        region_name=REGION, config=Config(signature_version=version, s3={"addressing_style": "path"}))


def _post(
    post: dict, body: bytes = b"hello", *, filename: str = "hello.txt", extra: dict | None = None, **kwargs
) -> requests.Response:
    fields = {**post["fields"], **(extra or {})}
    return requests.post(post["url"], data=fields, files={"file": (filename, body)}, allow_redirects=False, timeout=60, **kwargs)


def _error(r: requests.Response) -> tuple[int, str, str]:
    doc = ET.fromstring(r.content)
    return r.status_code, doc.findtext("Code"), doc.findtext("Message")


@pytest.mark.parametrize("version", ["s3v4", "s3"])
def test_presigned_post_upload(proxy, s3, bucket, version):
    post = _presigner(proxy, version).generate_presigned_post(bucket, "up/${filename}")
    assert ("x-amz-signature" in post["fields"]) == (version == "s3v4")
    r = _post(post, b"hello world", filename="C:\\Users\\mary\\hello.txt")  # only the name after the last slash
    assert r.status_code == 204 and r.content == b"", r.text
    got = s3.get_object(Bucket=bucket, Key="up/hello.txt")
    assert got["Body"].read() == b"hello world"
    assert r.headers["ETag"] == got["ETag"] == '"' + hashlib.md5(b"hello world").hexdigest() + '"'
    assert r.headers["x-amz-server-side-encryption"] == got["ServerSideEncryption"] == "AES256"
    assert r.headers["Location"].endswith(f"/{bucket}/up%2Fhello.txt")
    assert_sealed(proxy, bucket, "up/hello.txt", b"hello world", "AES256")


def test_fields_shape_the_object_and_201_answers_a_document(proxy, s3, bucket):
    fields = {
        "Content-Type": "text/plain",
        "x-amz-meta-owner": "mary",
        "success_action_status": "201",
        "Cache-Control": "no-cache",
        "tagging": "<Tagging><TagSet><Tag><Key>t</Key><Value>v</Value></Tag></TagSet></Tagging>",
    }
    conditions = [{"Content-Type": "text/plain"}, ["starts-with", "$x-amz-meta-owner", ""], {"success_action_status": "201"},
                  ["starts-with", "$Cache-Control", ""], ["starts-with", "$tagging", ""]]
    post = _presigner(proxy).generate_presigned_post(bucket, "doc.txt", Fields=fields, Conditions=conditions)
    r = _post(post, b"document")
    assert r.status_code == 201, r.text
    doc = ET.fromstring(r.content)
    assert doc.tag == "PostResponse"  # no namespace, as S3 answers
    assert (doc.findtext("Bucket"), doc.findtext("Key"), doc.findtext("ETag")) == (bucket, "doc.txt", r.headers["ETag"])
    head = s3.head_object(Bucket=bucket, Key="doc.txt")
    assert (head["ContentType"], head["Metadata"], head["CacheControl"]) == ("text/plain", {"owner": "mary"}, "no-cache")
    assert s3.get_object_tagging(Bucket=bucket, Key="doc.txt")["TagSet"] == [{"Key": "t", "Value": "v"}]


def test_success_action_redirect(proxy, s3, bucket):
    target = "https://example.com/done?from=form"
    post = _presigner(proxy).generate_presigned_post(bucket, "a b/c.txt", Fields={"success_action_redirect": target},
                                                     Conditions=[["starts-with", "$success_action_redirect", "https://example.com/"]])
    r = _post(post)
    assert r.status_code == 303, r.text
    location = urllib.parse.urlsplit(r.headers["Location"])
    query = urllib.parse.parse_qs(location.query)
    assert location.netloc == "example.com" and query["from"] == ["form"]
    assert (query["bucket"], query["key"], query["etag"]) == ([bucket], ["a b/c.txt"], [r.headers["ETag"]])


def test_sse_kms_and_ssec_fields(proxy, s3, bucket):
    post = _presigner(proxy).generate_presigned_post(bucket, "kms", Fields={"x-amz-server-side-encryption": "aws:kms"},
                                                     Conditions=[{"x-amz-server-side-encryption": "aws:kms"}])
    r = _post(post, b"kms body")
    assert r.status_code == 204 and r.headers["x-amz-server-side-encryption"] == "aws:kms", r.text
    assert s3.head_object(Bucket=bucket, Key="kms")["ServerSideEncryption"] == "aws:kms"
    key = CustomerKey.new()
    ssec = {"x-amz-server-side-encryption-customer-algorithm": "AES256",
            "x-amz-server-side-encryption-customer-key": key.b64, "x-amz-server-side-encryption-customer-key-MD5": key.md5}
    post = _presigner(proxy).generate_presigned_post(bucket, "ssec", Fields=ssec, Conditions=[{k: v} for k, v in ssec.items()])
    r = _post(post, b"customer body")
    assert r.status_code == 204, r.text
    assert r.headers["x-amz-server-side-encryption-customer-key-MD5"] == key.md5
    assert s3.get_object(Bucket=bucket, Key="ssec", **key.args())["Body"].read() == b"customer body"
    with pytest.raises(ClientError) as refused:
        s3.get_object(Bucket=bucket, Key="ssec")  # the key is required, as for a PUT with SSE-C
    assert refused.value.response["Error"]["Code"] == "InvalidRequest"


def test_bucket_default_encryption_applies(proxy, s3, bucket):
    s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration={
        "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms"}}]})
    r = _post(_presigner(proxy).generate_presigned_post(bucket, "default"), b"by default")
    assert r.status_code == 204, r.text
    assert s3.head_object(Bucket=bucket, Key="default")["ServerSideEncryption"] == "aws:kms"


# refusals, each with S3's code and message ---------------------------------------------------------


def test_expired_policy(proxy, bucket):
    r = _post(_presigner(proxy).generate_presigned_post(bucket, "k", ExpiresIn=-5))
    assert _error(r) == (403, "AccessDenied", "Invalid according to Policy: Policy expired.")


def test_wrong_starts_with(proxy, s3, bucket):
    post = _presigner(proxy).generate_presigned_post(bucket, "user/mary/${filename}")
    r = _post(post, extra={"key": "user/eve/evil.txt"})
    assert _error(r) == (
        403,
        "AccessDenied",
        'Invalid according to Policy: Policy Condition failed: ["starts-with", "$key", "user/mary/"]',
    )
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0


def test_too_large_body(proxy, s3, bucket):
    post = _presigner(proxy).generate_presigned_post(bucket, "small", Conditions=[["content-length-range", 1, 10]])
    r = _post(post, b"x" * 11)
    assert _error(r) == (400, "EntityTooLarge", "Your proposed upload exceeds the maximum allowed size")
    assert b"<ProposedSize>11</ProposedSize>" in r.content and b"<MaxSizeAllowed>10</MaxSizeAllowed>" in r.content
    assert _post(post, b"x" * 10).status_code == 204


def test_unsigned_extra_field(proxy, s3, bucket):
    post = _presigner(proxy).generate_presigned_post(bucket, "k")
    r = _post(post, extra={"x-amz-meta-sneaky": "1"})
    assert _error(r) == (403, "AccessDenied", "Invalid according to Policy: Extra input fields: x-amz-meta-sneaky")
    assert _post(post, extra={"x-ignore-tracker": "1"}).status_code == 204  # x-ignore-* are exempt


@pytest.mark.parametrize("version, field", [("s3v4", "x-amz-signature"), ("s3", "signature")])
def test_bad_signature(proxy, bucket, version, field):
    post = _presigner(proxy, version).generate_presigned_post(bucket, "k")
    forged = dict(post["fields"])
    forged[field] = forged[field][::-1]
    r = _post({**post, "fields": forged})
    status, code, _ = _error(r)
    assert (status, code) == (403, "SignatureDoesNotMatch")
    assert SECRET_KEY.encode() not in r.content


def test_policy_edited_after_signing(proxy, bucket):
    post = _presigner(proxy).generate_presigned_post(bucket, "k", Conditions=[["content-length-range", 1, 10]])
    policy = json.loads(base64.b64decode(post["fields"]["policy"]))
    policy["conditions"] = [c for c in policy["conditions"] if not (isinstance(c, list) and c[0] == "content-length-range")]
    forged = {**post["fields"], "policy": base64.b64encode(json.dumps(policy).encode()).decode()}
    assert _error(_post({**post, "fields": forged}, b"x" * 100))[:2] == (403, "SignatureDoesNotMatch")


def test_unknown_access_key_and_anonymous(proxy, bucket):
    other = boto3.client("s3", endpoint_url=proxy.url, aws_access_key_id="AKIANOBODY0000000000", aws_secret_access_key="x" * 40,
                         region_name=REGION, config=Config(signature_version="s3v4", s3={"addressing_style": "path"}))
    assert _error(_post(other.generate_presigned_post(bucket, "k")))[:2] == (403, "InvalidAccessKeyId")
    r = requests.post(f"{proxy.url}/{bucket}", data={"key": "k"}, files={"file": ("f", b"x")}, timeout=30)
    assert _error(r)[:2] == (403, "AccessDenied")  # anonymous: no bucket here is public


def test_not_a_form_and_no_file(proxy, bucket):
    r = requests.post(
        f"{proxy.url}/{bucket}", data=b"key=k", headers={"Content-Type": "application/x-www-form-urlencoded"}, timeout=30
    )
    assert _error(r) == (412, "PreconditionFailed", "At least one of the pre-conditions you specified did not hold")
    assert b"<Condition>Bucket POST must be of the enclosure-type multipart/form-data</Condition>" in r.content
    post = _presigner(proxy).generate_presigned_post(bucket, "k")
    r = requests.post(post["url"], files={k: (None, v) for k, v in post["fields"].items()}, timeout=30)
    assert _error(r) == (400, "InvalidArgument", "POST requires exactly one file upload per request.")


def test_fields_before_the_file_are_limited_to_20_kib(proxy, bucket):
    post = _presigner(proxy).generate_presigned_post(bucket, "k", Conditions=[["starts-with", "$x-amz-meta-big", ""]])
    r = _post(post, extra={"x-amz-meta-big": "x" * 21000})
    assert _error(r)[:2] == (400, "MaxPostPreDataLengthExceeded")
    assert b"<MaxPostPreDataLengthBytes>20480</MaxPostPreDataLengthBytes>" in r.content


def test_unsupported_fields_are_refused_not_ignored(proxy, bucket):
    for fields, answer in (({"acl": "public-read"}, (400, "AccessControlListNotSupported")),
                           ({"x-amz-object-lock-mode": "GOVERNANCE"}, (501, "NotImplemented"))):
        post = _presigner(proxy).generate_presigned_post(bucket, "k", Fields=fields, Conditions=[fields])
        assert _error(_post(post))[:2] == answer
    post = _presigner(proxy).generate_presigned_post(bucket, "k", Fields={"acl": "private"}, Conditions=[{"acl": "private"}])
    assert _post(post).status_code == 204


def test_sigv2_forms_follow_the_sigv2_setting(tmp_path, bucket, proxy):
    thread, endpoint = start_proxy(tmp_path, "fs", None, sigv2="false")
    try:
        client_for(endpoint.url, endpoint.access_key, endpoint.secret_key).create_bucket(Bucket="nov2")
        post = _presigner(endpoint, "s3").generate_presigned_post("nov2", "k")
        assert _error(_post(post))[:2] == (400, "InvalidRequest")
        assert _post(_presigner(endpoint).generate_presigned_post("nov2", "k")).status_code == 204
    finally:
        thread.stop()


def test_internal_bucket_is_out_of_reach(proxy, s3, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")  # the internal bucket exists
    assert _error(_post(_presigner(proxy).generate_presigned_post("s3proxy-internal", "k")))[:2] == (403, "AccessDenied")


# the file's length, and what may follow it ---------------------------------------------------------


def test_a_large_file_streams_and_a_field_after_it_is_refused(proxy, s3, bucket):
    body = os.urandom(3 * MiB)  # past the 256 KiB read at once: streamed, its length from the request's
    post = _presigner(proxy).generate_presigned_post(bucket, "big")
    r = _post(post, body)
    assert r.status_code == 204, r.text
    assert s3.get_object(Bucket=bucket, Key="big")["Body"].read() == body
    # a field after a large file: its length is not the request's minus the close delimiter; nothing is stored
    fields = [(k, (None, v)) for k, v in post["fields"].items()] + [("file", ("f", body)), ("submit", (None, "Upload"))]
    r = requests.post(post["url"], files=fields, timeout=60)
    assert _error(r)[:2] == (400, "MalformedPOSTRequest")
    assert s3.get_object(Bucket=bucket, Key="big")["Body"].read() == body  # the first upload, untouched


def test_a_field_after_a_small_file_is_ignored_as_s3_does(proxy, s3, bucket):
    post = _presigner(proxy).generate_presigned_post(bucket, "small")
    fields = [(k, (None, v)) for k, v in post["fields"].items()] + [("file", ("f", b"tiny")), ("submit", (None, "Upload"))]
    assert requests.post(post["url"], files=fields, timeout=30).status_code == 204
    assert s3.get_object(Bucket=bucket, Key="small")["Body"].read() == b"tiny"


def test_a_content_md5_field_is_checked(proxy, s3, bucket):
    good = base64.b64encode(hashlib.md5(b"checked").digest()).decode()
    post = _presigner(proxy).generate_presigned_post(
        bucket, "md5", Fields={"Content-MD5": good}, Conditions=[{"Content-MD5": good}]
    )
    assert _post(post, b"checked").status_code == 204
    assert _error(_post(post, b"tampered"))[:2] == (400, "BadDigest")


@pytest.mark.slow
def test_a_64_mib_post_keeps_peak_memory_flat(tmp_path):
    served = start_served(
        serve_args(tmp_path / "data", "--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY, "--log-level", "warning")
    )
    try:
        s3 = client_for(served.url, ACCESS_KEY, SECRET_KEY)
        s3.create_bucket(Bucket="mem")
        presigner = boto3.client("s3", endpoint_url=served.url, aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY,
                                 region_name=REGION, config=Config(signature_version="s3v4", s3={"addressing_style": "path"}))
        _post(presigner.generate_presigned_post("mem", "warm"), os.urandom(2 * MiB))
        baseline = served.peak_rss()
        body = os.urandom(64 * MiB)
        r = _post(presigner.generate_presigned_post("mem", "big"), body)
        assert r.status_code == 204, r.text
        growth = served.peak_rss() - baseline
        digest = hashlib.sha256(s3.get_object(Bucket="mem", Key="big")["Body"].read()).digest()
        assert digest == hashlib.sha256(body).digest()
        print(f"peak RSS after a 64 MiB POST: +{growth / MiB:.1f} MiB")
        assert growth < 24 * MiB  # one buffered copy alone would be 64 MiB
    finally:
        served.stop()


def test_sigv4_post_needs_this_region(proxy, bucket):
    other = boto3.client("s3", endpoint_url=proxy.url, aws_access_key_id=proxy.access_key, aws_secret_access_key=proxy.secret_key,
                         region_name="eu-west-1", config=Config(signature_version="s3v4", s3={"addressing_style": "path"}))
    status, code, message = _error(_post(other.generate_presigned_post(bucket, "k")))
    assert (status, code, message) == (400, "InvalidArgument", "the region 'eu-west-1' is wrong; expecting 'us-east-1'")
