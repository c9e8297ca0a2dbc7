"""s3cmd (Debian's) against the proxy over HTTPS, signing with SigV4 and with SigV2: put and get
under SSE-S3 and SSE-KMS (s3cmd has no SSE-C), a multipart upload, a resumed download (a Range
request), sync up, down and with --delete-removed, and `signurl` (a SigV2 presigned URL) fetched
by anyone; the access log names the principal of every one of those requests."""

from __future__ import annotations

import filecmp
import ssl
import urllib.request

import pytest

from .conftest import MiB, mode_of

pytestmark = pytest.mark.usefixtures("s3cmd_ok")


def mode_flags(tls_proxy, mode: str) -> list[str]:
    if mode == "AES256":
        return ["--server-side-encryption"]
    return [f"--server-side-encryption-kms-id={tls_proxy.kms_key()}"]


@pytest.mark.parametrize("sigv2", [False, True], ids=["sigv4", "sigv2"])
@pytest.mark.parametrize("mode", ["AES256", "aws:kms"])
def test_put_multipart_resumed_get_and_sync(tls_proxy, mode, sigv2, access_log):
    flags = mode_flags(tls_proxy, mode)
    bucket = tls_proxy.bucket()
    tree = tls_proxy.tree("s3cmd", big=11 * MiB)
    big = tree / "big.bin"
    tls_proxy.s3cmd(*flags, "--multipart-chunk-size-mb=5", "put", str(big), f"s3://{bucket}/big.bin", sigv2=sigv2)
    assert mode_of(tls_proxy, bucket, "big.bin") == mode
    assert tls_proxy.client().head_object(Bucket=bucket, Key="big.bin")["ETag"].endswith('-3"')

    # a download cut short, resumed: s3cmd asks for the rest with a Range header
    partial = tls_proxy.work / f"partial-{bucket}.bin"
    partial.write_bytes(big.read_bytes()[: 6 * MiB + 5])
    tls_proxy.s3cmd("get", "--continue", f"s3://{bucket}/big.bin", str(partial), sigv2=sigv2)
    assert partial.read_bytes() == big.read_bytes()
    assert any(line["op"] == "GetObject" and line["status"] == 206 for line in access_log.lines)

    # sync up, change the tree, sync again deleting what went away, sync down into a fresh dir
    tls_proxy.s3cmd(*flags, "sync", f"{tree}/", f"s3://{bucket}/tree/", sigv2=sigv2)
    (tree / "a.txt").write_bytes(b"edited\n")
    (tree / "sub" / "b.txt").unlink()
    tls_proxy.s3cmd(*flags, "sync", "--delete-removed", f"{tree}/", f"s3://{bucket}/tree/", sigv2=sigv2)
    keys = sorted(o["Key"] for o in tls_proxy.client().list_objects_v2(Bucket=bucket, Prefix="tree/")["Contents"])
    assert keys == ["tree/a.txt", "tree/big.bin"]
    assert mode_of(tls_proxy, bucket, "tree/a.txt") == mode
    down = tls_proxy.work / f"down-{bucket}"
    down.mkdir()
    tls_proxy.s3cmd("sync", f"s3://{bucket}/tree/", f"{down}/", sigv2=sigv2)
    assert sorted(p.name for p in down.iterdir()) == ["a.txt", "big.bin"]
    assert filecmp.cmp(down / "big.bin", big, shallow=False) and (down / "a.txt").read_bytes() == b"edited\n"

    # every request of s3cmd's, whichever signature, is logged with its access key and principal
    assert access_log.lines and all(
        (line["access_key"], line["principal"]) == (tls_proxy.access_key, tls_proxy.principal) for line in access_log.lines)


def test_signurl_is_a_sigv2_presigned_url_logged_with_its_principal(tls_proxy, access_log):
    bucket = tls_proxy.bucket()
    source = tls_proxy.work / f"signed-{bucket}.txt"
    source.write_bytes(b"signed for anyone\n")
    tls_proxy.s3cmd("--server-side-encryption", "put", str(source), f"s3://{bucket}/signed.txt")
    url = tls_proxy.s3cmd("signurl", f"s3://{bucket}/signed.txt", "+600").stdout.decode().strip()
    assert "AWSAccessKeyId=" in url and "Signature=" in url  # SigV2's query parameters
    url = "https://" + url.split("://", 1)[1]  # s3cmd writes http:// whatever use_https says
    context = ssl.create_default_context(cafile=str(tls_proxy.ca))
    with urllib.request.urlopen(url, context=context, timeout=30) as got:
        assert got.read() == b"signed for anyone\n"
    line = access_log.lines[-1]
    assert (line["op"], line["access_key"], line["principal"]) == ("GetObject", tls_proxy.access_key, tls_proxy.principal)
