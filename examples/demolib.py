"""What every example shares: arguments, clients, the five ways to write an object, and a look behind the proxy.

The examples talk to a running s3proxy (the README's `s3proxy serve`, http://127.0.0.1:8080) with
real boto3. To show what is *at rest* they read the backend directly, bypassing the proxy:
  * `--backend-url` (+ keys): an S3 backend (MinIO, moto, AWS) read with boto3;
  * otherwise `--data-dir` (default ./data): the embedded fs backend's SQLite index and blob
    files, opened read-only.
KMS calls are counted from the proxy's audit log (`DATA_DIR/kms/audit.log`, one JSON line per call,
which says who called: the proxy for an S3 request, or the client) when the data dir is readable;
else from the proxy's `/metrics` (`--metrics-url`, default ENDPOINT/metrics: every caller's KMS
operations, not told apart); else they are reported as not counted. Credentials: --access-key/
--secret-key, else AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, else the pair the proxy generated in
DATA_DIR/credentials.toml. HTTPS with a private CA (`s3proxy serve --tls self-signed`): AWS_CA_BUNDLE.

Every example cleans up after itself: the objects and buckets it made are deleted and the KMS keys
it made are scheduled for deletion (7 days, KMS's shortest wait; `aws kms cancel-key-deletion`
takes one back); `--keep` leaves everything for a look.
"""

from __future__ import annotations

import argparse
import collections
import io
import json
import os
import sqlite3
import sys
import time
import tomllib
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

from s3proxy.cse import AesGcmKeyring, CseClient, CseError, KmsKeyring  # noqa: E402

# A sentence no ciphertext will contain by chance: searching the backend for it proves the plaintext absent.
MARKER = b"s3proxy demo plaintext: the quick brown fox pays 42 EUR to the lazy dog. "
CSE_FORMAT_HEADER = "x-s3proxy-client-side-encryption"


