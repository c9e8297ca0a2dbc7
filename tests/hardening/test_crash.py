"""Crash safety (issue 9.2): SIGKILL `s3proxy serve` during single PUTs, multipart uploads, copies and
KMS writes, restart it on the same data dir, and check that every object is its old or its new
version and decrypts, and that the keystore (and its audit chain) is consistent.

Every kill lands while a request is in flight (a worker flags each request before sending it; one
PUT is held half-sent on a raw socket so at least one kill is certainly mid-body). What each check
may accept is exactly what S3 promises: an acknowledged write is durable; an unacknowledged one is
either wholly there or wholly absent ("Amazon S3 never adds partial objects", S3 user guide,
"Amazon S3 data consistency model").
"""

from __future__ import annotations

import hashlib
import socket
import subprocess
import sys
import threading
import urllib.parse
from dataclasses import dataclass, field

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from tests.e2e.conftest import ACCESS_KEY, REGION, SECRET_KEY

from .harness import ProxyProcess, s3_client, sigv4_headers

MIB = 1024 * 1024


def _body(tag: str, size: int) -> bytes:
    """A deterministic body whose first line names it, so a read tells which version it is."""
    head = f"{tag}\n".encode()
    block = hashlib.sha256(tag.encode()).digest() * (size // 32 + 1)
    return (head + block)[:size]


@dataclass
class Worker:
    """Runs `step(i)` in a loop on its own thread; records what was acknowledged and what was attempted."""

    step: object
    acked: list = field(default_factory=list)
    attempted: list = field(default_factory=list)
    in_flight: threading.Event = field(default_factory=threading.Event)
    stopped: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        i = 0
        try:
            while not self.stopped.is_set():
                self.attempted.append(i)
                self.in_flight.set()
                result = self.step(i)  # type: ignore[operator]
                self.in_flight.clear()
                self.acked.append((i, result))
                i += 1
        except (BotoCoreError, ClientError, OSError):
            pass  # the proxy died under us


def _kill_mid_flight(proxy: ProxyProcess, workers: list[Worker], acks: int) -> None:
    threads = [threading.Thread(target=w.run, daemon=True) for w in workers]
    for t in threads:
        t.start()
    assert all(_wait(lambda w=w, t=t: len(w.acked) >= acks or not t.is_alive()) for w, t in zip(workers, threads, strict=True))
    assert _wait(lambda: any(w.in_flight.is_set() for w in workers))
    proxy.kill()
    for w in workers:
        w.stopped.set()
    for t in threads:
        t.join(30)


def _wait(check, timeout: float = 60) -> bool:
    import time

    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


def _half_sent_put(url: str, bucket: str, key: str, size: int) -> socket.socket:
    """A PUT whose headers and half its body are on the wire; the caller kills the proxy meanwhile."""
    target = f"/{bucket}/{key}"
    headers = sigv4_headers("PUT", url + target, headers={"content-length": str(size)}, payload_hash="UNSIGNED-PAYLOAD")
    parts = urllib.parse.urlsplit(url)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=30)
    head = f"PUT {target} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    sock.sendall(head.encode() + _body("half", size)[: size // 2])
    return sock


@pytest.fixture
def crashable(tmp_path):
    proxy = ProxyProcess(tmp_path / "data").start()
    yield proxy
    proxy.stop()


def _restart(proxy: ProxyProcess) -> ProxyProcess:
    return ProxyProcess(proxy.data_dir, proxy.extra).start()


def _read_all_objects(s3, bucket: str) -> dict[str, bytes]:
    """Every listed object, read in full: each must decrypt (a damaged one raises)."""
    out = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for item in page.get("Contents", []):
            data = s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
            assert len(data) == item["Size"], item["Key"]
            out[item["Key"]] = data
    return out


