"""The hostile review's attacks between accounts, the internal bucket under every spelling, bucket policies
that fail closed, AWS's documented encryption-enforcing policies through the real awscli, and ACLs as S3
answers them with BucketOwnerEnforced. Real boto3 and awscli, in front of both backends.

Users as in test_access_matrix.py: alice (account A), bert (account B), root (the default account,
which owns buckets older than accounts and, by that rule, would own the internal bucket).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
import requests
from botocore.exceptions import ClientError

from s3proxy.ops.common import canonical_user_id
from tests.hardening.harness import error_code, raw_request, sigv4_headers

from .test_access_matrix import SECRET, USERS, A, B, arn, client, start

INTERNAL = "s3proxy-internal"


@dataclass
class Proxy:
    url: str
    port: int
    s3: dict[str, Any]

    def kms(self, user: str) -> Any:
        return boto3.client("kms", endpoint_url=self.url, region_name="us-east-1", aws_access_key_id=USERS[user][1],
                            aws_secret_access_key=SECRET)

    def aws(self, user: str, *args: str) -> subprocess.CompletedProcess:
        env = dict(os.environ, AWS_ACCESS_KEY_ID=USERS[user][1], AWS_SECRET_ACCESS_KEY=SECRET, AWS_DEFAULT_REGION="us-east-1",
                   AWS_CONFIG_FILE=os.devnull, AWS_SHARED_CREDENTIALS_FILE=os.devnull)
        return subprocess.run([sys.executable, "-m", "awscli", "--endpoint-url", self.url, *args], env=env,
                              capture_output=True, timeout=120)

    def raw(self, user: str, method: str, target: str, *, host: str | None = None, headers: dict[str, str] | None = None,
            body: bytes = b"") -> tuple[int, str | None]:
        base = f"http://{host}:{self.port}" if host else self.url
        signed = sigv4_headers(method, base + target, body=body, headers=headers, access_key=USERS[user][1],
                               secret_key=SECRET)
        status, _, data = raw_request(self.url, method, target, headers=signed, body=body)
        return status, error_code(data)


@pytest.fixture(scope="module", params=["fs", "s3"], ids=["fs-backend", "moto-backend"])
def proxy(request, tmp_path_factory, moto_server) -> Iterator[Proxy]:
    thread = start(tmp_path_factory.mktemp(f"attacks-{request.param}"), request.param, moto_server,
                   virtual_host_domains="s3.test")
    clients = {user: client(thread.url, user) for user in USERS}
    clients["anonymous"] = client(thread.url, None)
    clients["root"].list_buckets()
    yield Proxy(thread.url, int(thread.url.rsplit(":", 1)[1]), clients)
    thread.stop()


def code(call) -> str:
    with pytest.raises(ClientError) as e:
        call()
    return e.value.response["Error"]["Code"]


def new_bucket(p: Proxy, user: str = "alice") -> str:
    name = f"at-{uuid.uuid4().hex[:12]}"
    p.s3[user].create_bucket(Bucket=name)
    return name


# --- the attacks ------------------------------------------------------------------------------------

def test_bob_cannot_read_overwrite_or_delete_alices_objects(proxy: Proxy) -> None:
    alice, bert = proxy.s3["alice"], proxy.s3["bert"]
    bucket = new_bucket(proxy)
    alice.put_object(Bucket=bucket, Key="secret", Body=b"alice's SSE-S3 data", ServerSideEncryption="AES256")
    assert code(lambda: bert.get_object(Bucket=bucket, Key="secret")) == "AccessDenied"
    assert code(lambda: bert.put_object(Bucket=bucket, Key="secret", Body=b"bob")) == "AccessDenied"
    assert code(lambda: bert.delete_object(Bucket=bucket, Key="secret")) == "AccessDenied"
    assert code(lambda: bert.list_objects_v2(Bucket=bucket)) == "AccessDenied"
    assert alice.get_object(Bucket=bucket, Key="secret")["Body"].read() == b"alice's SSE-S3 data"


def test_bob_cannot_change_alices_default_encryption_or_move_her_objects_to_his_key(proxy: Proxy) -> None:
    alice, bert = proxy.s3["alice"], proxy.s3["bert"]
    bucket = new_bucket(proxy)
    alice.put_object(Bucket=bucket, Key="doc", Body=b"alice")
    bobs_key = proxy.kms("bert").create_key()["KeyMetadata"]["Arn"]
    for config in ({"SSEAlgorithm": "AES256"}, {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": bobs_key}):
        assert code(lambda c=config: bert.put_bucket_encryption(
            Bucket=bucket, ServerSideEncryptionConfiguration={"Rules": [{"ApplyServerSideEncryptionByDefault": c}]})
        ) == "AccessDenied"
    assert code(lambda: bert.delete_bucket_encryption(Bucket=bucket)) == "AccessDenied"
    assert code(lambda: bert.update_object_encryption(Bucket=bucket, Key="doc",
                                                      ObjectEncryption={"SSEKMS": {"KMSKeyArn": bobs_key}})) == "AccessDenied"
    assert alice.get_object(Bucket=bucket, Key="doc")["Body"].read() == b"alice"


def test_a_copy_is_authorized_as_a_read_of_its_source(proxy: Proxy) -> None:
    alice, bert = proxy.s3["alice"], proxy.s3["bert"]
    hers, his = new_bucket(proxy), new_bucket(proxy, "bert")
    alice.put_object(Bucket=hers, Key="doc", Body=b"alice")
    assert code(lambda: bert.copy_object(Bucket=his, Key="stolen", CopySource={"Bucket": hers, "Key": "doc"})) == "AccessDenied"
    upload = bert.create_multipart_upload(Bucket=his, Key="stolen")["UploadId"]
    assert code(lambda: bert.upload_part_copy(Bucket=his, Key="stolen", UploadId=upload, PartNumber=1,
                                              CopySource={"Bucket": hers, "Key": "doc"})) == "AccessDenied"
    # with a grant of the read, the copy into his own bucket works
    alice.put_bucket_policy(Bucket=hers, Policy=json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{B}:root"}, "Action": "s3:GetObject",
         "Resource": f"arn:aws:s3:::{hers}/doc"}]}))
    bert.copy_object(Bucket=his, Key="granted", CopySource={"Bucket": hers, "Key": "doc"})
    assert bert.get_object(Bucket=his, Key="granted")["Body"].read() == b"alice"
    # ... and never a write into hers
    assert code(lambda: bert.copy_object(Bucket=hers, Key="x", CopySource={"Bucket": his, "Key": "granted"})) == "AccessDenied"


def test_buckets_belong_to_their_creators_account(proxy: Proxy) -> None:
    alice, anna, bert = proxy.s3["alice"], proxy.s3["anna"], proxy.s3["bert"]
    bucket = new_bucket(proxy)
    assert code(lambda: bert.create_bucket(Bucket=bucket)) == "BucketAlreadyExists"
    alice.create_bucket(Bucket=bucket)  # us-east-1: re-creating one's own bucket succeeds
    listed = anna.list_buckets()  # her account's buckets, which anna's policy lets her list
    assert bucket in [b["Name"] for b in listed["Buckets"]] and listed["Owner"]["ID"] == canonical_user_id(A)
    theirs = bert.list_buckets()
    assert bucket not in [b["Name"] for b in theirs["Buckets"]] and theirs["Owner"]["ID"] == canonical_user_id(B)
    assert INTERNAL not in [b["Name"] for b in proxy.s3["root"].list_buckets()["Buckets"]]
    assert code(lambda: bert.delete_bucket(Bucket=bucket)) == "AccessDenied"
    alice.delete_bucket(Bucket=bucket)  # and once deleted, the name is free for anyone
    bert.create_bucket(Bucket=bucket)
    assert code(lambda: alice.head_bucket(Bucket=bucket)) == "403"
    assert code(lambda: alice.get_bucket_location(Bucket=f"none-{uuid.uuid4().hex[:8]}")) == "NoSuchBucket"


def test_same_account_denials_say_why_and_other_accounts_learn_nothing(proxy: Proxy) -> None:
    bucket = new_bucket(proxy)
    proxy.s3["alice"].put_object(Bucket=bucket, Key="k", Body=b"x")
    with pytest.raises(ClientError) as e:
        proxy.s3["anna"].get_object_tagging(Bucket=bucket, Key="k")
    assert e.value.response["Error"]["Message"] == (
        f'User: {arn("anna")} is not authorized to perform: s3:GetObjectTagging on resource: '
        f'"arn:aws:s3:::{bucket}/k" with an explicit deny in an identity-based policy')
    with pytest.raises(ClientError) as e:
        proxy.s3["anna"].put_object(Bucket=bucket, Key="k", Body=b"x")
    assert e.value.response["Error"]["Message"].endswith("because no identity-based policy allows the s3:PutObject action")
    with pytest.raises(ClientError) as e:
        proxy.s3["bert"].get_object(Bucket=bucket, Key="k")
    assert e.value.response["Error"]["Message"] == "Access Denied"


def test_delete_objects_authorizes_each_key(proxy: Proxy) -> None:
    alice, bert = proxy.s3["alice"], proxy.s3["bert"]
    bucket = new_bucket(proxy)
    for key in ("open/a", "kept/b"):
        alice.put_object(Bucket=bucket, Key=key, Body=b"x")
    alice.put_bucket_policy(Bucket=bucket, Policy=json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": arn("bert")}, "Action": "s3:DeleteObject",
         "Resource": f"arn:aws:s3:::{bucket}/open/*"}]}))
    out = bert.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "open/a"}, {"Key": "kept/b"}]})
    assert [d["Key"] for d in out["Deleted"]] == ["open/a"]
    assert [(e["Key"], e["Code"]) for e in out["Errors"]] == [("kept/b", "AccessDenied")]
    assert [o["Key"] for o in alice.list_objects_v2(Bucket=bucket)["Contents"]] == ["kept/b"]


# --- the internal bucket, under every spelling ---------------------------------------------------------------

SPELLINGS = [INTERNAL, "S3PROXY-INTERNAL", "%73%33proxy-internal", "s3proxy%2Dinternal"]


@pytest.mark.parametrize("user", ["root", "alice"])
def test_the_internal_bucket_is_unreachable_by_every_path(proxy: Proxy, user: str) -> None:
    for spelling in SPELLINGS:
        for method, target in (("GET", f"/{spelling}"), ("GET", f"/{spelling}?versions"), ("GET", f"/{spelling}?uploads"),
                               ("HEAD", f"/{spelling}"), ("GET", f"/{spelling}/uploads/x"), ("PUT", f"/{spelling}/x"),
                               ("DELETE", f"/{spelling}/x"), ("GET", f"/{spelling}/x?tagging"),
                               ("GET", f"/{spelling}/x?attributes"), ("POST", f"/{spelling}/x?uploads"),
                               ("GET", f"/{spelling}?policy"), ("PUT", f"/{spelling}?encryption"),
                               ("DELETE", f"/{spelling}"), ("PUT", f"/{spelling}")):
            status, found = proxy.raw(user, method, target)
            assert status in (403, 400) and found in ("AccessDenied", "InvalidBucketName", None), (spelling, method, target)
            if status == 400:
                assert method == "PUT" and target == f"/{spelling}"  # CreateBucket: the strict name rules first
    # virtual-hosted style
    status, found = proxy.raw(user, "GET", "/?list-type=2", host=f"{INTERNAL}.s3.test")
    assert (status, found) == (403, "AccessDenied")
    # POST Object
    post = proxy.s3[user].generate_presigned_post(INTERNAL, "x")
    r = requests.post(proxy.url + "/" + INTERNAL, data=post["fields"], files={"file": b"x"})
    assert r.status_code == 403


@pytest.mark.parametrize("user", ["root", "alice"])
def test_the_internal_bucket_is_no_copy_source(proxy: Proxy, user: str) -> None:
    """The records hold wrapped SSE-C keys and their salts: copying one out would hand over a guessing oracle."""
    bucket = new_bucket(proxy, user)
    for source in (f"{INTERNAL}/uploads", f"/{INTERNAL}/uploads", "%73%33proxy-internal/uploads",
                   f"{INTERNAL}/uploads?versionId=x", "S3PROXY-INTERNAL/uploads"):
        for target in ("/copy", "/part?partNumber=1&uploadId=x"):
            status, found = proxy.raw(user, "PUT", f"/{bucket}{target}", headers={"x-amz-copy-source": source})
            assert (status, found) == (403, "AccessDenied"), (source, target)
    upload = proxy.s3[user].create_multipart_upload(Bucket=bucket, Key="k")["UploadId"]  # a record now exists
    assert code(lambda: proxy.s3[user].copy_object(Bucket=bucket, Key="leak", CopySource={
        "Bucket": INTERNAL, "Key": f"uploads/{upload}"})) == "AccessDenied"


# --- bucket policies fail closed -----------------------------------------------------------------------------

def _statement(bucket: str, **extra: Any) -> str:
    st = {"Effect": "Deny", "Principal": "*", "Action": "s3:PutObject", "Resource": f"arn:aws:s3:::{bucket}/*", **extra}
    return json.dumps({"Version": "2012-10-17", "Statement": [st]})


def test_a_policy_the_engine_cannot_evaluate_is_refused_at_put(proxy: Proxy) -> None:
    alice = proxy.s3["alice"]
    bucket = new_bucket(proxy)
    cases = [
        (_statement(bucket, Condition={"StringNotEquals": {"s3:x-amz-server-side-encryptoin": "AES256"}}),
         "Policy has an invalid condition key"),  # the misspelt key of a Deny: on AWS too, refused
        (_statement(bucket, Condition={"StringNotEqualz": {"s3:x-amz-server-side-encryption": "AES256"}}), None),
        (_statement(bucket, Condition={"StringEquals": {"s3:x-amz-acl": "private"}}), "Policy has an invalid condition key"),
        (_statement(bucket, Action="s3:PutObjekt"), "Policy has invalid action"),
        (_statement(bucket, Resource="arn:aws:s3:::another-bucket/*"), "Policy has invalid resource"),
        (_statement(bucket, Principal={"AWS": "bob"}), "Invalid principal in policy"),
        ("{not json", "This policy contains invalid Json"),
        ("[]", "Policies must be valid JSON and the first byte must be '{'"),
    ]
    for text, message in cases:
        with pytest.raises(ClientError) as e:
            alice.put_bucket_policy(Bucket=bucket, Policy=text)
        assert e.value.response["Error"]["Code"] == "MalformedPolicy", text
        if message:
            assert e.value.response["Error"]["Message"] == message
    assert code(lambda: alice.get_bucket_policy(Bucket=bucket)) == "NoSuchBucketPolicy"


def test_a_public_policy_needs_block_public_access_off(proxy: Proxy) -> None:
    alice = proxy.s3["alice"]
    bucket = new_bucket(proxy)
    public = json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{bucket}/*"}]})
    assert alice.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True, "IgnorePublicAcls": True, "BlockPublicPolicy": True, "RestrictPublicBuckets": True}
    assert code(lambda: alice.put_bucket_policy(Bucket=bucket, Policy=public)) == "AccessDenied"
    pinned = json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{bucket}/*",
         "Condition": {"StringEquals": {"aws:PrincipalAccount": B}}}]})
    alice.put_bucket_policy(Bucket=bucket, Policy=pinned)  # pinned to one account: not public
    assert alice.get_bucket_policy_status(Bucket=bucket)["PolicyStatus"]["IsPublic"] is False
    alice.delete_public_access_block(Bucket=bucket)
    assert code(lambda: alice.get_public_access_block(Bucket=bucket)) == "NoSuchPublicAccessBlockConfiguration"
    alice.put_bucket_policy(Bucket=bucket, Policy=public)
    assert alice.get_bucket_policy_status(Bucket=bucket)["PolicyStatus"]["IsPublic"] is True
    assert json.loads(alice.get_bucket_policy(Bucket=bucket)["Policy"]) == json.loads(public)
    alice.delete_bucket_policy(Bucket=bucket)
    assert code(lambda: alice.get_bucket_policy_status(Bucket=bucket)) == "NoSuchBucketPolicy"


def test_the_owners_administrators_are_never_locked_out_of_the_bucket_policy(proxy: Proxy) -> None:
    alice = proxy.s3["alice"]
    bucket = new_bucket(proxy)
    alice.put_bucket_policy(
        Bucket=bucket,
        Policy=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Deny",
                        "Principal": "*",
                        "Action": "s3:*",
                        "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"],
                    }
                ],
            }
        ),
    )
    assert code(lambda: alice.put_object(Bucket=bucket, Key="k", Body=b"x")) == "AccessDenied"
    assert code(lambda: alice.list_objects_v2(Bucket=bucket)) == "AccessDenied"
    alice.delete_bucket_policy(Bucket=bucket)  # as AWS's root user could
    alice.put_object(Bucket=bucket, Key="k", Body=b"x")


# --- AWS's documented encryption-enforcing policies, through awscli ------------------------------------------

def _awscli_policy(proxy: Proxy, bucket: str, statements: list[dict[str, Any]], tmp_path) -> None:
    path = tmp_path / "policy.json"
    path.write_text(json.dumps({"Version": "2012-10-17", "Id": "PutObjectPolicy", "Statement": statements}))
    done = proxy.aws("alice", "s3api", "put-bucket-policy", "--bucket", bucket, "--policy", f"file://{path}")
    assert done.returncode == 0, done.stderr


def test_deny_unencrypted_uploads_works_as_aws_documents(proxy: Proxy, tmp_path) -> None:
    bucket = new_bucket(proxy)
    _awscli_policy(proxy, bucket, [
        {"Sid": "DenyIncorrectEncryptionHeader", "Effect": "Deny", "Principal": "*", "Action": "s3:PutObject",
         "Resource": f"arn:aws:s3:::{bucket}/*", "Condition": {"StringNotEquals": {"s3:x-amz-server-side-encryption": "AES256"}}},
        {"Sid": "DenyUnEncryptedObjectUploads", "Effect": "Deny", "Principal": "*", "Action": "s3:PutObject",
         "Resource": f"arn:aws:s3:::{bucket}/*", "Condition": {"Null": {"s3:x-amz-server-side-encryption": "true"}}},
    ], tmp_path)
    small, large = tmp_path / "small", tmp_path / "large"
    small.write_bytes(b"s" * 1000)
    large.write_bytes(os.urandom(9 * 1024 * 1024))  # past awscli's 8 MiB multipart threshold
    refused = proxy.aws("alice", "s3", "cp", str(small), f"s3://{bucket}/plain")
    assert refused.returncode != 0 and b"AccessDenied" in refused.stderr
    refused = proxy.aws("alice", "s3", "cp", str(small), f"s3://{bucket}/kms", "--sse", "aws:kms")
    assert refused.returncode != 0 and b"AccessDenied" in refused.stderr
    for path in (small, large):  # a multipart upload's parts are judged by the SSE header it was created with
        done = proxy.aws("alice", "s3", "cp", str(path), f"s3://{bucket}/{path.name}", "--sse", "AES256")
        assert done.returncode == 0, done.stderr
    assert proxy.s3["alice"].head_object(Bucket=bucket, Key="large")["ContentLength"] == 9 * 1024 * 1024


def test_require_sse_kms_with_this_key_works_as_aws_documents(proxy: Proxy, tmp_path) -> None:
    bucket = new_bucket(proxy)
    kms = proxy.kms("alice")
    key, other = (kms.create_key()["KeyMetadata"]["Arn"] for _ in range(2))
    _awscli_policy(proxy, bucket, [
        {"Sid": "RequireKMSEncryption", "Effect": "Deny", "Principal": "*", "Action": "s3:PutObject",
         "Resource": f"arn:aws:s3:::{bucket}/*",
         "Condition": {"StringNotLikeIfExists": {"s3:x-amz-server-side-encryption-aws-kms-key-id": key}}},
    ], tmp_path)
    data = tmp_path / "data"
    data.write_bytes(b"d" * 100)
    for args in ((), ("--sse", "AES256"), ("--sse", "aws:kms", "--sse-kms-key-id", other)):
        refused = proxy.aws("alice", "s3", "cp", str(data), f"s3://{bucket}/x", *args)
        assert refused.returncode != 0 and b"AccessDenied" in refused.stderr, args
    done = proxy.aws("alice", "s3", "cp", str(data), f"s3://{bucket}/x", "--sse", "aws:kms", "--sse-kms-key-id", key)
    assert done.returncode == 0, done.stderr
    assert proxy.s3["alice"].head_object(Bucket=bucket, Key="x")["SSEKMSKeyId"] == key


# --- ACLs: BucketOwnerEnforced -------------------------------------------------------------------------------

def test_acls_are_answered_as_bucket_owner_enforced(proxy: Proxy) -> None:
    alice = proxy.s3["alice"]
    bucket = new_bucket(proxy)
    alice.put_object(Bucket=bucket, Key="k", Body=b"x")
    owner = {"ID": canonical_user_id(A), "DisplayName": A}
    for acl in (alice.get_bucket_acl(Bucket=bucket), alice.get_object_acl(Bucket=bucket, Key="k")):
        assert acl["Owner"] == owner
        assert acl["Grants"] == [{"Grantee": {**owner, "Type": "CanonicalUser"}, "Permission": "FULL_CONTROL"}]
    assert alice.get_bucket_ownership_controls(Bucket=bucket)["OwnershipControls"]["Rules"] == [
        {"ObjectOwnership": "BucketOwnerEnforced"}]
    alice.put_object_acl(Bucket=bucket, Key="k", ACL="bucket-owner-full-control")
    alice.put_bucket_acl(Bucket=bucket, ACL="private")
    alice.put_object_acl(Bucket=bucket, Key="k", AccessControlPolicy={
        "Owner": owner, "Grants": [{"Grantee": {"ID": owner["ID"], "Type": "CanonicalUser"}, "Permission": "FULL_CONTROL"}]})
    for call in (
        lambda: alice.put_object_acl(Bucket=bucket, Key="k", ACL="public-read"),
        lambda: alice.put_bucket_acl(Bucket=bucket, ACL="public-read-write"),
        lambda: alice.put_object(Bucket=bucket, Key="p", Body=b"x", ACL="public-read"),
        lambda: alice.put_object(
            Bucket=bucket, Key="p", Body=b"x", GrantRead='uri="http://acs.amazonaws.com/groups/global/AllUsers"'
        ),
        lambda: alice.put_object_acl(
            Bucket=bucket,
            Key="k",
            AccessControlPolicy={
                "Owner": owner,
                "Grants": [
                    {"Grantee": {"Type": "Group", "URI": "http://acs.amazonaws.com/groups/global/AllUsers"}, "Permission": "READ"}
                ],
            },
        ),
    ):
        assert code(call) == "AccessControlListNotSupported"
    assert code(lambda: alice.create_bucket(Bucket=f"at-{uuid.uuid4().hex[:12]}", ACL="public-read")) == \
        "InvalidBucketAclWithObjectOwnership"
    done = proxy.aws("alice", "s3api", "put-object-acl", "--bucket", bucket, "--key", "k", "--acl", "private")
    assert done.returncode == 0, done.stderr  # what `s3cmd setacl --acl-private` and the like send