def plaintext(size: int) -> bytes:
    """`size` bytes of recognisable text (MARKER repeated, each line numbered so no two chunks are equal)."""
    out = bytearray()
    line = 0
    while len(out) < size:
        out += b"%08d " % line + MARKER
        line += 1
    return bytes(out[:size])


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--endpoint", default=os.environ.get("S3PROXY_ENDPOINT", "http://127.0.0.1:8080"), help="the proxy's URL")
    p.add_argument("--access-key", default=os.environ.get("AWS_ACCESS_KEY_ID"), help="default: $AWS_ACCESS_KEY_ID, else DATA_DIR/credentials.toml")
    p.add_argument("--secret-key", default=os.environ.get("AWS_SECRET_ACCESS_KEY"), help="default: $AWS_SECRET_ACCESS_KEY, else DATA_DIR/credentials.toml")
    p.add_argument("--region", default=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"))
    p.add_argument("--data-dir", default="data", type=Path, help="the proxy's data dir: credentials, audit log, fs backend (default ./data)")
    p.add_argument("--backend-url", help="S3 backend behind the proxy, read directly to show what is at rest")
    p.add_argument("--backend-access-key", default=os.environ.get("BACKEND_ACCESS_KEY"))
    p.add_argument("--backend-secret-key", default=os.environ.get("BACKEND_SECRET_KEY"))
    p.add_argument("--bucket", help="bucket to use (default: a new one with a random name)")
    p.add_argument("--metrics-url", help="the proxy's Prometheus metrics, to count KMS calls when its audit log is not "
                   "readable (default: ENDPOINT/metrics)")
    p.add_argument("--keep", action="store_true", help="leave the buckets, objects and KMS keys made, instead of cleaning up")
    return p


def credentials(args: argparse.Namespace) -> tuple[str, str]:
    if args.access_key and args.secret_key:
        return args.access_key, args.secret_key
    path = args.data_dir / "credentials.toml"
    try:
        first = tomllib.loads(path.read_text(encoding="utf-8"))["credentials"][0]
    except (OSError, KeyError, IndexError, tomllib.TOMLDecodeError):
        sys.exit(f"no credentials: pass --access-key/--secret-key, set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or --data-dir with {path.name}")
    return first["access_key"], first["secret_key"]


# --- what the backend holds -------------------------------------------------------------------


@dataclass(frozen=True)
class AtRest:
    """One object as the backend stores it."""

    body: bytes
    metadata: dict[str, str]

    def first_bytes(self, n: int = 16) -> str:
        return self.body[:n].hex(" ")

    def shows(self, data: bytes) -> bool:
        """Whether any 32-byte window of `data` (probed every 1 KiB) or the marker appears in body or metadata."""
        haystacks = [self.body, json.dumps(self.metadata).encode()]
        probes = {data[i : i + 32] for i in range(0, max(len(data) - 32, 0) + 1, 1024)} | {MARKER[:32]}
        return any(p in h for p in probes if p for h in haystacks)


class FsBackendView:
    """The embedded fs backend, read-only: `objects/index.sqlite3` rows name blob files (s3proxy/backends/fs.py)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _row(self, bucket: str, key: str) -> tuple[dict[str, Any], list[list[Any]]]:
        db = sqlite3.connect(f"file:{self.root / 'index.sqlite3'}?mode=ro", uri=True)
        try:
            row = db.execute(
                "SELECT meta, blobs FROM objects WHERE bucket = ? AND key = ? AND latest = 1 AND marker = 0", (bucket, key)
            ).fetchone()
        finally:
            db.close()
        if row is None:
            raise KeyError(f"{bucket}/{key} not in the fs backend")
        return json.loads(row[0]), json.loads(row[1])

    def _blob(self, name: str) -> Path:
        return self.root / "blobs" / name[:2] / name

    def read(self, bucket: str, key: str) -> AtRest:
        meta, blobs = self._row(bucket, key)
        return AtRest(b"".join(self._blob(name).read_bytes() for name, _ in blobs), dict(meta.get("metadata") or {}))

    def flip_byte(self, bucket: str, key: str, offset: int) -> None:
        _, blobs = self._row(bucket, key)
        for name, size in blobs:
            if offset < size:
                with open(self._blob(name), "r+b") as f:
                    f.seek(offset)
                    byte = f.read(1)
                    f.seek(offset)
                    f.write(bytes([byte[0] ^ 0x01]))
                return
            offset -= size

    def describe(self) -> str:
        return f"fs backend files under {self.root}"


class S3BackendView:
    """An S3 backend (MinIO, moto, AWS) read straight, not through the proxy."""

    def __init__(self, client: Any, url: str) -> None:
        self.client = client
        self.url = url

    def read(self, bucket: str, key: str) -> AtRest:
        got = self.client.get_object(Bucket=bucket, Key=key)
        return AtRest(got["Body"].read(), dict(got.get("Metadata") or {}))

    def flip_byte(self, bucket: str, key: str, offset: int) -> None:
        held = self.read(bucket, key)
        body = bytearray(held.body)
        body[offset] ^= 0x01
        self.client.put_object(Bucket=bucket, Key=key, Body=bytes(body), Metadata=held.metadata)

    def describe(self) -> str:
        return f"S3 backend {self.url}"


class AuditLog:
    """KMS calls counted from the proxy's hash-chained audit log (one CloudTrail-shaped JSON line per call)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def mark(self) -> int:
        return self.path.read_bytes().count(b"\n") if self.path.exists() else 0

    def since(self, mark: int) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        lines = self.path.read_bytes().splitlines()[mark:]
        return [json.loads(line) for line in lines if line.strip()]


class MetricsCount:
    """KMS calls counted from the proxy's Prometheus counter s3proxy_kms_operations_total, by operation: every
    caller's (the proxy's for S3 requests, clients'), so who called is not told ("any")."""

    def __init__(self, url: str) -> None:
        self.url = url

    def _read(self) -> collections.Counter[str] | None:
        from prometheus_client.parser import text_string_to_metric_families

        try:
            with urllib.request.urlopen(self.url, timeout=10) as answer:
                text = answer.read().decode()
        except (OSError, urllib.error.URLError, ValueError):
            return None
        counts: collections.Counter[str] = collections.Counter()
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == "s3proxy_kms_operations_total":
                    counts[f"any {sample.labels.get('operation')}"] += int(sample.value)
        return counts

    def usable(self) -> bool:
        return self._read() is not None

    def mark(self) -> collections.Counter[str]:
        return self._read() or collections.Counter()

    def since(self, mark: collections.Counter[str]) -> list[str]:
        now = self._read() or collections.Counter()
        return [name for name in now for _ in range(now[name] - mark.get(name, 0))]


def who_called(record: dict[str, Any]) -> str:
    """'proxy' when s3proxy called KMS for an S3 request (CloudTrail's invokedBy / AWSService), else 'client'."""
    ident = record.get("userIdentity") or {}
    return "proxy" if ident.get("invokedBy") or ident.get("type") == "AWSService" else "client"


def summarise_calls(records: list[dict[str, Any]]) -> dict[str, int]:
    """{"proxy GenerateDataKey": 1, "client Decrypt": 1, ...}."""
    return dict(collections.Counter(f"{who_called(r)} {r.get('eventName')}" for r in records))


# --- the demo session ---------------------------------------------------------------------------


@dataclass
class Demo:
    args: argparse.Namespace
    s3: Any
    kms: Any
    backend: FsBackendView | S3BackendView | None
    audit: AuditLog | None
    counter: MetricsCount | None = None  # KMS calls from /metrics, when the audit log is not readable
    out: Callable[[str], None] = print
    buckets: list[str] = field(default_factory=list)  # made by this run: emptied and deleted at the end
    keys: list[str] = field(default_factory=list)  # KMS keys made by this run: scheduled for deletion at the end

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> "Demo":
        access, secret = credentials(args)
        config = Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1})

        def client(service: str) -> Any:
            return boto3.client(service, endpoint_url=args.endpoint, aws_access_key_id=access,
                                aws_secret_access_key=secret, region_name=args.region, config=config)

        backend: FsBackendView | S3BackendView | None = None
        if args.backend_url:
            backend = S3BackendView(boto3.client(
                "s3", endpoint_url=args.backend_url, aws_access_key_id=args.backend_access_key,
                aws_secret_access_key=args.backend_secret_key, region_name=args.region, config=config), args.backend_url)
        elif (args.data_dir / "objects" / "index.sqlite3").exists():
            backend = FsBackendView(args.data_dir / "objects")
        audit_path = args.data_dir / "kms" / "audit.log"
        audit = AuditLog(audit_path) if audit_path.exists() else None
        counter = None
        if audit is None:
            metrics = MetricsCount(args.metrics_url or args.endpoint.rstrip("/") + "/metrics")
            counter = metrics if metrics.usable() else None
        return cls(args, client("s3"), client("kms"), backend, audit, counter)

    @property
    def counting(self) -> str:
        """How KMS calls are counted, in words."""
        if self.audit is not None:
            return "KMS calls from the audit log"
        if self.counter is not None:
            return f"KMS calls from {self.counter.url} (every caller's at the time, not told apart)"
        return "audit log and metrics not readable: KMS calls not counted"

    def bucket(self, label: str) -> str:
        name = self.args.bucket or f"demo-{label}-{uuid.uuid4().hex[:10]}"
        try:
            self.s3.create_bucket(Bucket=name)
            self.buckets.append(name)
        except ClientError as exc:
            if error_code(exc) not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                raise
        return name

    def __enter__(self) -> "Demo":
        return self

    def __exit__(self, *exc: object) -> None:
        self.cleanup()

    def cleanup(self) -> None:
        """Delete the buckets this run made (with every object and upload in them) and schedule the KMS keys it
        made for deletion; say what was done (or, with --keep, what was left)."""
        if self.args.keep:
            self.out(f"kept (--keep): buckets {', '.join(self.buckets) or 'none'}; KMS keys {', '.join(self.keys) or 'none'}")
            return
        for name in self.buckets:
            count = empty_bucket(self.s3, name)
            self.s3.delete_bucket(Bucket=name)
            self.out(f"cleaned up: bucket {name} and its {count} objects deleted")
        for key_id in self.keys:
            self.kms.schedule_key_deletion(KeyId=key_id, PendingWindowInDays=7)
        if self.keys:
            self.out(f"cleaned up: KMS keys {', '.join(self.keys)} scheduled for deletion in 7 days, the shortest KMS "
                     "allows (aws kms cancel-key-deletion --key-id KEY takes one back)")

    def at_rest(self, bucket: str, key: str) -> AtRest | None:
        return self.backend.read(bucket, key) if self.backend is not None else None

    def show_at_rest(self, bucket: str, key: str, data: bytes) -> AtRest | None:
        """Print what the backend holds for the object and whether the plaintext is in it."""
        held = self.at_rest(bucket, key)
        if held is None:
            self.out("  at rest: backend not visible (pass --backend-url, or --data-dir of an fs-backend proxy)")
            return None
        self.out(f"  at rest ({self.backend.describe()}):")  # type: ignore[union-attr]
        self.out(f"    size       {len(held.body)} bytes for {len(data)} bytes of plaintext (+{len(held.body) - len(data)})")
        self.out(f"    first bytes {held.first_bytes()}   (plaintext starts {data[:16].hex(' ')})")
        for name, value in sorted(held.metadata.items()):
            self.out(f"    meta {name} = {shorten(value)}")
        self.out(f"    plaintext in backend bytes or metadata: {'YES' if held.shows(data) else 'no'}")
        return held

    def kms_calls(self, action: Callable[[], Any]) -> tuple[Any, dict[str, int] | None]:
        """Run `action` and return its result and the KMS calls it caused ({"proxy GenerateDataKey": 1, ...} from
        the audit log; {"any GenerateDataKey": 1, ...} from /metrics), or None when they cannot be counted."""
        if self.audit is not None:
            mark = self.audit.mark()
            result = action()
            return result, summarise_calls(self.audit.since(mark))
        if self.counter is not None:
            before = self.counter.mark()
            result = action()
            return result, dict(collections.Counter(self.counter.since(before)))
        return action(), None