@pytest.mark.parametrize("acks", [2, 9])
def test_sigkill_during_puts_leaves_old_or_new_versions_that_decrypt(crashable, acks):
    s3 = s3_client(crashable.url)
    bucket = "crash-put"
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="half", Body=b"the old version")
    s3.put_object(Bucket=bucket, Key="hot", Body=_body("hot-initial", 2 * MIB))

    def overwrite(i: int) -> None:  # the same key again and again, streamed (> 256 KiB) bodies
        s3_client(crashable.url).put_object(Bucket=bucket, Key="hot", Body=_body(f"hot-{i}", 2 * MIB + i))

    def create(i: int) -> None:  # new keys, small bodies, in SSE-KMS (a KMS data key per object)
        s3_client(crashable.url).put_object(Bucket=bucket, Key=f"new-{i}", Body=_body(f"new-{i}", 1000 + i),
                                            ServerSideEncryption="aws:kms")

    hot, new = Worker(overwrite), Worker(create)
    sock = _half_sent_put(crashable.url, bucket, "half", 1 * MIB)
    _kill_mid_flight(crashable, [hot, new], acks)
    sock.close()

    proxy = _restart(crashable)
    try:
        s3 = s3_client(proxy.url)
        objects = _read_all_objects(s3, bucket)
        assert objects["half"] == b"the old version"  # the half-sent PUT never appeared
        hot_versions = {_body("hot-initial", 2 * MIB)} | {_body(f"hot-{i}", 2 * MIB + i) for i in hot.attempted}
        assert objects["hot"] in hot_versions
        last_acked = hot.acked[-1][0] if hot.acked else None
        if last_acked is not None:  # an acknowledged overwrite is durable: what is there is it or later
            tag = int(objects["hot"].split(b"\n", 1)[0].split(b"-")[1]) if not objects["hot"].startswith(b"hot-initial") else -1
            assert tag >= last_acked
        for i, _ in new.acked:
            assert objects[f"new-{i}"] == _body(f"new-{i}", 1000 + i)
        for key, data in objects.items():
            if key.startswith("new-"):
                i = int(key[4:])
                assert i in new.attempted and data == _body(f"new-{i}", 1000 + i)
        s3.put_object(Bucket=bucket, Key="after", Body=b"writes work after the restart")
        assert s3.get_object(Bucket=bucket, Key="after")["Body"].read() == b"writes work after the restart"
    finally:
        proxy.stop()


def test_sigkill_during_multipart_uploads_and_copies(crashable):
    s3 = s3_client(crashable.url)
    bucket = "crash-mpu"
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="src", Body=_body("src", 3 * MIB))
    s3.put_object(Bucket=bucket, Key="dst", Body=b"dst before any copy")
    # an upload opened before the crash, to be finished after it
    open_upload = s3.create_multipart_upload(Bucket=bucket, Key="survivor")["UploadId"]
    p1 = s3.upload_part(Bucket=bucket, Key="survivor", UploadId=open_upload, PartNumber=1, Body=_body("s1", 5 * MIB))["ETag"]

    def multipart(i: int) -> None:
        c = s3_client(crashable.url)
        key = f"mpu-{i}"
        up = c.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
        e1 = c.upload_part(Bucket=bucket, Key=key, UploadId=up, PartNumber=1, Body=_body(f"{key}-1", 5 * MIB))["ETag"]
        e2 = c.upload_part(Bucket=bucket, Key=key, UploadId=up, PartNumber=2, Body=_body(f"{key}-2", 1000 + i))["ETag"]
        c.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=up,
                                    MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": e1}, {"PartNumber": 2, "ETag": e2}]})

    def copy(i: int) -> None:
        c = s3_client(crashable.url)
        c.copy_object(Bucket=bucket, Key="dst", CopySource={"Bucket": bucket, "Key": "src"})
        c.copy_object(Bucket=bucket, Key=f"copy-{i}", CopySource={"Bucket": bucket, "Key": "src"},
                      ServerSideEncryption="aws:kms")

    mpu, cp = Worker(multipart), Worker(copy)
    _kill_mid_flight(crashable, [mpu, cp], 2)

    proxy = _restart(crashable)
    try:
        s3 = s3_client(proxy.url)
        objects = _read_all_objects(s3, bucket)
        for i, _ in mpu.acked:
            assert objects[f"mpu-{i}"] == _body(f"mpu-{i}-1", 5 * MIB) + _body(f"mpu-{i}-2", 1000 + i)
        for key, data in objects.items():
            if key.startswith("mpu-"):  # a completion the client never saw acknowledged: whole or absent
                i = int(key[4:])
                assert data == _body(f"{key}-1", 5 * MIB) + _body(f"{key}-2", 1000 + i)
            if key.startswith("copy-") or key == "src":
                assert data == _body("src", 3 * MIB)
        assert objects["dst"] in (b"dst before any copy", _body("src", 3 * MIB))
        if cp.acked:
            assert objects["dst"] == _body("src", 3 * MIB)
        # the upload opened before the crash continues and completes
        p2 = s3.upload_part(Bucket=bucket, Key="survivor", UploadId=open_upload, PartNumber=2, Body=b"tail")["ETag"]
        s3.complete_multipart_upload(Bucket=bucket, Key="survivor", UploadId=open_upload,
                                     MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": p1}, {"PartNumber": 2, "ETag": p2}]})
        assert s3.get_object(Bucket=bucket, Key="survivor")["Body"].read() == _body("s1", 5 * MIB) + b"tail"
        # uploads the crash interrupted are listed and can be aborted
        for up in s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []):
            s3.abort_multipart_upload(Bucket=bucket, Key=up["Key"], UploadId=up["UploadId"])
        assert not s3.list_multipart_uploads(Bucket=bucket).get("Uploads")
    finally:
        proxy.stop()


