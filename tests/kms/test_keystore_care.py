"""Keystore care through the real CLI: backup -> wipe -> restore -> every object readable;
root-key rotation while a proxy keeps serving; a root key that does not match is refused."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid

import pytest

from s3proxy.kms import care
from tests.e2e.conftest import start_proxy

PASSPHRASE = "correct horse battery staple"


def kms_cli(data_dir, *args: str, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, S3PROXY_BACKUP_PASSPHRASE=PASSPHRASE, **(env_extra or {}))
    return subprocess.run([sys.executable, "-m", "s3proxy", "kms", *args, "--data-dir", str(data_dir)],
                          env=env, capture_output=True, timeout=120)


def _populate(endpoint) -> dict[str, tuple[bytes, dict]]:
    s3, kms = endpoint.client(), endpoint.client("kms")
    bucket = f"c-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket)
    key = kms.create_key()["KeyMetadata"]["KeyId"]
    objects = {
        "s3": (b"sse-s3 body", {}),
        "kms": (b"sse-kms body", {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": key}),
        "bucket-key": (b"bucket key body", {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": key, "BucketKeyEnabled": True}),
        "managed": (b"aws/s3 body", {"ServerSideEncryption": "aws:kms"}),
    }
    for name, (body, extra) in objects.items():
        s3.put_object(Bucket=bucket, Key=name, Body=body, **extra)
    return {f"{bucket}/{k}": v for k, v in objects.items()}


def _read_all(endpoint, objects) -> None:
    s3 = endpoint.client()
    for path, (body, _) in objects.items():
        bucket, key = path.split("/", 1)
        assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == body, path


def test_backup_wipe_restore_and_every_object_reads_again(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    thread, endpoint = start_proxy(data, "fs", None)
    try:
        objects = _populate(endpoint)
        archive = tmp_path / "kms.backup"
        made = kms_cli(data, "backup", str(archive), "--include-root-key")  # a live backup, proxy running
        assert made.returncode == 0, made.stderr.decode()
    finally:
        thread.stop()
    assert kms_cli(data, "verify-backup", str(archive)).returncode == 0
    assert kms_cli(data, "restore", str(archive)).returncode == 1  # never over a keystore silently
    shutil.rmtree(data / "kms")
    (tmp_path / "data.root.key").unlink()
    restored = kms_cli(data, "restore", str(archive))
    assert restored.returncode == 0, restored.stderr.decode()
    assert (tmp_path / "data.root.key").stat().st_mode & 0o777 == 0o600
    thread, endpoint = start_proxy(data, "fs", None)
    try:
        _read_all(endpoint, objects)
    finally:
        thread.stop()


def test_a_wrong_passphrase_or_a_flipped_byte_is_refused(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    thread, endpoint = start_proxy(data, "fs", None)
    thread.stop()
    archive = tmp_path / "kms.backup"
    care.backup(data, archive, PASSPHRASE.encode())
    with pytest.raises(care.BackupError):
        care.open_archive(archive, b"not the passphrase at all")
    raw = bytearray(archive.read_bytes())
    raw[len(raw) // 2] ^= 1
    archive.write_bytes(bytes(raw))
    out = kms_cli(data, "verify-backup", str(archive))
    assert out.returncode == 1 and b"altered" in out.stderr


def test_root_key_rotation_while_a_proxy_keeps_serving(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    thread, endpoint = start_proxy(data, "fs", None)
    try:
        objects = _populate(endpoint)
        old_root = (tmp_path / "data.root.key").read_bytes()
        rotated = kms_cli(data, "rotate-root-key")
        assert rotated.returncode == 0, rotated.stderr.decode()
        assert (tmp_path / "data.root.key").read_bytes()[32:] == old_root  # keyring: new key first, old kept
        # the running proxy goes on: data path, a key update (CAS conflict -> re-read under the new key), new keys
        _read_all(endpoint, objects)
        kms = endpoint.client("kms")
        some_key = kms.list_keys()["Keys"][0]["KeyId"]
        kms.update_key_description(KeyId=some_key, Description="changed after rotation")
        new_key = kms.create_key(Description="made after rotation")["KeyMetadata"]["KeyId"]
        s3 = endpoint.client()
        bucket = next(iter(objects)).split("/")[0]
        s3.put_object(Bucket=bucket, Key="after", Body=b"after rotation", ServerSideEncryption="aws:kms", SSEKMSKeyId=new_key)
        objects[f"{bucket}/after"] = (b"after rotation", {})
        finished = kms_cli(data, "rotate-root-key", "--finish")
        assert finished.returncode == 0, finished.stderr.decode()
        assert len((tmp_path / "data.root.key").read_bytes()) == 32 and (tmp_path / "data.root.key").read_bytes() != old_root
    finally:
        thread.stop()
    thread, endpoint = start_proxy(data, "fs", None)  # only the new root key now
    try:
        _read_all(endpoint, objects)
        assert endpoint.client("kms").describe_key(KeyId=some_key)["KeyMetadata"]["Description"] == "changed after rotation"
    finally:
        thread.stop()


def test_a_root_key_that_does_not_match_the_keystore_is_refused_at_start(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    thread, _ = start_proxy(data, "fs", None)
    thread.stop()
    (tmp_path / "data.root.key").write_bytes(os.urandom(32))
    out = subprocess.run([sys.executable, "-m", "s3proxy", "serve", "--data-dir", str(data), "--port", "0"],
                         capture_output=True, timeout=60)
    assert out.returncode == 1
    assert b"root key does not match" in out.stderr and b"Traceback" not in out.stderr
