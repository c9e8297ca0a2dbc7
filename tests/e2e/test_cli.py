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


def _printed_block(served, first_line: str, timeout: float = 30) -> str:
    """The indented lines printed after the line matching `first_line`: what a newcomer copies."""
    assert served.wait_line(first_line, timeout=timeout), served.lines
    assert served.wait_line(r"^stop with Ctrl-C", timeout=timeout), served.lines
    at = next(i for i, line in enumerate(served.lines) if re.search(first_line, line))
    block = []
    for line in served.lines[at + 1:]:
        if not line.startswith("  "):
            break
        block.append(line.strip())
    return "\n".join(block)


def _run_block(block: str, tmp_path, *, cwd=None) -> subprocess.CompletedProcess:
    """The printed lines in bash, with `aws` on PATH and nothing of AWS in the environment but what they export."""
    shims = tmp_path / "bin"
    shims.mkdir(exist_ok=True)
    shim = shims / "aws"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m awscli "$@"\n')
    shim.chmod(0o755)
    env = {"PATH": f"{shims}:/usr/bin:/bin", "AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
           "AWS_EC2_METADATA_DISABLED": "true", "PYTHONPATH": os.environ.get("PYTHONPATH", ""), "HOME": str(tmp_path)}
    return subprocess.run(["bash", "-euo", "pipefail", "-c", block], env=env, capture_output=True, text=True, timeout=120,
                          cwd=cwd)


@pytest.mark.slow
def test_first_start_prints_a_ready_export_block_and_a_restart_says_where_the_credentials_are(tmp_path):
    data = tmp_path / "fresh"
    first = start_served(serve_args(data))
    try:
        block = _printed_block(first, r"^Generated client credentials, stored in")
        access_key, secret_key = re.search(r"AWS_ACCESS_KEY_ID=(\S+) AWS_SECRET_ACCESS_KEY=(\S+)", block).groups()
        assert f"AWS_ENDPOINT_URL={first.url} AWS_DEFAULT_REGION={REGION}" in block
        client_for(first.url, access_key, secret_key).create_bucket(Bucket="seen-by-awscli")
        # the block as printed, pasted into a shell: S3 and the KMS (which needs the region) both answer
        ran = _run_block(block, tmp_path)
        assert ran.returncode == 0, ran.stderr
        assert "seen-by-awscli" in ran.stdout and '"Keys"' in ran.stdout
    finally:
        code, err = first.stop()
    assert code == 0, err
    stored = data / "credentials.toml"
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600
    assert access_key in stored.read_text() and secret_key in stored.read_text()

    second = start_served(serve_args(data))
    try:
        block = _printed_block(second, rf"^client credentials: {re.escape(str(stored))}")
        assert secret_key not in "\n".join(second.lines)  # shown once, on the start that made it
        # the restart's block reads the secret from the file; it opens the old data
        ran = _run_block(block + "\naws s3 ls", tmp_path)
        assert ran.returncode == 0, ran.stderr
        assert "seen-by-awscli" in ran.stdout
    finally:
        code, err = second.stop()
    assert code == 0, err
    assert "Traceback" not in err


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
