"""The static checks pass: mypy on the whole package, ruff on the package and the tests.

Both read their configuration from pyproject.toml: [tool.mypy] holds all of `s3proxy` to
`strict`, [tool.ruff] names the rules and the few per-file exceptions. These are the commands
.ci/run runs after the suite; here they run once each (a whole-package mypy run takes seconds), and
mypy writes its cache under the test's tmp path, not into the checkout.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_mypy_passes_on_the_package(tmp_path: Path) -> None:
    done = _run("mypy", "--cache-dir", str(tmp_path / "mypy"), "s3proxy")
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_whole_package_is_held_to_strict() -> None:
    """strict = true for the package, with no module let off by an override."""
    import tomllib

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mypy"]
    assert config.get("strict") is True
    for override in config.get("overrides", []):
        assert set(override) <= {"module", "ignore_missing_imports"}, override


def test_ruff_passes_on_the_package_and_the_tests() -> None:
    done = _run("ruff", "check", "--no-cache", "s3proxy", "tests")
    assert done.returncode == 0, done.stdout + done.stderr
