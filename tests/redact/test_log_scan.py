"""The suite's own guard (tests/conftest.py): a key-like string in any s3proxy log line fails the run,
serial or parallel (under pytest-xdist each worker's findings reach the controller, which reports them)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("workers", ["0", "2"])
def test_a_logged_key_fails_the_run(tmp_path: Path, workers: str) -> None:
    (tmp_path / "test_leak.py").write_text(
        "import logging\n\n"
        "def test_leaks():\n"
        "    logging.getLogger('s3proxy.leak').warning('key %s', 'Q' * 43 + '=')\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "tests.conftest",
                           "-n", workers, "--rootdir", str(tmp_path), str(tmp_path / "test_leak.py")],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert "1 passed" in done.stdout, done.stdout + done.stderr
    assert done.returncode == 1 and "KEY MATERIAL IN LOGS (1 of 1 lines)" in done.stdout, done.stdout + done.stderr
