"""Debian packages some tests need and pip cannot give (Ruby's S3 Encryption Client, docker-compose,
nginx): installed with apt-get when missing and allowed (root, apt-get present), within a time budget.

The install runs inside the calling test's timeout (pytest-timeout counts fixture set-up), so callers
raise their timeout above the budget and a slow mirror is reported as such, not as a hang.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from typing import Callable

import pytest


def missing_command(name: str) -> Callable[[], str | None]:
    """A probe for `provide`: why `name` is not on PATH (or in /usr/sbin), or None when it is."""
    return lambda: None if command(name) else f"{name} is not installed"


def command(name: str) -> str | None:
    """The path of command `name` on PATH or in /usr/sbin (where Debian puts daemons such as nginx)."""
    return shutil.which(name, path=os.environ.get("PATH", os.defpath) + ":/usr/sbin")


def provide(package: str, missing: Callable[[], str | None], *, budget_s: float = 420, required: bool = True) -> None:
    """Make `package` usable: done if `missing()` is None; else `apt-get install` it (after `apt-get
    update` if the plain install fails) when root with apt-get, else skip. If it still is missing:
    fail (required) or skip with apt's output."""
    reason = missing()
    if reason is None:
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        pytest.skip(f"{reason}, and this is not root with apt-get: apt-get install -y {package}")
    deadline = time.monotonic() + budget_s
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", package]
    output = b""
    for cmd in (install, ["apt-get", "update", "-q"], install):
        left = deadline - time.monotonic()
        try:
            proc = subprocess.run(cmd, capture_output=True, env=env, timeout=max(left, 1))
        except subprocess.TimeoutExpired as exc:
            pytest.fail(f"{' '.join(cmd)} took over {budget_s:.0f} s in total; install {package} beforehand."
                        f"\n{(exc.stdout or b'')[-2000:].decode(errors='replace')}", pytrace=False)
        output = proc.stdout + proc.stderr
        if cmd is install and proc.returncode == 0:
            break
    reason = missing()
    if reason is not None:
        message = f"{reason} even after apt-get install {package}:\n{output[-3000:].decode(errors='replace')}"
        if required:
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
