"""Who may do what to a bucket, through the real proxy with real boto3, in front of both backends.

Three accounts, one with two users: A = alice (full access) and anna (an identity policy that allows
reads only, and denies s3:GetObjectTagging outright); B = bert, with no grant; C = carl, whom A's
bucket policy grants s3:*. Plus the anonymous principal (requests carrying no signature), against a
bucket whose policy grants `Principal: *` reads, with Block Public Access off and back on.

Every S3 operation is run by each of them and must get AWS's answer: the owner's account succeeds,
anna reads but does not write, bert gets 403 AccessDenied everywhere (405 on the bucket-policy
operations, which only the owner's account may run), carl succeeds through the bucket policy, and
the anonymous principal reads only while Block Public Access lets the public policy count.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import ClientError

from s3proxy.app import ProxyThread
from s3proxy.settings import load
from tests.conftest import register_secret

A, B, C = "111111111111", "222222222222", "333333333333"
SECRET = "access-matrix-secret-0001/abcdefghijklmn"
register_secret(SECRET)
USERS = {"alice": (A, "AKIAMATRIXA0ALICE001"), "anna": (A, "AKIAMATRIXA0ANNA0001"), "bert": (B, "AKIAMATRIXB0BERT0001"),
         "carl": (C, "AKIAMATRIXC0CARL0001"), "root": ("000000000000", "AKIAMATRIXD0ROOT0001")}
ANNA_POLICY = {"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Action": ["s3:Get*", "s3:List*"], "Resource": "*"},
    {"Sid": "NoTags", "Effect": "Deny", "Action": "s3:GetObjectTagging", "Resource": "*"},
]}


def arn(user: str) -> str:
    return f"arn:aws:iam::{USERS[user][0]}:user/{user}"


@dataclass
class World:
    url: str
    clients: dict[str, Any]
    bucket: str  # alice's; carl granted s3:* by its policy
    public: str  # alice's; Principal * may read, Block Public Access deleted


def client(url: str, user: str | None) -> Any:
    config = Config(s3={"addressing_style": "path"}, retries={"total_max_attempts": 1},
                    **({"signature_version": UNSIGNED} if user is None else {}))
    keys = {} if user is None else {"aws_access_key_id": USERS[user][1], "aws_secret_access_key": SECRET}
    return boto3.client("s3", endpoint_url=url, region_name="us-east-1", config=config, **keys)


def start(tmp, backend: str, moto_url: str | None, **extra: str) -> ProxyThread:
    (tmp / "anna.json").write_text(json.dumps(ANNA_POLICY))
    config = tmp / "users.toml"
    config.write_text("".join(
        f'[[credentials]]\naccess_key = "{key}"\nsecret_key = "{SECRET}"\nuser = "{user}"\naccount = "{account}"\n'
        + ('policy_file = "anna.json"\n' if user == "anna" else "") for user, (account, key) in USERS.items()))
    flags = {"host": "127.0.0.1", "port": "0", "data_dir": str(tmp / "data"), "config": str(config), "backend": backend,
             **extra}
    if backend == "s3":
        flags.update(backend_url=moto_url, backend_access_key="backend", backend_secret_key="backend")
    return ProxyThread(load(flags, env={})).start()


@pytest.fixture(scope="module", params=["fs", "s3"], ids=["fs-backend", "moto-backend"])
def world(request, tmp_path_factory, moto_server) -> Iterator[World]:
    thread = start(tmp_path_factory.mktemp(f"matrix-{request.param}"), request.param, moto_server)
    clients = {user: client(thread.url, user) for user in USERS}
    clients["anonymous"] = client(thread.url, None)
    alice = clients["alice"]
    bucket, public = f"mx-{uuid.uuid4().hex[:12]}", f"mxp-{uuid.uuid4().hex[:12]}"
    for name in (bucket, public):
        alice.create_bucket(Bucket=name)
    alice.put_bucket_policy(Bucket=bucket, Policy=json.dumps({"Version": "2012-10-17", "Statement": [
        {"Sid": "carl", "Effect": "Allow", "Principal": {"AWS": arn("carl")}, "Action": "s3:*",
         "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"]}]}))
    alice.delete_public_access_block(Bucket=public)
    alice.put_bucket_policy(Bucket=public, Policy=json.dumps({"Version": "2012-10-17", "Statement": [
        {"Sid": "public-read", "Effect": "Allow", "Principal": "*", "Action": ["s3:GetObject", "s3:ListBucket"],
         "Resource": [f"arn:aws:s3:::{public}", f"arn:aws:s3:::{public}/*"]}]}))
    yield World(thread.url, clients, bucket, public)
    thread.stop()


class Ctx:
    """What one operation acts on: a fresh object of alice's, made for it."""

    def __init__(self, world: World, bucket: str) -> None:
        self.alice = world.clients["alice"]
        self.bucket = bucket
        self.key = f"k-{uuid.uuid4().hex[:8]}"
        self.alice.put_object(Bucket=bucket, Key=self.key, Body=b"alice's data", Tagging="team=a")

    def upload(self) -> str:
        return self.alice.create_multipart_upload(Bucket=self.bucket, Key=self.key)["UploadId"]


