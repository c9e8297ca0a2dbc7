"""The CLI (`s3proxy cse put|get|ls|rewrap`) as a user runs it, against plain moto and through s3proxy.

`python -m s3proxy.cse ...` is the same parser (s3proxy.cse.cli); the tests run the main entry point.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys

import pytest

MIB = 1024 * 1024
# Runs the CLI and reports its own peak RSS in KiB on stderr. VmHWM, not ru_maxrss: on Linux a child's
# ru_maxrss keeps the parent's RSS at fork (here pytest with moto's in-memory objects) across exec.
_MEASURED = ("import re, sys; from s3proxy.cli import main; rc = main(['cse', *sys.argv[1:]]); "
             "hwm = re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1); "
             "print('MAXRSS', hwm, file=sys.stderr); sys.exit(rc)")


def cse(endpoint, *args: str, stdin: bytes | None = None, measured: bool = False) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-c", _MEASURED] if measured else [sys.executable, "-m", "s3proxy", "cse"]
    return subprocess.run([*cmd, *args, "--endpoint-url", endpoint.s3_url, "--kms-endpoint-url", endpoint.kms_url],
                          input=stdin, capture_output=True, env={**os.environ, **endpoint.env()}, timeout=110)


def _peak_kib(proc: subprocess.CompletedProcess) -> int:
    line = [ln for ln in proc.stderr.decode().splitlines() if ln.startswith("MAXRSS")][-1]
    return int(line.split()[1])


def _sha256(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(MIB), b""):
            digest.update(block)
    return digest.hexdigest()


def test_put_get_ls_rewrap_round_trip(endpoint, bucket, kms_key_id, tmp_path):
    src = tmp_path / "report.txt"
    src.write_bytes(os.urandom(3333))
    put = cse(endpoint, "put", str(src), f"s3://{bucket}/docs/", "--kms-key-id", kms_key_id, "--context", "app=cli")
    assert put.returncode == 0, put.stderr
    assert b"v3 kms+context 3333 bytes" in put.stderr
    out = tmp_path / "back.txt"
    got = cse(endpoint, "get", f"s3://{bucket}/docs/report.txt", str(out), "--kms-key-id", kms_key_id,
              "--context", "app=cli")
    assert got.returncode == 0, got.stderr
    assert out.read_bytes() == src.read_bytes()

    listing = cse(endpoint, "ls", f"s3://{bucket}/docs/")
    assert listing.returncode == 0, listing.stderr
    assert listing.stdout.split() == [b"v3", b"kms+context", b"metadata", b"3333", b"docs/report.txt"]

    aes = tmp_path / "aes.key"
    aes.write_text(os.urandom(32).hex())
    rewrap = cse(endpoint, "rewrap", f"s3://{bucket}/docs/report.txt", "--kms-key-id", kms_key_id,
                 "--context", "app=cli", "--new-aes-key-file", str(aes))
    assert rewrap.returncode == 0, rewrap.stderr
    again = cse(endpoint, "get", f"s3://{bucket}/docs/report.txt", "-", "--aes-key-file", str(aes))
    assert again.returncode == 0, again.stderr
    assert again.stdout == src.read_bytes()


def test_failed_get_leaves_no_file_behind(endpoint, bucket, kms_key_id, tmp_path):
    put = cse(endpoint, "put", "-", f"s3://{bucket}/k", "--kms-key-id", kms_key_id, "--context", "a=b",
              "--format", "2", "--instruction-file", stdin=b"from stdin")
    assert put.returncode == 0, put.stderr
    out = tmp_path / "out"
    bad = cse(endpoint, "get", f"s3://{bucket}/k", str(out), "--kms-key-id", kms_key_id, "--context", "a=c")
    assert bad.returncode == 1
    assert b"EncryptionContextMismatch" in bad.stderr
    assert list(tmp_path.iterdir()) == []
    ok = cse(endpoint, "get", f"s3://{bucket}/k", str(out), "--kms-key-id", kms_key_id, "--context", "a=b")
    assert ok.returncode == 0 and out.read_bytes() == b"from stdin"


@pytest.mark.slow
def test_64_mib_object_streams_in_bounded_memory(endpoint, bucket, kms_key_id, tmp_path):
    size = 64 * MIB
    src = tmp_path / "big"
    with open(src, "wb") as f:
        for _ in range(size // MIB):
            f.write(os.urandom(MIB))
    baseline = cse(endpoint, "ls", f"s3://{bucket}/nothing-here", measured=True)  # imports + clients, no data
    assert baseline.returncode == 0, baseline.stderr
    put = cse(endpoint, "put", str(src), f"s3://{bucket}/big", "--kms-key-id", kms_key_id, "--part-size", "5MiB",
              measured=True)
    assert put.returncode == 0, put.stderr
    assert b"(13 parts)" in put.stderr  # 12 x 5 MiB + 4 MiB, encrypted as read
    out = tmp_path / "big.out"
    got = cse(endpoint, "get", f"s3://{bucket}/big", str(out), "--kms-key-id", kms_key_id, measured=True)
    assert got.returncode == 0, got.stderr
    assert _sha256(out) == _sha256(src)
    base, put_peak, get_peak = _peak_kib(baseline), _peak_kib(put), _peak_kib(got)
    print(f"peak RSS KiB: baseline {base}, put {put_peak} (+{put_peak - base}), get {get_peak} (+{get_peak - base})")
    assert put_peak - base < 28 * 1024  # far below the 64 MiB object: 2 plaintext parts + 1 ciphertext part
    assert get_peak - base < 16 * 1024  # 1 MiB reads
