"""The newcomer's path through the command line, as subprocesses (`python -m s3proxy`):
`s3proxy serve` on a fresh data dir generates a credential pair, stores it 0600 and prints an
awscli line that works; a second start reuses the pair; bad starts exit non-zero with one line
and no traceback; `s3proxy config --reference` prints the settings table."""

from __future__ import annotations

import os
import re
import socket
import stat
import subprocess
import sys

import pytest

from .conftest import REGION
from .front_helpers import client_for, serve_args, start_served


def _run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "s3proxy", *args], capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_first_start_generates_credentials_0600_and_a_second_start_reuses_them(tmp_path):
    data = tmp_path / "fresh"
    first = start_served(serve_args(data))
    try:
        exported = first.wait_line(r"AWS_ACCESS_KEY_ID=(\S+) AWS_SECRET_ACCESS_KEY=(\S+)", timeout=30)
        assert exported, first.lines
        access_key, secret_key = exported.groups()
        awscli = first.wait_line(r"aws --endpoint-url (\S+) s3 ls", timeout=10)
        assert awscli and awscli.group(1) == first.url, first.lines
        # the printed pair works against the printed endpoint
        s3 = client_for(first.url, access_key, secret_key)
        s3.create_bucket(Bucket="newcomer")
        s3.put_object(Bucket="newcomer", Key="hello.txt", Body=b"hi")
    finally:
        code, err = first.stop()
    assert code == 0, err
    stored = data / "credentials.toml"
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600
    assert access_key in stored.read_text() and secret_key in stored.read_text()

    second = start_served(serve_args(data))
    try:
        # no new pair is announced, and the old one still opens the old data
        assert second.wait_line(r"AWS_ACCESS_KEY_ID", timeout=2) is None
        assert client_for(second.url, access_key, secret_key).get_object(Bucket="newcomer", Key="hello.txt")["Body"].read() == b"hi"
    finally:
        code, err = second.stop()
    assert code == 0, err
    assert "Traceback" not in err


@pytest.mark.slow
def test_printed_awscli_line_works(tmp_path):
    # the line a newcomer copies: export the pair, then `aws --endpoint-url URL s3 ls`
    served = start_served(serve_args(tmp_path / "data"))
    try:
        exported = served.wait_line(r"AWS_ACCESS_KEY_ID=(\S+) AWS_SECRET_ACCESS_KEY=(\S+)", timeout=30)
        line = served.wait_line(r"(aws --endpoint-url \S+ s3 ls)", timeout=10).group(1)
        access_key, secret_key = exported.groups()
        client_for(served.url, access_key, secret_key).create_bucket(Bucket="seen-by-awscli")
        env = {"AWS_ACCESS_KEY_ID": access_key, "AWS_SECRET_ACCESS_KEY": secret_key, "AWS_DEFAULT_REGION": REGION,
               "AWS_CONFIG_FILE": "/dev/null", "AWS_SHARED_CREDENTIALS_FILE": "/dev/null", "PATH": "/usr/bin:/bin",
               "AWS_EC2_METADATA_DISABLED": "true"}
        env["PYTHONPATH"] = os.environ.get("PYTHONPATH", "")
        proc = subprocess.run([sys.executable, "-m", "awscli", *line.split()[1:]], env=env, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        assert "seen-by-awscli" in proc.stdout
    finally:
        served.stop()


def _one_line_failure(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    return lines[0]


def test_bad_port_exits_with_one_line(tmp_path):
    line = _one_line_failure(_run("serve", "--port", "abc", "--data-dir", str(tmp_path / "d")))
    assert "port" in line


# data dirs no user can use; permission bits would not stop the root user the suite may run as
@pytest.mark.parametrize(
    "make",
    [
        lambda tmp: (tmp / "a-file").write_text("x") and tmp / "a-file" / "data",  # below a regular file
        lambda tmp: (tmp / "data").write_text("x") and tmp / "data",  # is itself a regular file
    ],
    ids=["parent-is-a-file", "is-a-file"],
)
def test_unusable_data_dir_exits_with_one_line(tmp_path, make):
    data = make(tmp_path)
    line = _one_line_failure(_run("serve", "--port", "0", "--data-dir", str(data)))
    assert "data_dir" in line


def test_port_in_use_exits_with_one_line(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        line = _one_line_failure(_run("serve", "--host", "127.0.0.1", "--port", str(port), "--data-dir", str(tmp_path / "d")))
    assert str(port) in line and "in use" in line


def test_config_reference_prints_the_table():
    proc = _run("config", "--reference")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("| setting |") and set(lines[1]) <= set("|-")
    names = [re.match(r"\| `([a-z0-9_]+)` \|", line).group(1) for line in lines[2:]]
    for expected in ("host", "port", "data_dir", "backend", "backend_url", "access_key", "secret_key"):
        assert expected in names


def test_config_prints_effective_settings_with_secrets_redacted():
    proc = _run("config", "--access-key", "AKIAVISIBLE", "--secret-key", "very-secret-value")
    assert proc.returncode == 0, proc.stderr
    assert "access_key = AKIAVISIBLE" in proc.stdout
    assert "very-secret-value" not in proc.stdout and "secret_key = <redacted>" in proc.stdout


def test_python_dash_m_s3proxy_shows_help():
    proc = _run("--help")
    assert proc.returncode == 0 and "serve" in proc.stdout and "config" in proc.stdout
    proc = _run()
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
