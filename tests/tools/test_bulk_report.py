"""The operator tools' parts that need no proxy: the report, the progress line, error codes, and
how the tools find credentials (the e2e tier runs the tools against a proxy: test_bulk_tools.py)."""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from s3proxy.tools import bulk, commands


def test_the_report_counts_each_outcome_and_names_failures_in_key_order() -> None:
    report = bulk.Report(done=3)
    report.skipped.update({"already SSE-KMS": 2, "SSE-C (no key)": 1})
    report.failed.update({"b": "AccessDenied: no", "a": "InternalError: boom"})
    assert report.total == 8
    assert report.render("rewrapped").splitlines() == [
        "rewrapped: 3", "skipped: 3", "  2 already SSE-KMS", "  1 SSE-C (no key)", "failed: 2",
        "  a: InternalError: boom", "  b: AccessDenied: no"]


def test_the_progress_line_shows_count_rate_and_eta() -> None:
    now = [100.0]
    out = io.StringIO()
    progress = bulk.Progress(4, out, clock=lambda: now[0])
    now[0] += 2.0
    progress.tick()
    assert out.getvalue() == "\r[#######                       ] 1/4 0 obj/s ETA 6s"
    unknown = bulk.Progress(None, io.StringIO(), clock=lambda: now[0])
    now[0] += 1.0
    unknown.tick()
    assert unknown.out.getvalue() == "\r1 objects 1 obj/s"


def test_error_codes_are_s3s_when_there_is_one() -> None:
    denied = ClientError({"Error": {"Code": "AccessDenied", "Message": "Access Denied"}}, "CopyObject")
    assert bulk.error_code(denied) == "AccessDenied: Access Denied"
    assert bulk.error_code(TimeoutError("slow")) == "TimeoutError: slow"


def test_credentials_come_from_the_flags_or_the_data_dir(tmp_path: Path) -> None:
    args = argparse.Namespace(access_key=None, secret_key=None, data_dir=str(tmp_path), endpoint_url="http://127.0.0.1:1",
                              region="us-east-1", concurrency=4)
    with pytest.raises(SystemExit, match="no credentials"):
        commands.client(args)
    (tmp_path / "credentials.toml").write_text('[[credentials]]\naccess_key = "AKFILE"\nsecret_key = "file-secret"\n')
    s3 = commands.client(args)
    assert s3.meta.endpoint_url == "http://127.0.0.1:1"
    assert s3._request_signer._credentials.access_key == "AKFILE"
