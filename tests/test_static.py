"""The static checks: `mypy --strict` and `ruff check` pass on the packages held to them.

The configuration is pyproject.toml's ([tool.mypy], [tool.ruff]). `STRICT` lists the packages
checked so far; the aim is the whole of `s3proxy`. mypy only reports the listed package (imports
from elsewhere are followed for their types, their own errors are not this test's).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
STRICT = ["s3proxy/kms", "s3proxy/modes", "s3proxy/policy"]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("path", STRICT)
def test_mypy_strict(path: str) -> None:
    done = _run("mypy", "--strict", "--follow-imports=silent", "--cache-dir", os.devnull, path)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("path", STRICT)
def test_ruff(path: str) -> None:
    done = _run("ruff", "check", "--no-cache", path)
    assert done.returncode == 0, done.stdout + done.stderr