def empty_bucket(s3: Any, bucket: str) -> int:
    """Delete every object and unfinished upload in `bucket` (the demo's buckets never have versioning on);
    how many objects went."""
    count = 0
    for upload in s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []):
        s3.abort_multipart_upload(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        doomed = [{"Key": o["Key"]} for o in page.get("Contents", [])]
        if doomed:
            s3.delete_objects(Bucket=bucket, Delete={"Objects": doomed, "Quiet": True})
            count += len(doomed)
    return count


def calls_text(calls: dict[str, int] | None) -> str:
    """KMS calls as the examples print them: a dict, 'none', or 'not counted'."""
    if calls is None:
        return "not counted"
    return str(calls) if calls else "none"


def shorten(value: str, width: int = 60) -> str:
    return value if len(value) <= width else value[: width - 3] + "..."


def error_code(exc: BaseException) -> str:
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", "")) or str(exc.response["ResponseMetadata"]["HTTPStatusCode"])
    return type(exc).__name__


def describe_error(exc: ClientError) -> str:
    return f"HTTP {exc.response['ResponseMetadata']['HTTPStatusCode']} {error_code(exc)}"


def outcome(action: Callable[[], Any]) -> str:
    """'HTTP 403 AccessDenied', 'ok', or the exception a broken transfer raised: a failure as the client sees it."""
    try:
        action()
    except ClientError as exc:
        return describe_error(exc)
    except CseError as exc:
        return shorten(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__, 70)
    except (BotoCoreError, OSError) as exc:
        return f"{type(exc).__name__} (transfer aborted)"
    return "ok"


# --- the five ways to write one object ---------------------------------------------------------------


class Mode:
    """How one mode writes and reads an object through the proxy; subclasses fill the request."""

    label = ""
    title = ""
    client_side = False

    def __init__(self, demo: Demo) -> None:
        self.demo = demo

    def put(self, bucket: str, key: str, data: bytes) -> dict[str, Any]:
        return self.demo.s3.put_object(Bucket=bucket, Key=key, Body=data, **self.put_args())

    def get(self, bucket: str, key: str) -> bytes:
        return self.demo.s3.get_object(Bucket=bucket, Key=key, **self.get_args())["Body"].read()

    def put_args(self) -> dict[str, Any]:
        return {}

    def get_args(self) -> dict[str, Any]:
        return {}

    def plain_get(self, bucket: str, key: str) -> tuple[str, bytes | None, dict[str, str]]:
        """GET with nothing but the S3 credentials: what any reader of the bucket gets."""
        try:
            got = self.demo.s3.get_object(Bucket=bucket, Key=key)
        except ClientError as exc:
            return describe_error(exc), None, {}
        return "ok", got["Body"].read(), dict(got["ResponseMetadata"]["HTTPHeaders"])


class SseS3(Mode):
    label, title = "sse-s3", "SSE-S3"

    def put_args(self) -> dict[str, Any]:
        return {"ServerSideEncryption": "AES256"}


def deny_decrypt_policy(original: str) -> str:
    """The key's policy plus an explicit Deny of kms:Decrypt to everyone (an explicit Deny wins)."""
    policy = json.loads(original)
    policy["Statement"].append({"Sid": "demo: deny reads", "Effect": "Deny", "Principal": {"AWS": "*"},
                                "Action": "kms:Decrypt", "Resource": "*"})
    return json.dumps(policy)


def key_failures(demo: Demo, key_id: str, read: Callable[[], Any]) -> dict[str, str]:
    """What `read` answers while the KMS key is disabled, pending deletion, or denied by its policy (restored after each)."""
    kms = demo.kms
    seen = {}
    kms.disable_key(KeyId=key_id)
    seen["key disabled"] = outcome(read)
    kms.enable_key(KeyId=key_id)
    kms.schedule_key_deletion(KeyId=key_id, PendingWindowInDays=7)
    seen["key pending deletion"] = outcome(read)
    kms.cancel_key_deletion(KeyId=key_id)
    kms.enable_key(KeyId=key_id)  # AWS leaves a key disabled after CancelKeyDeletion
    original = kms.get_key_policy(KeyId=key_id, PolicyName="default")["Policy"]
    kms.put_key_policy(KeyId=key_id, PolicyName="default", Policy=deny_decrypt_policy(original))
    seen["key policy denies kms:Decrypt"] = outcome(read)
    kms.put_key_policy(KeyId=key_id, PolicyName="default", Policy=original)
    seen["key restored"] = outcome(read)
    return seen


class SseKms(Mode):
    label, title = "sse-kms", "SSE-KMS"

    def __init__(self, demo: Demo, key_id: str) -> None:
        super().__init__(demo)
        self.key_id = key_id

    def put_args(self) -> dict[str, Any]:
        return {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": self.key_id}


class SseC(Mode):
    label, title = "sse-c", "SSE-C"

    def __init__(self, demo: Demo, customer_key: bytes) -> None:
        super().__init__(demo)
        self.customer_key = customer_key

    def put_args(self) -> dict[str, Any]:
        # boto3 base64-encodes the key and adds its MD5 (x-amz-server-side-encryption-customer-key-MD5)
        return {"SSECustomerAlgorithm": "AES256", "SSECustomerKey": self.customer_key}

    get_args = put_args


class Cse(Mode):
    """Client-side encryption with s3proxy.cse (AWS S3 Encryption Client v3 format); the proxy sees ciphertext."""

    client_side = True
    key_id: str | None = None

    def __init__(self, demo: Demo, keyring: Any, label: str, title: str) -> None:
        super().__init__(demo)
        self.client = CseClient(demo.s3, keyring)
        self.label, self.title = label, title

    @classmethod
    def with_kms(cls, demo: Demo, key_id: str) -> "Cse":
        mode = cls(demo, KmsKeyring(demo.kms, key_id), "cse-kms", "CSE (KMS key)")
        mode.key_id = key_id
        return mode

    @classmethod
    def with_local_key(cls, demo: Demo, master_key: bytes) -> "Cse":
        return cls(demo, AesGcmKeyring(master_key), "cse-local", "CSE (client key)")

    def put(self, bucket: str, key: str, data: bytes) -> dict[str, Any]:
        return {"cse": self.client.put_object(bucket, key, io.BytesIO(data))}

    def get(self, bucket: str, key: str) -> bytes:
        return self.client.get_bytes(bucket, key)


def new_kms_key(demo: Demo, description: str) -> str:
    key_id = str(demo.kms.create_key(Description=description)["KeyMetadata"]["KeyId"])
    demo.keys.append(key_id)
    return key_id


def customer_key() -> bytes:
    return os.urandom(32)


def timed(action: Callable[[], Any]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def encryption_headers(headers: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in sorted(headers.items()) if "server-side-encryption" in k or k == CSE_FORMAT_HEADER}


def walkthrough(demo: Demo, mode: Mode, bucket: str, key: str, data: bytes) -> AtRest | None:
    """The common story of every mode: write, read back, what a keyless reader gets, what is at rest, KMS calls."""
    out = demo.out
    out(f"== {mode.title}: PUT s3://{bucket}/{key} ({len(data)} bytes)")
    put, calls = demo.kms_calls(lambda: mode.put(bucket, key, data))
    if "ResponseMetadata" in put:
        for name, value in encryption_headers(put["ResponseMetadata"]["HTTPHeaders"]).items():
            out(f"  response {name}: {value}")
    else:
        out(f"  encrypted in this process before sending (format v{put['cse'].format_version}, key wrap {put['cse'].wrap_alg})")
    out(f"  KMS calls for the PUT: {calls_text(calls)}")
    got, calls = demo.kms_calls(lambda: mode.get(bucket, key))
    out(f"  GET with this mode's parameters: {'the same bytes' if got == data else 'DIFFERENT bytes'}; KMS calls: {calls_text(calls)}")
    status, body, headers = mode.plain_get(bucket, key)
    if body is None:
        out(f"  GET with S3 credentials only: {status}")
    else:
        what = "the plaintext" if body == data else f"{len(body)} bytes that are NOT the plaintext (ciphertext)"
        out(f"  GET with S3 credentials only: {what} {encryption_headers(headers) or ''}")
    return demo.show_at_rest(bucket, key, data)


def tamper_and_read(demo: Demo, mode: Mode, bucket: str, key: str, data: bytes) -> str:
    """Flip one stored byte in the middle of the object, behind the proxy's back, and GET it."""
    if demo.backend is None:
        return "not tried (backend not visible)"
    held = demo.backend.read(bucket, key)
    demo.backend.flip_byte(bucket, key, len(held.body) // 2)
    return outcome(lambda: mode.get(bucket, key))


def start(doc: str | None, label: str, argv: list[str] | None) -> tuple[Demo, bytes, str]:
    """A per-mode example's opening: its arguments, the demo session, 100 kB of plaintext, a fresh bucket."""
    demo = Demo.from_args(parser(doc or "").parse_args(argv))
    return demo, plaintext(100_000), demo.bucket(label)
