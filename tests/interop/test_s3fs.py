"""s3fs (fsspec's S3 filesystem, over aiobotocore; from its own virtualenv) against the proxy over
HTTPS: each SSE mode through s3_additional_kwargs, a file written in 5 MiB blocks (a multipart
upload), ranged reads (cat_file with start/end, seek and read), a tree put and got back recursively,
an SSE-C object refused without its key, and `sign` (a presigned URL, SigV2 as botocore makes
them by default) fetched by anyone and logged with its principal."""

from __future__ import annotations

import base64
import filecmp
import os
import ssl
import urllib.request

import pytest

from .conftest import MiB, mode_of, ssec_args

pytestmark = pytest.mark.usefixtures("s3fs_ok")

SCRIPT = """
bucket = params["bucket"]
data = os.urandom(params["size"])
with fs.open(f"{bucket}/big.bin", "wb", block_size=5 * 1024 * 1024) as f:
    for at in range(0, len(data), 1024 * 1024):  # as a writer streams: a part goes out per 5 MiB buffered
        f.write(data[at:at + 1024 * 1024])
fs.invalidate_cache()
start = 5 * 1024 * 1024 - 10
ranged = fs.cat_file(f"{bucket}/big.bin", start=start, end=start + 100) == data[start:start + 100]
with fs.open(f"{bucket}/big.bin", "rb", block_size=1024 * 1024) as f:
    f.seek(8 * 1024 * 1024)
    sought = f.read(4096) == data[8 * 1024 * 1024:8 * 1024 * 1024 + 4096]
fs.put(params["tree"], f"{bucket}/tree", recursive=True)
fs.get(f"{bucket}/tree", params["back"], recursive=True)
with open(params["saved"], "wb") as f:
    f.write(data)
result = {"size": fs.info(f"{bucket}/big.bin")["size"], "ranged": ranged, "sought": sought,
          "whole": fs.cat_file(f"{bucket}/big.bin") == data, "listed": sorted(fs.find(f"{bucket}/tree"))}
"""


def extra_for(tls_proxy, mode: str) -> tuple[dict, dict]:
    """s3fs's s3_additional_kwargs for `mode` (bytes as b64:...), and boto3's read arguments."""
    if mode == "AES256":
        return {"ServerSideEncryption": "AES256"}, {}
    if mode == "aws:kms":
        return {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": tls_proxy.kms_key()}, {}
    key = os.urandom(32)
    return {"SSECustomerAlgorithm": "AES256", "SSECustomerKey": "b64:" + base64.b64encode(key).decode()}, ssec_args(key)


@pytest.mark.parametrize("mode", ["AES256", "aws:kms", "SSE-C"])
def test_blocks_ranges_and_trees(tls_proxy, mode):
    extra, read_args = extra_for(tls_proxy, mode)
    bucket = tls_proxy.bucket()
    tree = tls_proxy.tree("s3fs")
    back = tls_proxy.work / f"back-{bucket}"
    saved = tls_proxy.work / f"saved-{bucket}.bin"
    result = tls_proxy.s3fs(SCRIPT, extra=extra, bucket=bucket, size=12 * MiB, tree=str(tree), back=str(back), saved=str(saved))
    assert result == {"size": 12 * MiB, "ranged": True, "sought": True, "whole": True,
                      "listed": [f"{bucket}/tree/a.txt", f"{bucket}/tree/sub/b.txt"]}
    s3 = tls_proxy.client()
    assert mode_of(tls_proxy, bucket, "big.bin", **read_args) == mode
    assert s3.head_object(Bucket=bucket, Key="big.bin", **read_args)["ETag"].endswith('-3"')  # written in three blocks
    assert s3.get_object(Bucket=bucket, Key="big.bin", **read_args)["Body"].read() == saved.read_bytes()
    assert mode_of(tls_proxy, bucket, "tree/sub/b.txt", **read_args) == mode
    for name in ("a.txt", "sub/b.txt"):
        assert filecmp.cmp(tree / name, back / name, shallow=False), name


def test_sse_c_without_the_key_is_refused_and_sign_makes_a_url_anyone_can_fetch(tls_proxy, access_log):
    extra, _ = extra_for(tls_proxy, "SSE-C")
    bucket = tls_proxy.bucket()
    script = """
bucket = params["bucket"]
fs.pipe(f"{bucket}/keyed.txt", b"customer keyed")
plain = s3fs.S3FileSystem(endpoint_url=params["url"], key=params["key"], secret=params["secret"],
                          client_kwargs={"region_name": params["region"], "verify": params["ca"]})
try:
    plain.cat_file(f"{bucket}/keyed.txt")
    refused = None
except OSError as exc:
    refused = str(exc)
plain.pipe(f"{bucket}/open.txt", b"signed by s3fs")
result = {"refused": refused, "keyed": fs.cat_file(f"{bucket}/keyed.txt").decode(),
          "url": plain.sign(f"{bucket}/open.txt", expiration=600)}
"""
    result = tls_proxy.s3fs(script, extra=extra, bucket=bucket)
    assert result["keyed"] == "customer keyed"
    assert result["refused"] and "Bad Request" in result["refused"]  # HEAD without the key: 400, as S3 answers
    context = ssl.create_default_context(cafile=str(tls_proxy.ca))
    with urllib.request.urlopen(result["url"], context=context, timeout=30) as got:
        assert got.read() == b"signed by s3fs"
    line = access_log.lines[-1]
    assert (line["op"], line["access_key"], line["principal"]) == ("GetObject", tls_proxy.access_key, tls_proxy.principal)
