"""Memory stays flat whatever the object size (DESIGN.md principle 4: stream, never buffer).

`s3proxy serve` runs as its own process on the fs backend; its peak resident set (VmHWM) is read
before and after a 64 MiB PUT and a 64 MiB GET made with real boto3. Buffering the object once
would add >= 64 MiB; the bound is far below that."""

from __future__ import annotations

import hashlib
import os

import pytest

from .conftest import ACCESS_KEY, SECRET_KEY
from .front_helpers import client_for, serve_args, start_served

MiB = 1024 * 1024
OBJECT_SIZE = 64 * MiB
# measured on this machine: +6 MiB after the PUT and after the GET; one buffered copy of the
# object alone would be 64 MiB
MAX_GROWTH = 24 * MiB


@pytest.fixture
def served(tmp_path):
    proc = start_served(
        serve_args(tmp_path / "data", "--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY, "--log-level", "warning")
    )
    yield proc
    proc.stop()


@pytest.mark.slow
def test_64_mib_put_and_get_keep_peak_memory_flat(served, tmp_path):
    s3 = client_for(served.url, ACCESS_KEY, SECRET_KEY)
    s3.create_bucket(Bucket="mem")
    s3.put_object(Bucket="mem", Key="warm", Body=os.urandom(2 * MiB))  # warm every code path first
    s3.get_object(Bucket="mem", Key="warm")["Body"].read()
    baseline = served.peak_rss()

    src = tmp_path / "big.bin"
    digest = hashlib.sha256()
    with src.open("wb") as fh:
        for _ in range(OBJECT_SIZE // MiB):
            block = os.urandom(MiB)
            digest.update(block)
            fh.write(block)
    with src.open("rb") as fh:
        s3.put_object(Bucket="mem", Key="big", Body=fh)
    after_put = served.peak_rss()

    got = s3.get_object(Bucket="mem", Key="big")
    back = hashlib.sha256()
    received = 0
    for piece in got["Body"].iter_chunks(MiB):
        back.update(piece)
        received += len(piece)
    after_get = served.peak_rss()

    assert received == OBJECT_SIZE and back.digest() == digest.digest()
    print(f"peak RSS: baseline {baseline / MiB:.1f} MiB, after PUT +{(after_put - baseline) / MiB:.1f} MiB, "
          f"after GET +{(after_get - baseline) / MiB:.1f} MiB")
    assert after_put - baseline < MAX_GROWTH, (baseline, after_put)
    assert after_get - baseline < MAX_GROWTH, (baseline, after_get)
