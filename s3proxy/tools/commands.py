"""`s3proxy rewrap` and `s3proxy encrypt-existing`: bulk key replacement and in-place encryption.

Both talk to a running proxy over its S3 API (so the proxy stays the only writer of its keystore
and audit log): rewrap calls UpdateObjectEncryption (metadata only, no data moves), and
encrypt-existing copies each plaintext object onto itself with an SSE header (streamed through
the proxy, guarded by copy-source-if-match so a concurrent writer's object is never clobbered).

`rewrap --upgrade` brings objects still in at-rest format version 1 (HEAD says
`x-s3proxy-format-version: 1`) to version 2 in place, metadata only (docs/FORMAT.md §19.2): an
SSE-KMS object is re-wrapped under its own key, an SSE-S3 one under the proxy's (the proxy's
UpdateObjectEncryption extension `<SSE-S3/>`), and the proxy seals the result. SSE-C objects need
their customer's key, which the proxy never has: they are listed and left. The bucket's own
records are re-sealed by the proxy the first time it reads them (GetBucketEncryption here).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import os
import sys
import threading
import tomllib
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import boto3
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from .bulk import Skip, walk


def add_subcommands(sub: Any) -> None:
    rewrap = sub.add_parser("rewrap", help="re-wrap every object's data key under a KMS key (metadata only)")
    _common(rewrap)
    rewrap.add_argument(
        "--key-id", help="target KMS key (id, ARN, alias); default: each SSE-KMS object's own key, newest material"
    )
    rewrap.add_argument("--bucket-key", action="store_true", help="use an S3 Bucket Key for the re-wrapped objects")
    rewrap.add_argument("--upgrade", action="store_true",
                        help="bring objects still in at-rest format version 1 to version 2 in place (metadata only); "
                             "SSE-C objects are listed and left")
    existing = sub.add_parser("encrypt-existing", help="encrypt, in place, the objects a backend held before the proxy")
    _common(existing)
    existing.add_argument("--sse", default="AES256", choices=("AES256", "aws:kms"), help="encryption to apply")
    existing.add_argument("--key-id", help="KMS key for --sse aws:kms (default alias/aws/s3)")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("bucket")
    p.add_argument("--prefix", default="")
    p.add_argument("--endpoint-url", default=os.environ.get("S3PROXY_URL", "http://127.0.0.1:8080"))
    p.add_argument(
        "--data-dir", default=os.environ.get("S3PROXY_DATA_DIR", "data"), help="to read credentials.toml when no keys are given"
    )
    p.add_argument("--access-key", default=os.environ.get("AWS_ACCESS_KEY_ID"))
    p.add_argument("--secret-key", default=os.environ.get("AWS_SECRET_ACCESS_KEY"))
    p.add_argument("--region", default=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"))
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--checkpoint", type=Path, help="file to resume from after an interruption")
    p.add_argument("--page-size", type=int, default=1000, help="objects listed (and checkpointed) at a time")
    p.add_argument("--dry-run", action="store_true", help="report what would change, change nothing")


def credentials(args: argparse.Namespace) -> tuple[str, str]:
    access, secret = args.access_key, args.secret_key
    if not access or not secret:
        path = Path(args.data_dir) / "credentials.toml"
        try:
            first = tomllib.loads(path.read_text())["credentials"][0]
        except (OSError, KeyError, IndexError, tomllib.TOMLDecodeError):
            raise SystemExit(f"no credentials: pass --access-key/--secret-key or a --data-dir with {path.name}") from None
        access, secret = first["access_key"], first["secret_key"]
    return access, secret


def client(args: argparse.Namespace) -> Any:  # a boto3 S3 client (boto3 has no type hints)
    access, secret = credentials(args)
    return boto3.client(
        "s3", endpoint_url=args.endpoint_url, aws_access_key_id=access, aws_secret_access_key=secret,
        region_name=args.region, config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 3, "mode": "standard"},
                                               max_pool_connections=max(10, args.concurrency * 2)),
    )


def _head(s3: Any, bucket: str, key: str) -> dict[str, Any] | None:
    """HEAD, or None for an SSE-C object (S3 answers a bare 400 to a HEAD without its key)."""
    try:
        head: dict[str, Any] = s3.head_object(Bucket=bucket, Key=key)
        return head
    except ClientError as exc:
        if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 400:
            return None
        raise


def run_rewrap(args: argparse.Namespace) -> int:
    if args.upgrade:
        return run_upgrade(args)
    s3 = client(args)

    def handle(entry: dict[str, Any]) -> None:
        head = _head(s3, args.bucket, entry["Key"])
        if head is None:
            raise Skip("SSE-C (the customer's key is not the proxy's to re-wrap)")
        if head["ETag"] != entry["ETag"]:
            raise Skip("changed since listed")
        sse = head.get("ServerSideEncryption")
        if sse is None:
            raise Skip("not encrypted (use encrypt-existing)")
        target = args.key_id or (head.get("SSEKMSKeyId") if sse == "aws:kms" else None)
        if target is None:
            raise Skip("SSE-S3 (give --key-id to move it to SSE-KMS)")
        if args.dry_run:
            raise Skip("dry run: would re-wrap")
        s3.update_object_encryption(
            Bucket=args.bucket, Key=entry["Key"],
            ObjectEncryption={"SSEKMS": {"KMSKeyArn": target, "BucketKeyEnabled": bool(args.bucket_key)}},
        )

    report = walk(
        s3, args.bucket, args.prefix, handle, concurrency=args.concurrency, checkpoint=args.checkpoint, page_size=args.page_size
    )
    print(report.render("re-wrapped"))
    return 1 if report.failed else 0


FORMAT_HEADER = "x-s3proxy-format-version"
_SSE_S3_TARGET = b'<ObjectEncryption xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><SSE-S3/></ObjectEncryption>'


def _rewrap_sse_s3(args: argparse.Namespace, key: str) -> None:
    """UpdateObjectEncryption with the proxy's `<SSE-S3/>` target, which boto3's model does not know:
    one SigV4-signed request made by hand."""
    access, secret = credentials(args)
    url = f"{args.endpoint_url.rstrip('/')}/{urllib.parse.quote(args.bucket)}/{urllib.parse.quote(key, safe='/~')}?encryption"
    md5 = base64.b64encode(hashlib.md5(_SSE_S3_TARGET).digest()).decode()
    request = AWSRequest("PUT", url, data=_SSE_S3_TARGET, headers={"Content-MD5": md5, "Content-Type": "application/xml"})
    S3SigV4Auth(Credentials(access, secret), "s3", args.region).add_auth(request)
    prepared = request.prepare()
    raw = urllib.request.Request(prepared.url, data=_SSE_S3_TARGET, method="PUT", headers=dict(prepared.headers))
    try:
        with urllib.request.urlopen(raw, timeout=120) as answer:
            answer.read()
    except urllib.error.HTTPError as exc:
        body = exc.read().decode("utf-8", "replace")
        code = body.split("<Code>", 1)[-1].split("</Code>", 1)[0] if "<Code>" in body else str(exc.code)
        raise ClientError({"Error": {"Code": code, "Message": body[:200]}}, "UpdateObjectEncryption") from None


def run_upgrade(args: argparse.Namespace) -> int:
    """`rewrap --upgrade` (FORMAT.md §19.2): every version-1 object of the prefix to version 2."""
    s3 = client(args)
    try:
        s3.get_bucket_encryption(Bucket=args.bucket)  # the proxy re-seals a version-1 bucket record as it reads it
    except ClientError as exc:
        print(f"bucket {args.bucket}: its configuration record did not read: {exc}", file=sys.stderr)
        return 1
    lock = threading.Lock()
    sse_c: list[str] = []

    def handle(entry: dict[str, Any]) -> None:
        head = _head(s3, args.bucket, entry["Key"])
        if head is None:
            with lock:
                sse_c.append(entry["Key"])
            raise Skip("SSE-C (its version is not visible without the customer's key; left as it is)")
        if head["ETag"] != entry["ETag"]:
            raise Skip("changed since listed")
        if head["ResponseMetadata"]["HTTPHeaders"].get(FORMAT_HEADER) != "1":
            raise Skip("already format version 2" if head.get("ServerSideEncryption") else "not encrypted (use encrypt-existing)")
        if args.dry_run:
            raise Skip("dry run: would upgrade")
        if head.get("ServerSideEncryption") == "aws:kms":
            s3.update_object_encryption(
                Bucket=args.bucket, Key=entry["Key"],
                ObjectEncryption={"SSEKMS": {"KMSKeyArn": head["SSEKMSKeyId"],
                                             "BucketKeyEnabled": bool(head.get("BucketKeyEnabled"))}},
            )
        else:
            _rewrap_sse_s3(args, entry["Key"])

    report = walk(
        s3, args.bucket, args.prefix, handle, concurrency=args.concurrency, checkpoint=args.checkpoint, page_size=args.page_size
    )
    print(report.render("upgraded"))
    if sse_c:
        print(f"SSE-C objects left as they are ({len(sse_c)}): to upgrade one, copy it onto itself with its key")
        for key in sorted(sse_c)[:50]:
            print(f"  {key}")
    uploads = s3.list_multipart_uploads(Bucket=args.bucket, Prefix=args.prefix).get("Uploads", [])
    if uploads:
        print(f"open multipart uploads ({len(uploads)}): complete or abort those begun before format 2 "
              "before turning read_format_v1 off")
    return 1 if report.failed else 0


def run_encrypt_existing(args: argparse.Namespace) -> int:
    s3 = client(args)

    def handle(entry: dict[str, Any]) -> None:
        head = _head(s3, args.bucket, entry["Key"])
        if head is None or "ServerSideEncryption" in head or "SSECustomerAlgorithm" in head:
            raise Skip("already encrypted")
        if args.dry_run:
            raise Skip("dry run: would encrypt")
        extra: dict[str, Any] = {"ServerSideEncryption": args.sse}
        if args.sse == "aws:kms" and args.key_id:
            extra["SSEKMSKeyId"] = args.key_id
        try:
            s3.copy_object(
                Bucket=args.bucket, Key=entry["Key"], CopySource={"Bucket": args.bucket, "Key": entry["Key"]},
                CopySourceIfMatch=head["ETag"], MetadataDirective="COPY", **extra,
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "PreconditionFailed":
                raise Skip("changed meanwhile (left to its new writer)") from None
            raise

    report = walk(
        s3, args.bucket, args.prefix, handle, concurrency=args.concurrency, checkpoint=args.checkpoint, page_size=args.page_size
    )
    print(report.render("encrypted"))
    return 1 if report.failed else 0


def run(args: argparse.Namespace) -> int:
    try:
        return run_rewrap(args) if args.command == "rewrap" else run_encrypt_existing(args)
    except KeyboardInterrupt:
        print("\ninterrupted; rerun with the same --checkpoint to resume", file=sys.stderr)
        return 130
