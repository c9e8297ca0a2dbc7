"""POST policy signatures and evaluation (s3proxy.auth.post_policy), pure logic.

Vectors: AWS's own SigV4 POST example (S3 developer guide, "Example: Browser-Based Upload using
HTTP POST (Using AWS Signature Version 4)": its 864-character base64 policy and its signature
8afdbf40...), and botocore's generate_presigned_post run with a fixed clock. Answers: S3's as
recorded (LocalStack's validated tests; users' captures), see the module docstring.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json

import pytest

from s3proxy import errors
from s3proxy.auth.credentials import Credential, CredentialStore
from s3proxy.auth.post_policy import authenticate_post, check_policy, parse_policy

AKID, SECRET = "AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
STORE = CredentialStore([Credential(AKID, SECRET, "example")])

# AWS's example policy, with its CRLF line ends, exactly as the guide's base64 decodes
AWS_POLICY = (
    '{ "expiration": "2015-12-30T12:00:00.000Z",\r\n  "conditions": [\r\n    {"bucket": "sigv4examplebucket"},\r\n'
    '    ["starts-with", "$key", "user/user1/"],\r\n    {"acl": "public-read"},\r\n'
    '    {"success_action_redirect": "http://sigv4examplebucket.s3.amazonaws.com/successful_upload.html"},\r\n'
    '    ["starts-with", "$Content-Type", "image/"],\r\n    {"x-amz-meta-uuid": "14365123651274"},\r\n'
    '    {"x-amz-server-side-encryption": "AES256"},\r\n    ["starts-with", "$x-amz-meta-tag", ""],\r\n\r\n'
    '    {"x-amz-credential": "AKIAIOSFODNN7EXAMPLE/20151229/us-east-1/s3/aws4_request"},\r\n'
    '    {"x-amz-algorithm": "AWS4-HMAC-SHA256"},\r\n    {"x-amz-date": "20151229T000000Z" }\r\n  ]\r\n}'
)
AWS_POLICY_B64 = base64.b64encode(AWS_POLICY.encode()).decode()
AWS_SIGNATURE = "8afdbf4008c03f22c2cd3cdb72e4afbb1f6a588f3255ac628749a66d7f09699e"
BEFORE_EXPIRY = dt.datetime(2015, 12, 29, 12, tzinfo=dt.UTC).timestamp()


def aws_form(**changes: str) -> list[tuple[str, str]]:
    """The example form's fields (as the guide's HTML posts them, mixed case), after `changes`."""
    fields = {
        "key": "user/user1/photo.jpg", "acl": "public-read",
        "success_action_redirect": "http://sigv4examplebucket.s3.amazonaws.com/successful_upload.html",
        "Content-Type": "image/jpeg", "x-amz-meta-uuid": "14365123651274", "x-amz-server-side-encryption": "AES256",
        "X-Amz-Credential": "AKIAIOSFODNN7EXAMPLE/20151229/us-east-1/s3/aws4_request", "X-Amz-Algorithm": "AWS4-HMAC-SHA256",
        "X-Amz-Date": "20151229T000000Z", "x-amz-meta-tag": "", "Policy": AWS_POLICY_B64, "X-Amz-Signature": AWS_SIGNATURE,
    }
    fields.update(changes)
    return [(k, v) for k, v in fields.items() if v is not None]


def authenticate(fields, *, bucket="sigv4examplebucket", size=10, now=BEFORE_EXPIRY, sigv2=True):
    return authenticate_post(fields, bucket=bucket, size=size, store=STORE, now=now, region="us-east-1", sigv2_enabled=sigv2)


def failure(fn, *args, **kwargs) -> errors.S3Error:
    with pytest.raises(errors.S3Error) as excinfo:
        fn(*args, **kwargs)
    return excinfo.value


def test_aws_example_vector_verifies():
    assert len(AWS_POLICY_B64) == 864  # the guide's StringToSign
    auth = authenticate(aws_form())
    assert (auth.credential.access_key, auth.signature_version, auth.amz_date) == (AKID, 4, "20151229T000000Z")
    assert auth.scope == "20151229/us-east-1/s3/aws4_request"


def test_botocore_offline_vector_verifies():
    policy = ('{"expiration": "2015-12-29T01:00:00Z", "conditions": [{"bucket": "sigv4examplebucket"}, '
              '{"key": "user/user1/photo.jpg"}, {"x-amz-algorithm": "AWS4-HMAC-SHA256"}, '
              '{"x-amz-credential": "AKIAIOSFODNN7EXAMPLE/20151229/us-east-1/s3/aws4_request"}, '
              '{"x-amz-date": "20151229T000000Z"}]}')
    fields = [("key", "user/user1/photo.jpg"), ("x-amz-algorithm", "AWS4-HMAC-SHA256"),
              ("x-amz-credential", "AKIAIOSFODNN7EXAMPLE/20151229/us-east-1/s3/aws4_request"),
              ("x-amz-date", "20151229T000000Z"), ("policy", base64.b64encode(policy.encode()).decode()),
              ("x-amz-signature", "3364624b39010d9b06f5d9b8c9a18a6e478d261c048159c92f2fd6fa885f14e6")]
    assert authenticate(fields, now=dt.datetime(2015, 12, 29, 0, 30, tzinfo=dt.UTC).timestamp()).signature_version == 4


def test_a_wrong_signature_shows_the_policy_as_the_string_signed():
    err = failure(authenticate, aws_form(**{"X-Amz-Signature": "0" * 64}))
    assert (err.code, err.status) == ("SignatureDoesNotMatch", 403)
    assert err.fields["StringToSign"] == AWS_POLICY_B64 and err.fields["SignatureProvided"] == "0" * 64
    assert SECRET not in str(err.fields)


def test_the_policy_is_signed_as_received():
    err = failure(authenticate, aws_form(Policy=AWS_POLICY_B64[:-4]))  # truncated: the signature fails first
    assert err.code == "SignatureDoesNotMatch"


def test_expired():
    err = failure(authenticate, aws_form(), now=dt.datetime(2016, 1, 1, tzinfo=dt.UTC).timestamp())
    assert (err.code, err.status, err.text) == ("AccessDenied", 403, "Invalid according to Policy: Policy expired.")


@pytest.mark.parametrize("changes, shown", [
    ({"key": "user/user2/photo.jpg"}, '["starts-with", "$key", "user/user1/"]'),
    ({"Content-Type": "text/plain"}, '["starts-with", "$Content-Type", "image/"]'),
    ({"Content-Type": "image/jpg,text/plain"}, '["starts-with", "$Content-Type", "image/"]'),  # every list member
    ({"x-amz-meta-uuid": "14365123651275"}, '["eq", "$x-amz-meta-uuid", "14365123651274"]'),  # simple: shown as eq
    ({"x-amz-meta-tag": None}, '["starts-with", "$x-amz-meta-tag", ""]'),  # an absent field fails even ""
])
def test_failed_conditions(changes, shown):
    err = failure(authenticate, aws_form(**changes))
    assert (err.code, err.status) == ("AccessDenied", 403)
    assert err.text == f"Invalid according to Policy: Policy Condition failed: {shown}"


def test_content_type_list_passes_when_every_member_does():
    authenticate(aws_form(**{"Content-Type": "image/jpg,image/png"}))


def test_the_bucket_condition_is_the_requests_bucket():
    err = failure(authenticate, aws_form(), bucket="anotherbucket")
    assert err.text == 'Invalid according to Policy: Policy Condition failed: ["eq", "$bucket", "sigv4examplebucket"]'


def test_an_unnamed_field_is_an_extra_input_field():
    err = failure(authenticate, aws_form() + [("x-amz-meta-extra", "1"), ("Other", "2")])
    assert (err.code, err.status) == ("AccessDenied", 403)
    assert err.text == "Invalid according to Policy: Extra input fields: x-amz-meta-extra, Other"
    authenticate(aws_form() + [("x-ignore-tracker", "1")])  # x-ignore-* are exempt


def test_missing_signature_fields_are_named():
    err = failure(authenticate, aws_form(**{"X-Amz-Signature": None}))
    assert (err.code, err.status) == ("InvalidArgument", 400)
    assert (
        err.text
        == "Bucket POST must contain a field named 'X-Amz-Signature'.  If it is specified, please check the order of the fields."
    )
    assert failure(authenticate, aws_form(**{"X-Amz-Algorithm": None})).fields["ArgumentName"] == "X-Amz-Algorithm"


def test_scope_and_key_errors():
    wrong_region = aws_form(**{"X-Amz-Credential": "AKIAIOSFODNN7EXAMPLE/20151229/eu-west-1/s3/aws4_request"})
    err = failure(authenticate, wrong_region)
    assert (err.code, err.text, err.fields["Region"]) == (
        "InvalidArgument",
        "the region 'eu-west-1' is wrong; expecting 'us-east-1'",
        "us-east-1",
    )
    unknown = aws_form(**{"X-Amz-Credential": "AKIAUNKNOWN000000000/20151229/us-east-1/s3/aws4_request"})
    assert (failure(authenticate, unknown).code, failure(authenticate, unknown).status) == ("InvalidAccessKeyId", 403)
    assert failure(authenticate, aws_form(**{"X-Amz-Date": "2015-12-29"})).fields["ArgumentName"] == "X-Amz-Date"


def test_anonymous_forms_are_refused():
    err = failure(authenticate, [("key", "k"), ("policy", AWS_POLICY_B64)])
    assert (err.code, err.status) == ("AccessDenied", 403)


def _v2_form(policy: dict, **changes: str) -> list[tuple[str, str]]:
    text = base64.b64encode(json.dumps(policy).encode()).decode()
    signature = base64.b64encode(hmac.new(SECRET.encode(), text.encode(), hashlib.sha1).digest()).decode()
    fields = {"key": "k", "AWSAccessKeyId": AKID, "policy": text, "signature": signature}
    fields.update(changes)
    return [(k, v) for k, v in fields.items() if v is not None]


V2_POLICY = {"expiration": "2030-01-01T00:00:00Z", "conditions": [{"bucket": "b"}, {"key": "k"}, ["content-length-range", 1, 10]]}


def test_sigv2_forms():
    assert authenticate(_v2_form(V2_POLICY), bucket="b").signature_version == 2
    assert failure(authenticate, _v2_form(V2_POLICY, signature="AAAA"), bucket="b").code == "SignatureDoesNotMatch"
    err = failure(authenticate, _v2_form(V2_POLICY), bucket="b", sigv2=False)  # setting sigv2 = false
    assert (err.code, err.status) == ("InvalidRequest", 400)


@pytest.mark.parametrize("size, code, fields", [
    (11, "EntityTooLarge", {"ProposedSize": "11", "MaxSizeAllowed": "10"}),
    (0, "EntityTooSmall", {"ProposedSize": "0", "MinSizeAllowed": "1"}),
])
def test_content_length_range(size, code, fields):
    err = failure(authenticate, _v2_form(V2_POLICY), bucket="b", size=size)
    assert (err.code, err.status) == (code, 400) and err.fields == fields
    for edge in (1, 10):  # inclusive bounds
        authenticate(_v2_form(V2_POLICY), bucket="b", size=edge)


@pytest.mark.parametrize(
    "doc, message",
    [
        (b"not json", "Invalid Policy: Invalid JSON."),
        (b'{"conditions": []}', "Invalid Policy: Policy missing expiration."),
        (b'{"expiration": "2030-01-01T00:00:00Z"}', "Invalid Policy: Policy missing conditions."),
        (
            b'{"expiration": "2030-01-01T00:00:00Z", "conditions": {}}',
            "Invalid Policy: Invalid 'conditions' value: must be a List.",
        ),
        (
            b'{"expiration": "2030-01-01 00:00:00", "conditions": []}',
            "Invalid Policy: Invalid 'expiration' value: '2030-01-01 00:00:00'",
        ),
        (
            b'{"expiration": "2030-01-01T00:00:00+02:00", "conditions": []}',
            "Invalid Policy: Invalid 'expiration' value: '2030-01-01T00:00:00+02:00'",
        ),
        (b'{"Statement": [], "expiration": "2030-01-01T00:00:00Z", "conditions": []}', "Invalid Policy: Unexpected: 'statement'"),
        (
            b'{"expiration": "2030-01-01T00:00:00Z", "conditions": [{}]}',
            "Invalid Policy: Invalid Simple-Condition: Simple-Conditions must have exactly one property specified.",
        ),
        (
            b'{"expiration": "2030-01-01T00:00:00Z", "conditions": [{"Content-Length": 6199034}]}',
            "Invalid Policy: Invalid Simple-Condition: value must be a string.",
        ),
        (
            b'{"expiration": "2030-01-01T00:00:00Z", "conditions": [["content-length-range", 0, 512.0]]}',
            "Invalid Policy: Invalid JSON.",
        ),
        (
            b'{"expiration": "2030-01-01T00:00:00Z", "conditions": [[]]}',
            "Invalid Policy: Invalid Condition: missing operation identifier.",
        ),
        (
            b'{"expiration": "2030-01-01T00:00:00Z", "conditions": [["matches", "$key", "x"]]}',
            "Invalid Policy: Invalid Condition: unknown operation 'matches'.",
        ),
        (
            b'{"expiration": "2030-01-01T00:00:00Z", "conditions": [["content-length-range", 0]]}',
            "Invalid Policy: Invalid content-length-range: wrong number of arguments.",
        ),
    ],
)
def test_malformed_policies(doc, message):
    err = failure(parse_policy, base64.b64encode(doc).decode())
    assert (err.code, err.status, err.text) == ("InvalidPolicyDocument", 400, message)
    assert failure(parse_policy, "%%%").text == "Invalid Policy: invalid Base64 encoding."


def test_names_compare_without_case_values_with():
    policy = parse_policy(base64.b64encode(json.dumps({"expiration": "2030-01-01T00:00:00Z", "conditions": [
        {"bUcKeT": "b"}, ["StArTs-WiTh", "$KeY", "foo"], ["eq", "$Success_Action_Status", "201"],
        ["content-length-range", "5", "10"]]}).encode()).decode())
    now = dt.datetime(2029, 1, 1, tzinfo=dt.UTC).timestamp()
    check_policy(policy, [("kEy", "foo.txt"), ("SUCCESS_ACTION_STATUS", "201")], bucket="b", size=5, now=now, exempt=set())
    err = failure(
        check_policy, policy, [("key", "FOO.txt"), ("success_action_status", "201")], bucket="b", size=5, now=now, exempt=set()
    )
    assert err.code == "AccessDenied"


def test_a_name_without_dollar_and_a_bound_that_is_no_number_fail_as_conditions():
    now = dt.datetime(2029, 1, 1, tzinfo=dt.UTC).timestamp()
    for condition, shown in ((["eq", "key", "k"], '["eq", "key", "k"]'),
                             (["content-length-range", "test", "10"], '["content-length-range", "test", "10"]')):
        policy = parse_policy(base64.b64encode(json.dumps({"expiration": "2030-01-01T00:00:00Z", "conditions": [
            {"key": "k"}, condition]}).encode()).decode())
        err = failure(check_policy, policy, [("key", "k")], bucket="b", size=1, now=now, exempt=set())
        assert err.text == f"Invalid according to Policy: Policy Condition failed: {shown}"
