"""rclone (Debian's, Go and aws-sdk-go) against the proxy over HTTPS: sync with multipart uploads,
check, ranged reads, a changed tree synced again, and `rclone link` (a presigned URL), under each
of SSE-S3, SSE-KMS and SSE-C (which rclone refuses to send over plain HTTP, even to loopback)."""

from __future__ import annotations

import base64
import os
import ssl
import urllib.request

import pytest

from .conftest import MiB, mode_of, ssec_args

pytestmark = pytest.mark.usefixtures("rclone_ok")

MODES = ("AES256", "aws:kms", "SSE-C")


def mode_flags(tls_proxy, mode: str) -> tuple[list[str], dict]:
    """rclone's flags for `mode`, and boto3's arguments to read what it wrote."""
    if mode == "AES256":
        return ["--s3-server-side-encryption", "AES256"], {}
    if mode == "aws:kms":
        return ["--s3-server-side-encryption", "aws:kms", "--s3-sse-kms-key-id", tls_proxy.kms_key()], {}
    key = os.urandom(32)
    flags = ["--s3-sse-customer-algorithm", "AES256", "--s3-sse-customer-key-base64", base64.b64encode(key).decode()]
    return flags, ssec_args(key)


@pytest.mark.parametrize("mode", MODES)
def test_sync_check_range_and_resync(tls_proxy, mode):
    flags, read_args = mode_flags(tls_proxy, mode)
    bucket = tls_proxy.bucket()
    tree = tls_proxy.tree("rclone", big=11 * MiB)  # past the 5 MiB cutoff: a three-part multipart upload
    remote = f"p:{bucket}/tree"
    multipart = ["--s3-upload-cutoff", "5M", "--s3-chunk-size", "5M"]
    tls_proxy.rclone(*flags, *multipart, "sync", str(tree), remote)

    s3 = tls_proxy.client()
    assert mode_of(tls_proxy, bucket, "tree/big.bin", **read_args) == mode
    assert s3.head_object(Bucket=bucket, Key="tree/big.bin", **read_args)["ETag"].endswith('-3"')  # it was multipart
    for name in ("a.txt", "sub/b.txt", "big.bin"):
        got = s3.get_object(Bucket=bucket, Key=f"tree/{name}", **read_args)["Body"].read()
        assert got == (tree / name).read_bytes(), name

    checked = tls_proxy.rclone(*flags, "check", str(tree), remote)
    assert b"0 differences found" in checked.stderr and b"3 matching files" in checked.stderr

    # a range across the first part boundary, read by rclone itself
    start = 5 * MiB - 7
    ranged = tls_proxy.rclone(*flags, "cat", "--offset", str(start), "--count", "100", f"{remote}/big.bin")
    assert ranged.stdout == (tree / "big.bin").read_bytes()[start:start + 100]

    # change the tree: one file edited, one removed, one added; sync makes the bucket match again
    (tree / "a.txt").write_bytes(b"edited\n")
    (tree / "sub" / "b.txt").unlink()
    (tree / "c.txt").write_bytes(b"new\n")
    tls_proxy.rclone(*flags, "sync", str(tree), remote)
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"])
    assert keys == ["tree/a.txt", "tree/big.bin", "tree/c.txt"]
    assert s3.get_object(Bucket=bucket, Key="tree/a.txt", **read_args)["Body"].read() == b"edited\n"
    assert b"0 differences found" in tls_proxy.rclone(*flags, "check", str(tree), remote).stderr


@pytest.mark.parametrize("mode", ("AES256", "aws:kms"))
def test_link_is_a_presigned_url_anyone_can_fetch(tls_proxy, mode, access_log):
    flags, _ = mode_flags(tls_proxy, mode)
    bucket = tls_proxy.bucket()
    source = tls_proxy.work / f"link-{bucket}.txt"
    source.write_bytes(b"shared by link\n")
    tls_proxy.rclone(*flags, "copyto", str(source), f"p:{bucket}/shared.txt")
    url = tls_proxy.rclone("link", "--expire", "10m", f"p:{bucket}/shared.txt").stdout.decode().strip()
    assert "X-Amz-Signature=" in url and tls_proxy.secret_key not in url
    context = ssl.create_default_context(cafile=str(tls_proxy.ca))
    with urllib.request.urlopen(url, context=context, timeout=30) as got:
        assert got.read() == b"shared by link\n"
    line = [entry for entry in access_log.lines if entry["op"] == "GetObject"][-1]
    assert (line["access_key"], line["principal"]) == (tls_proxy.access_key, tls_proxy.principal)


def test_sse_c_object_without_the_key_is_refused(tls_proxy):
    flags, _ = mode_flags(tls_proxy, "SSE-C")
    bucket = tls_proxy.bucket()
    source = tls_proxy.work / f"ssec-{bucket}.txt"
    source.write_bytes(b"customer keyed\n")
    tls_proxy.rclone(*flags, "copyto", str(source), f"p:{bucket}/k.txt")
    assert tls_proxy.rclone(*flags, "cat", f"p:{bucket}/k.txt").stdout == b"customer keyed\n"
    # without the key HEAD answers 400 as S3 does; rclone then takes the name for a directory and finds nothing
    assert tls_proxy.rclone("cat", f"p:{bucket}/k.txt", check=False).stdout == b""
    wrong = tls_proxy.rclone(*mode_flags(tls_proxy, "SSE-C")[0], "cat", f"p:{bucket}/k.txt", check=False)
    assert wrong.stdout == b""
