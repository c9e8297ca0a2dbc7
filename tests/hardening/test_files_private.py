"""Files at rest are private whatever the umask: every directory the proxy makes is 0700, every file 0600.

The proxy runs as a real `python -m s3proxy serve` process started with umask 0o022 (the common
default) and 0o000 (the loosest), does what writes files (first start with generated credentials,
fs-backend objects, multipart parts, copies, KMS keys, audit lines, a clean stop), and the test walks
the data dir while it runs (SQLite's -wal and -shm exist only then) and after it stopped. The KMS
care commands (backup, restore, root-key rotation) run under the same umasks. A data dir left
readable by an older version is tightened on start, once, with one log line; symbolic links are
never followed, and a loose root key is still refused rather than quietly fixed.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from .harness import ProxyProcess, s3_client

TIGHTENED = "files and directories under"  # the start-up log line that reports tightened modes


def walk_modes(root: Path) -> dict[str, int]:
    """Every path under root (root included, links not followed) -> its permission bits."""
    modes = {".": stat.S_IMODE(os.lstat(root).st_mode)}
    for here, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(here) / name
            modes[str(path.relative_to(root))] = stat.S_IMODE(os.lstat(path).st_mode)
    return modes


def not_private(root: Path) -> dict[str, str]:
    wrong = {}
    for rel, mode in walk_modes(root).items():
        path = root / rel
        want = 0o700 if path.is_dir() and not path.is_symlink() else 0o600
        if mode != want:
            wrong[rel] = f"{mode:04o}"
    return wrong


def serve(data_dir: Path, umask: int) -> ProxyProcess:
    """The proxy on `data_dir` with `umask`, generating its credentials on a first start, logging to a file."""
    log = data_dir.parent / f"{data_dir.name}.log"
    log.unlink(missing_ok=True)
    return ProxyProcess(data_dir, log=log, log_level="info", umask=umask, generate_credentials=True).start()


def stop(proxy: ProxyProcess) -> str:
    """Stop it cleanly (SIGTERM: the audit head is written on close); its log."""
    assert proxy.stop() == 0, proxy.log_text()[-2000:]
    return proxy.log_text()


def exercise(url: str, access: str, secret: str) -> None:
    """What writes files: buckets and objects (fs blobs, the index), a multipart upload, a copy
    (a hard link), SSE-KMS with a new key (keystore rows, audit lines)."""
    s3 = s3_client(url, access_key=access, secret_key=secret)
    s3.create_bucket(Bucket="modes")
    s3.put_object(Bucket="modes", Key="small", Body=b"x" * 1000)
    upload = s3.create_multipart_upload(Bucket="modes", Key="mp")["UploadId"]
    etag = s3.upload_part(Bucket="modes", Key="mp", UploadId=upload, PartNumber=1, Body=b"p" * 100)["ETag"]
    s3.complete_multipart_upload(Bucket="modes", Key="mp", UploadId=upload,
                                 MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]})
    s3.copy_object(Bucket="modes", Key="copy", CopySource={"Bucket": "modes", "Key": "small"})
    import boto3
    from botocore.config import Config

    kms_client = boto3.client("kms", endpoint_url=url, region_name="us-east-1", aws_access_key_id=access,
                              aws_secret_access_key=secret, config=Config(retries={"total_max_attempts": 1}))
    key_id = kms_client.create_key(Description="modes")["KeyMetadata"]["KeyId"]
    s3.put_object(Bucket="modes", Key="kms", Body=b"k", ServerSideEncryption="aws:kms", SSEKMSKeyId=key_id)
    assert s3.get_object(Bucket="modes", Key="kms")["Body"].read() == b"k"


@pytest.mark.parametrize("umask", [0o022, 0o000], ids=["umask-022", "umask-000"])
def test_every_file_the_proxy_writes_is_private(tmp_path, umask):
    data = tmp_path / "data"  # does not exist: the proxy makes it
    proxy = serve(data, umask)
    try:
        exercise(proxy.url, *proxy.generated_credentials())
        running = walk_modes(data)
        assert {"kms/keystore.sqlite3-wal", "kms/keystore.sqlite3-shm", "objects/index.sqlite3-wal"} <= set(running)
        assert not_private(data) == {}
    finally:
        log = stop(proxy)
    stopped = walk_modes(data)
    for expected in ("credentials.toml", "kms/keystore.sqlite3", "kms/audit.log", "kms/audit.log.head",
                     "objects/index.sqlite3", "objects/blobs", "objects/tmp"):
        assert expected in stopped, (expected, sorted(stopped))
    assert stat.S_IMODE((tmp_path / "data.root.key").stat().st_mode) == 0o600  # beside the data dir
    assert len([p for p in stopped if p.startswith("objects/blobs/") and p.count("/") == 3]) >= 4  # blobs, parts, a copy
    assert not_private(data) == {}
    assert TIGHTENED not in log  # a new data dir has nothing to tighten


@pytest.mark.parametrize("umask", [0o022, 0o000], ids=["umask-022", "umask-000"])
def test_kms_care_commands_write_private_files(tmp_path, umask):
    """backup, restore (a new keystore) and rotate-root-key (a new root key file), each run with a loose umask."""
    data = tmp_path / "data"
    stop(serve(data, umask))
    env = dict(os.environ, S3PROXY_BACKUP_PASSPHRASE="a long enough passphrase")

    def cli(*args: str) -> None:
        done = subprocess.run([sys.executable, "-m", "s3proxy", "kms", *args, "--data-dir", str(data)],
                              env=env, umask=umask, capture_output=True, timeout=120)
        assert done.returncode == 0, done.stderr.decode()

    archive = tmp_path / "backups" / "kms.bak"
    archive.parent.mkdir()
    cli("backup", str(archive))
    assert stat.S_IMODE(archive.stat().st_mode) == 0o600
    restored = tmp_path / "restored"
    subprocess.run(["cp", "-p", str(tmp_path / "data.root.key"), str(tmp_path / "root.key")], check=True)
    done = subprocess.run([sys.executable, "-m", "s3proxy", "kms", "restore", str(archive), "--data-dir", str(restored),
                           "--root-key-file", str(tmp_path / "root.key")], env=env, umask=umask, capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr.decode()
    assert not_private(restored) == {}
    cli("rotate-root-key")
    assert stat.S_IMODE((tmp_path / "data.root.key").stat().st_mode) == 0o600
    assert not_private(data) == {}


def test_a_data_dir_left_readable_by_an_older_version_is_tightened_once(tmp_path):
    """Modes an older version left (umask 022: directories 0755, files 0644) are fixed on start, with
    one log line; the next start has nothing to fix and says nothing."""
    data = tmp_path / "data"
    proxy = serve(data, 0o022)
    exercise(proxy.url, *proxy.generated_credentials())
    stop(proxy)
    inodes = set()  # a copy hard-links its blob: two paths, one inode, one mode
    for rel in walk_modes(data):
        path = data / rel
        if path.name in ("root.key", "credentials.toml"):  # always created 0600, also by older versions
            continue
        path.chmod(0o755 if path.is_dir() else 0o644)
        inodes.add(path.stat().st_ino)
    loosened = len(inodes)
    assert len(not_private(data)) > loosened > 10

    log = stop(serve(data, 0o022))
    assert not_private(data) == {}
    lines = [line for line in log.splitlines() if TIGHTENED in line]
    assert len(lines) == 1 and f"made {loosened} files and directories under {data} private" in lines[0], log

    assert TIGHTENED not in stop(serve(data, 0o022))


def test_a_loose_root_key_is_refused_not_quietly_tightened(tmp_path):
    """A root key others could read may have been read: KMS refuses it (chmod 600 by hand, after thinking)."""
    data = tmp_path / "data"
    stop(serve(data, 0o022))
    (tmp_path / "data.root.key").chmod(0o644)
    done = subprocess.run([sys.executable, "-m", "s3proxy", "serve", "--port", "0", "--data-dir", str(data)],
                          capture_output=True, timeout=60)
    assert done.returncode == 1 and b"chmod 600" in done.stderr, done.stderr
    assert stat.S_IMODE((tmp_path / "data.root.key").stat().st_mode) == 0o644


def test_tightening_never_follows_a_symbolic_link(tmp_path):
    from s3proxy import private

    outside = tmp_path / "outside"
    outside.mkdir(mode=0o755)
    (outside / "file").write_text("not the proxy's")
    (outside / "file").chmod(0o644)
    root = private.make_dir(tmp_path / "root")
    (root / "link-to-dir").symlink_to(outside)
    (root / "link-to-file").symlink_to(outside / "file")
    (root / "mine").write_text("x")
    (root / "mine").chmod(0o644)
    changed, failed = private.tighten(root)
    assert changed == [root / "mine"] and failed == []
    assert stat.S_IMODE(outside.stat().st_mode) == 0o755
    assert stat.S_IMODE((outside / "file").stat().st_mode) == 0o644


def test_make_dir_and_open_file_ignore_the_umask(tmp_path):
    from s3proxy import private

    old = os.umask(0)
    try:
        made = private.make_dir(tmp_path / "a" / "b" / "c")
        os.close(private.open_file(made / "f"))
    finally:
        os.umask(old)
    for path in (tmp_path / "a", tmp_path / "a" / "b", made):
        assert stat.S_IMODE(path.stat().st_mode) == 0o700
    assert stat.S_IMODE((made / "f").stat().st_mode) == 0o600