def _copy(c: Any, x: Ctx) -> Any:
    return c.copy_object(Bucket=x.bucket, Key=x.key + "-copy", CopySource={"Bucket": x.bucket, "Key": x.key})


def _upload_part_copy(c: Any, x: Ctx) -> Any:
    return c.upload_part_copy(Bucket=x.bucket, Key=x.key, UploadId=x.upload(), PartNumber=1,
                              CopySource={"Bucket": x.bucket, "Key": x.key})


def _complete(c: Any, x: Ctx) -> Any:
    upload = x.upload()
    etag = x.alice.upload_part(Bucket=x.bucket, Key=x.key, UploadId=upload, PartNumber=1, Body=b"p")["ETag"]
    return c.complete_multipart_upload(Bucket=x.bucket, Key=x.key, UploadId=upload,
                                       MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]})


def _delete_objects(c: Any, x: Ctx) -> Any:
    """DeleteObjects answers 200 and names each key it may not delete, as S3 does."""
    out = c.delete_objects(Bucket=x.bucket, Delete={"Objects": [{"Key": x.key}]})
    errors = out.get("Errors", [])
    if errors:
        raise ClientError({"Error": {"Code": errors[0]["Code"], "Message": errors[0]["Message"]}}, "DeleteObjects")
    return out