def _kms(url: str):
    return boto3.client("kms", endpoint_url=url, aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY,
                        region_name=REGION, config=Config(retries={"total_max_attempts": 1}))


def test_sigkill_during_kms_writes_keeps_every_acknowledged_key_and_the_audit_chain(crashable):
    def key_churn(i: int) -> tuple[str, bytes]:
        kms = _kms(crashable.url)
        kid = kms.create_key(Description=f"k{i}")["KeyMetadata"]["KeyId"]
        kms.create_alias(AliasName=f"alias/crash-{i}", TargetKeyId=kid)
        blob = kms.encrypt(KeyId=kid, Plaintext=f"p{i}".encode(), EncryptionContext={"i": str(i)})["CiphertextBlob"]
        if i % 2:
            kms.rotate_key_on_demand(KeyId=kid)
        return kid, blob

    def sse_kms_writes(i: int) -> None:  # S3 asks KMS for data keys meanwhile (the aws/s3 managed key)
        s3_client(crashable.url).put_object(Bucket="crash-kms", Key=f"o-{i}", Body=b"x" * 100, ServerSideEncryption="aws:kms")

    s3_client(crashable.url).create_bucket(Bucket="crash-kms")
    churn, writes = Worker(key_churn), Worker(sse_kms_writes)
    _kill_mid_flight(crashable, [churn, writes], 3)

    proxy = _restart(crashable)
    try:
        kms = _kms(proxy.url)
        for i, (kid, blob) in churn.acked:
            md = kms.describe_key(KeyId=f"alias/crash-{i}")["KeyMetadata"]
            assert (md["KeyId"], md["Description"], md["KeyState"]) == (kid, f"k{i}", "Enabled")
            assert kms.decrypt(CiphertextBlob=blob, EncryptionContext={"i": str(i)})["Plaintext"] == f"p{i}".encode()
            if i % 2:
                rotations = kms.list_key_rotations(KeyId=kid)["Rotations"]
                assert len(rotations) == 1
        listed = {k["KeyId"] for k in kms.list_keys()["Keys"]}
        assert {kid for _, (kid, _) in churn.acked} <= listed
        for k in listed:  # every key the keystore holds opens (none half-written)
            kms.describe_key(KeyId=k)
        s3 = s3_client(proxy.url)
        assert set(_read_all_objects(s3, "crash-kms")) >= {f"o-{i}" for i, _ in writes.acked}
        kid = kms.create_key()["KeyMetadata"]["KeyId"]  # the reopened keystore takes new writes
        s3.put_object(Bucket="crash-kms", Key="new", Body=b"n", ServerSideEncryption="aws:kms", SSEKMSKeyId=kid)
        assert s3.get_object(Bucket="crash-kms", Key="new")["Body"].read() == b"n"
    finally:
        proxy.stop()
    verify = subprocess.run([sys.executable, "-m", "s3proxy", "audit", "verify", "--data-dir", str(crashable.data_dir)],
                            capture_output=True, text=True, timeout=60)
    assert verify.returncode == 0, verify.stdout + verify.stderr
