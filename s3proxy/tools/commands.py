"""`s3proxy rewrap` and `s3proxy encrypt-existing`: bulk key replacement and in-place encryption.

Both talk to a running proxy over its S3 API (so the proxy stays the only writer of its keystore
and audit log): rewrap calls UpdateObjectEncryption (metadata only, no data moves), and
encrypt-existing copies each plaintext object onto itself with an SSE header (streamed through
the proxy, guarded by copy-source-if-match so a concurrent writer's object is never clobbered).
"""

from __future__ import annotations

import argparse
import os
import sys
import tomllib
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from .bulk import Skip, walk


def add_subcommands(sub: Any) -> None:
    rewrap = sub.add_parser("rewrap", help="re-wrap every object's data key under a KMS key (metadata only)")
    _common(rewrap)
    rewrap.add_argument("--key-id", help="target KMS key (id, ARN, alias); default: each SSE-KMS object's own key, newest material")
    rewrap.add_argument("--bucket-key", action="store_true", help="use an S3 Bucket Key for the re-wrapped objects")
    existing = sub.add_parser("encrypt-existing", help="encrypt, in place, the objects a backend held before the proxy")
    _common(existing)
    existing.add_argument("--sse", default="AES256", choices=("AES256", "aws:kms"), help="encryption to apply")
    existing.add_argument("--key-id", help="KMS key for --sse aws:kms (default alias/aws/s3)")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("bucket")
    p.add_argument("--prefix", default="")
    p.add_argument("--endpoint-url", default=os.environ.get("S3PROXY_URL", "http://127.0.0.1:8080"))
    p.add_argument("--data-dir", default=os.environ.get("S3PROXY_DATA_DIR", "data"), help="to read credentials.toml when no keys are given")
    p.add_argument("--access-key", default=os.environ.get("AWS_ACCESS_KEY_ID"))
    p.add_argument("--secret-key", default=os.environ.get("AWS_SECRET_ACCESS_KEY"))
    p.add_argument("--region", default=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"))
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--checkpoint", type=Path, help="file to resume from after an interruption")
    p.add_argument("--page-size", type=int, default=1000, help="objects listed (and checkpointed) at a time")
    p.add_argument("--dry-run", action="store_true", help="report what would change, change nothing")


def client(args: argparse.Namespace):
    access, secret = args.access_key, args.secret_key
    if not access or not secret:
        path = Path(args.data_dir) / "credentials.toml"
        try:
            first = tomllib.loads(path.read_text())["credentials"][0]
        except (OSError, KeyError, IndexError, tomllib.TOMLDecodeError):
            raise SystemExit(f"no credentials: pass --access-key/--secret-key or a --data-dir with {path.name}") from None
        access, secret = first["access_key"], first["secret_key"]
    return boto3.client(
        "s3", endpoint_url=args.endpoint_url, aws_access_key_id=access, aws_secret_access_key=secret,
        region_name=args.region, config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 3, "mode": "standard"},
                                               max_pool_connections=max(10, args.concurrency * 2)),
    )


def _head(s3, bucket: str, key: str) -> dict | None:
    """HEAD, or None for an SSE-C object (S3 answers a bare 400 to a HEAD without its key)."""
    try:
        return s3.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 400:
            return None
        raise


def run_rewrap(args: argparse.Namespace) -> int:
    s3 = client(args)

    def handle(entry: dict) -> None:
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

    report = walk(s3, args.bucket, args.prefix, handle, concurrency=args.concurrency, checkpoint=args.checkpoint, page_size=args.page_size)
    print(report.render("re-wrapped"))
    return 1 if report.failed else 0


def run_encrypt_existing(args: argparse.Namespace) -> int:
    s3 = client(args)

    def handle(entry: dict) -> None:
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

    report = walk(s3, args.bucket, args.prefix, handle, concurrency=args.concurrency, checkpoint=args.checkpoint, page_size=args.page_size)
    print(report.render("encrypted"))
    return 1 if report.failed else 0


def run(args: argparse.Namespace) -> int:
    try:
        return run_rewrap(args) if args.command == "rewrap" else run_encrypt_existing(args)
    except KeyboardInterrupt:
        print("\ninterrupted; rerun with the same --checkpoint to resume", file=sys.stderr)
        return 130