SSE = {"Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]}
PAB = {"BlockPublicAcls": True, "IgnorePublicAcls": True, "BlockPublicPolicy": True, "RestrictPublicBuckets": True}
READ, WRITE, POLICY = "read", "write", "policy"

# operation -> (kind, what it does); run by each principal on a fresh object of alice's
OPERATIONS: dict[str, tuple[str, Callable[[Any, Ctx], Any]]] = {
    "HeadBucket": (READ, lambda c, x: c.head_bucket(Bucket=x.bucket)),
    "GetBucketLocation": (READ, lambda c, x: c.get_bucket_location(Bucket=x.bucket)),
    "ListObjects": (READ, lambda c, x: c.list_objects(Bucket=x.bucket, Prefix="k-")),
    "ListObjectsV2": (READ, lambda c, x: c.list_objects_v2(Bucket=x.bucket, MaxKeys=5)),
    "ListObjectVersions": (READ, lambda c, x: c.list_object_versions(Bucket=x.bucket)),
    "ListMultipartUploads": (READ, lambda c, x: c.list_multipart_uploads(Bucket=x.bucket)),
    "GetObject": (READ, lambda c, x: c.get_object(Bucket=x.bucket, Key=x.key)["Body"].read()),
    "HeadObject": (READ, lambda c, x: c.head_object(Bucket=x.bucket, Key=x.key)),
    "GetObjectAttributes": (READ, lambda c, x: c.get_object_attributes(Bucket=x.bucket, Key=x.key,
                                                                       ObjectAttributes=["ETag"])),
    "GetObjectTagging": (READ, lambda c, x: c.get_object_tagging(Bucket=x.bucket, Key=x.key)),
    "GetObjectAcl": (READ, lambda c, x: c.get_object_acl(Bucket=x.bucket, Key=x.key)),
    "GetBucketAcl": (READ, lambda c, x: c.get_bucket_acl(Bucket=x.bucket)),
    "GetBucketEncryption": (READ, lambda c, x: c.get_bucket_encryption(Bucket=x.bucket)),
    "GetBucketVersioning": (READ, lambda c, x: c.get_bucket_versioning(Bucket=x.bucket)),
    "GetBucketOwnershipControls": (READ, lambda c, x: c.get_bucket_ownership_controls(Bucket=x.bucket)),
    "GetBucketPolicyStatus": (READ, lambda c, x: c.get_bucket_policy_status(Bucket=x.bucket)),
    "GetPublicAccessBlock": (READ, lambda c, x: c.get_public_access_block(Bucket=x.bucket)),
    "ListParts": (READ, lambda c, x: c.list_parts(Bucket=x.bucket, Key=x.key, UploadId=x.upload())),
    "GetBucketPolicy": (POLICY, lambda c, x: c.get_bucket_policy(Bucket=x.bucket)),
    "PutBucketPolicy": (POLICY, lambda c, x: c.put_bucket_policy(Bucket=x.bucket, Policy=c_policy_of(x))),
    "PutObject": (WRITE, lambda c, x: c.put_object(Bucket=x.bucket, Key=x.key, Body=b"overwritten")),
    "CopyObject": (WRITE, _copy),
    "PutObjectTagging": (WRITE, lambda c, x: c.put_object_tagging(Bucket=x.bucket, Key=x.key,
                                                                  Tagging={"TagSet": [{"Key": "t", "Value": "v"}]})),
    "DeleteObjectTagging": (WRITE, lambda c, x: c.delete_object_tagging(Bucket=x.bucket, Key=x.key)),
    "PutObjectAcl": (WRITE, lambda c, x: c.put_object_acl(Bucket=x.bucket, Key=x.key, ACL="private")),
    "PutBucketAcl": (WRITE, lambda c, x: c.put_bucket_acl(Bucket=x.bucket, ACL="private")),
    "CreateMultipartUpload": (WRITE, lambda c, x: c.create_multipart_upload(Bucket=x.bucket, Key=x.key)),
    "UploadPart": (WRITE, lambda c, x: c.upload_part(Bucket=x.bucket, Key=x.key, UploadId=x.upload(), PartNumber=1,
                                                     Body=b"part")),
    "UploadPartCopy": (WRITE, _upload_part_copy),
    "CompleteMultipartUpload": (WRITE, _complete),
    "AbortMultipartUpload": (WRITE, lambda c, x: c.abort_multipart_upload(Bucket=x.bucket, Key=x.key,
                                                                          UploadId=x.upload())),
    "DeleteObject": (WRITE, lambda c, x: c.delete_object(Bucket=x.bucket, Key=x.key)),
    "DeleteObjects": (WRITE, _delete_objects),
    "PutBucketEncryption": (WRITE, lambda c, x: c.put_bucket_encryption(
        Bucket=x.bucket, ServerSideEncryptionConfiguration=SSE)),
    "DeleteBucketEncryption": (WRITE, lambda c, x: c.delete_bucket_encryption(Bucket=x.bucket)),
    "PutPublicAccessBlock": (WRITE, lambda c, x: c.put_public_access_block(
        Bucket=x.bucket, PublicAccessBlockConfiguration=PAB)),
    "UpdateObjectEncryption": (WRITE, lambda c, x: c.update_object_encryption(
        Bucket=x.bucket, Key=x.key, ObjectEncryption={"SSEKMS": {"KMSKeyArn": "arn:aws:kms:us-east-1:222222222222:key/"
                                                                             "00000000-0000-0000-0000-000000000000"}})),
    "DeleteBucket": (WRITE, lambda c, x: c.delete_bucket(Bucket=x.bucket)),  # not empty: 409 once allowed
}


def c_policy_of(x: Ctx) -> str:
    """The policy the matrix bucket already has (putting it again changes nothing)."""
    return x.alice.get_bucket_policy(Bucket=x.bucket)["Policy"]


# what AWS answers, for an operation that is allowed, when the request itself fails afterwards
ALLOWED_FAILURES = {"DeleteBucket": "BucketNotEmpty", "GetBucketEncryption": "ServerSideEncryptionConfigurationNotFoundError",
                    "UpdateObjectEncryption": "KMS.NotFoundException"}  # it ran: the KMS key it names does not exist


def expected(user: str, kind: str, operation: str) -> str | None:
    """AWS's answer: None for success, else the error code."""
    if user == "alice":
        return None
    if user == "anna":
        if operation == "GetObjectTagging":
            return "AccessDenied"  # her policy's explicit Deny
        return None if kind in (READ,) or operation == "GetBucketPolicy" else "AccessDenied"
    if user == "carl":
        return "MethodNotAllowed" if kind == POLICY else None
    if user == "bert":
        return "MethodNotAllowed" if kind == POLICY else "AccessDenied"
    return "AccessDenied"  # anonymous on a bucket whose policy names no `*`


def outcome(call: Callable[[], Any]) -> str | None:
    try:
        call()
    except ClientError as exc:
        code = exc.response["Error"]["Code"]
        return {"403": "AccessDenied", "405": "MethodNotAllowed", "404": "NotFound"}.get(code, code)
    return None


@pytest.mark.parametrize("user", ["alice", "anna", "bert", "carl", "anonymous"])
@pytest.mark.parametrize("operation", list(OPERATIONS))
def test_matrix(world: World, user: str, operation: str) -> None:
    kind, run = OPERATIONS[operation]
    ctx = Ctx(world, world.bucket)
    want = expected(user, kind, operation)
    got = outcome(lambda: run(world.clients[user], ctx))
    if want is None and got is not None:
        assert got == ALLOWED_FAILURES.get(operation), f"{user} {operation}: {got}"
    else:
        assert got == want, f"{user} {operation}: {got}, AWS answers {want}"


PUBLIC_READS = {"GetObject", "HeadObject", "ListObjects", "ListObjectsV2"}


@pytest.mark.parametrize("operation", list(OPERATIONS))
def test_anonymous_reads_a_public_bucket_only_while_block_public_access_allows(world: World, operation: str) -> None:
    kind, run = OPERATIONS[operation]
    ctx = Ctx(world, world.public)
    anonymous = world.clients["anonymous"]
    if operation in ("HeadBucket", "ListObjectVersions"):  # s3:ListBucketVersions is not granted; HeadBucket is ListBucket
        want = None if operation == "HeadBucket" else "AccessDenied"
    else:
        want = None if operation in PUBLIC_READS else "AccessDenied"
    assert outcome(lambda: run(anonymous, ctx)) == want


def test_restrict_public_buckets_turns_a_public_policy_off(world: World) -> None:
    alice, anonymous, bert = world.clients["alice"], world.clients["anonymous"], world.clients["bert"]
    ctx = Ctx(world, world.public)
    assert anonymous.get_object(Bucket=world.public, Key=ctx.key)["Body"].read() == b"alice's data"
    assert bert.get_object(Bucket=world.public, Key=ctx.key)["Body"].read() == b"alice's data"  # `*` is everyone
    alice.put_public_access_block(Bucket=world.public, PublicAccessBlockConfiguration=PAB)
    try:
        for client in (anonymous, bert):
            assert outcome(lambda c=client: c.get_object(Bucket=world.public, Key=ctx.key)) == "AccessDenied"
        assert alice.get_object(Bucket=world.public, Key=ctx.key)["Body"].read() == b"alice's data"
        assert alice.get_bucket_policy_status(Bucket=world.public)["PolicyStatus"]["IsPublic"] is True
    finally:
        alice.delete_public_access_block(Bucket=world.public)
    assert anonymous.get_object(Bucket=world.public, Key=ctx.key)["Body"].read() == b"alice's data"
