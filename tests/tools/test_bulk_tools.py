"""`s3proxy rewrap` and `s3proxy encrypt-existing`, run as the real CLI against a running proxy."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from botocore.exceptions import ClientError

N_OBJECTS = 300  # "a few hundred" (issue 8)


def cli(proxy, *args: str) -> list[str]:
    return [
        sys.executable, "-m", "s3proxy", *args, "--endpoint-url", proxy.url,
        "--access-key", proxy.access_key, "--secret-key", proxy.secret_key,
    ]


def _fill(s3, bucket: str, n: int, **extra) -> dict[str, bytes]:
    bodies = {f"obj/{i:04d}": f"body-{i}-{uuid.uuid4().hex}".encode() for i in range(n)}
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda kv: s3.put_object(Bucket=bucket, Key=kv[0], Body=kv[1], **extra), bodies.items()))
    return bodies


def test_rewrap_resumes_after_interruption_and_never_clobbers_a_concurrent_writer(moto_proxy, tmp_path):
    s3, kms = moto_proxy.client(max_pool_connections=32), moto_proxy.client("kms")
    bucket = f"rw-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket)
    old, new = (kms.create_key()["KeyMetadata"]["Arn"] for _ in range(2))
    bodies = _fill(s3, bucket, N_OBJECTS, ServerSideEncryption="aws:kms", SSEKMSKeyId=old)
    checkpoint = tmp_path / "rewrap.checkpoint"
    args = cli(
        moto_proxy, "rewrap", bucket, "--key-id", new, "--checkpoint", str(checkpoint), "--concurrency", "2", "--page-size", "25"
    )
    first = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not checkpoint.exists() and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    first.send_signal(signal.SIGKILL)  # an interruption at an arbitrary point after some pages
    first.wait(30)
    assert checkpoint.exists(), "the walk never checkpointed a page"
    resumed_after = json.loads(checkpoint.read_text())["after"]
    # a concurrent writer replaces one object not yet processed: its new bytes must survive
    late_key = f"obj/{N_OBJECTS - 1:04d}"
    assert late_key > resumed_after
    s3.put_object(Bucket=bucket, Key=late_key, Body=b"written by someone else meanwhile")
    done = subprocess.run(args, capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr.decode()
    assert "failed: 0" in done.stdout.decode()
    assert not checkpoint.exists()
    kms.disable_key(KeyId=old)  # every object must now depend on the new key alone
    for key, body in bodies.items():
        got = s3.get_object(Bucket=bucket, Key=key)
        if key == late_key:
            assert got["Body"].read() == b"written by someone else meanwhile"
            continue
        assert got["SSEKMSKeyId"] == new, key
        assert got["Body"].read() == body


def test_rewrap_dry_run_changes_nothing_and_reports_sse_c_and_sse_s3_as_skipped(fs_proxy):
    s3 = fs_proxy.client()
    bucket = f"rd-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="s3", Body=b"a")
    s3.put_object(Bucket=bucket, Key="c", Body=b"b", SSECustomerAlgorithm="AES256", SSECustomerKey=os.urandom(32))
    s3.put_object(Bucket=bucket, Key="kms", Body=b"c", ServerSideEncryption="aws:kms")
    out = subprocess.run(cli(fs_proxy, "rewrap", bucket, "--dry-run"), capture_output=True, timeout=60)
    text = out.stdout.decode()
    assert out.returncode == 0 and "re-wrapped: 0" in text
    assert "1 dry run: would re-wrap" in text and "1 SSE-C" in text and "1 SSE-S3" in text
    assert s3.head_object(Bucket=bucket, Key="s3")["ServerSideEncryption"] == "AES256"


def test_encrypt_existing_encrypts_a_bucket_written_behind_the_proxy(moto_proxy):
    s3, backend = moto_proxy.client(), moto_proxy.backend_client()
    bucket = f"ee-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket)
    plain = {f"legacy/{i}": f"legacy plaintext {i} ".encode() * 100 for i in range(20)}
    for key, body in plain.items():
        backend.put_object(Bucket=bucket, Key=key, Body=body, Metadata={"origin": "before-proxy"})
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=bucket, Key="legacy/0")
    assert exc.value.response["Error"]["Code"] == "InvalidObjectState"  # never served unauthenticated
    out = subprocess.run(cli(moto_proxy, "encrypt-existing", bucket), capture_output=True, timeout=120)
    assert out.returncode == 0, out.stderr.decode()
    assert "encrypted: 20" in out.stdout.decode()
    for key, body in plain.items():
        got = s3.get_object(Bucket=bucket, Key=key)
        assert got["Body"].read() == body and got["ServerSideEncryption"] == "AES256"
        assert got["Metadata"] == {"origin": "before-proxy"}
        assert body[:20] not in backend.get_object(Bucket=bucket, Key=key)["Body"].read()
    again = subprocess.run(cli(moto_proxy, "encrypt-existing", bucket), capture_output=True, timeout=120)
    assert "encrypted: 0" in again.stdout.decode() and "20 already encrypted" in again.stdout.decode()  # idempotent
