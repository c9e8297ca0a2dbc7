"""The tests mirror the package: every package and module of s3proxy has its own folder, tests/<name>/,
whose tests import it; every other folder of tests/ is one of the few that cut across packages.

    tests/<name>/      the tests of s3proxy/<name> (a package) or s3proxy/<name>.py (a module)
    tests/e2e/         the proxy served for real, driven by real clients (boto3, awscli)
    tests/hardening/   attacks, faults and limits against a running proxy
    tests/scale/       several proxies over one PostgreSQL keystore: coherence, failover, the failure drill
    tests/twins/       the in-memory twins the unit tests share (MemoryBackend, a memory key service)
    tests/vectors/     the format's test vectors and their generator

`python -m s3proxy` (s3proxy/__main__.py) is the command line's entry, tested with it (tests/cli, tests/e2e).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TESTS = ROOT / "tests"
CROSS_CUTTING = {"e2e", "hardening", "interop", "scale", "twins", "vectors"}


def packages() -> set[str]:
    """The top-level names of s3proxy: its sub-packages (namespace ones included) and its modules."""
    names = {p.name for p in (ROOT / "s3proxy").iterdir() if p.is_dir() and any(p.glob("*.py"))}
    names |= {p.stem for p in (ROOT / "s3proxy").glob("*.py")}
    return names - {"__init__", "__main__"}


def imports_of(path: Path) -> set[str]:
    """The s3proxy names a test file imports: `s3proxy.x...`, `from s3proxy import x`."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules = [node.module] + ([f"{node.module}.{a.name}" for a in node.names] if node.module == "s3proxy" else [])
        else:
            continue
        found.update(m.split(".")[1] for m in modules if m.startswith("s3proxy.") and m.count(".") >= 1)
    return found


def test_every_package_of_s3proxy_has_a_test_folder() -> None:
    missing = sorted(name for name in packages() if not (TESTS / name).is_dir())
    assert missing == [], f"add tests/<name>/ for {missing}"


def test_each_test_folder_tests_its_own_package() -> None:
    idle = [name for name in sorted(packages()) if (TESTS / name).is_dir()
            and not any(name in imports_of(f) for f in (TESTS / name).rglob("test_*.py"))]
    assert idle == [], f"these test folders import nothing of their package: {idle}"


def test_every_test_folder_is_a_package_or_a_cross_cutting_one() -> None:
    folders = {p.name for p in TESTS.iterdir() if p.is_dir() and not p.name.startswith((".", "__"))}
    assert sorted(folders - packages() - CROSS_CUTTING) == []


def test_the_import_reader_sees_each_form() -> None:
    sample = TESTS / "twins" / "__init__.py"
    assert {"auth", "internal", "kms", "modes", "ops", "store"} <= imports_of(sample)
    assert "settings" in imports_of(TESTS / "cli" / "test_cli.py")  # `from s3proxy import cli, settings`
