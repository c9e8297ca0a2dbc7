"""s3fs (fsspec's S3 filesystem) in a virtualenv of its own, for the interop tests.

s3fs pins aiobotocore, which pins a botocore that is usually not the one boto3, awscli and the
proxy's own tests use; installed beside them it would downgrade them. So `scripts/test` (the set-up)
makes `.venv/s3fs` with `python3 -m tests.interop.s3fs_env`, installing the s3fs the `s3fs` extra of
pyproject.toml names, and the tests run their s3fs scripts with that venv's python. Tests install
nothing: `require()` skips with the command to run when the venv is missing, or fails when the set-up
said it made it (S3PROXY_S3FS=installed), so CI cannot skip silently.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
VENV = ROOT / ".venv" / "s3fs"
PYTHON = VENV / "bin" / "python"
INSTALLED_MARK = "S3PROXY_S3FS"


def requirements() -> list[str]:
    """What the `s3fs` extra of pyproject.toml names."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    return list(project["optional-dependencies"]["s3fs"])


@functools.lru_cache(maxsize=1)
def missing() -> str | None:
    if not PYTHON.exists():
        return f"no s3fs virtualenv at {VENV}"
    probe = subprocess.run([str(PYTHON), "-c", "import s3fs"], capture_output=True, timeout=60, env=clean_env())
    return None if probe.returncode == 0 else f"s3fs does not import in {VENV}: {probe.stderr.decode()[-300:]}"


def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for the venv's python: nothing of this tree on its path (its own site-packages only)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    return {**env, **(extra or {})}


def require() -> None:
    from tests.system_packages import skip_or_fail

    reason = missing()
    if reason is not None:
        skip_or_fail(f"{reason}; `scripts/test` makes it (python3 -m tests.interop.s3fs_env)", INSTALLED_MARK)


def install(out=sys.stderr) -> bool:
    """Make the venv and install the s3fs extra's requirements in it (once); True when s3fs imports."""
    if missing() is None:
        return True
    steps = ([sys.executable, "-m", "venv", "--clear", str(VENV)],
             [str(PYTHON), "-m", "pip", "install", "-q", "--disable-pip-version-check", *requirements()])
    for step in steps:
        done = subprocess.run(step, capture_output=True, env=clean_env())
        if done.returncode != 0:
            print(f"{' '.join(step[:4])} ... failed:\n{(done.stdout + done.stderr).decode(errors='replace')[-3000:]}", file=out)
            return False
    missing.cache_clear()
    return missing() is None


if __name__ == "__main__":
    sys.exit(0 if install() else 1)
