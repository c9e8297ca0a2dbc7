"""docs/THREAT_MODEL.md names a test for every claim: each named test must exist.

A reference is a backticked `path.py::test_name`; a bare file name is in tests/hardening/ (the
document says so), anything else is relative to the repository. A parametrized id names its
function. A claim whose test was renamed or removed fails here instead of rotting.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "THREAT_MODEL.md"
_REF = re.compile(r"`((?:tests/)?[\w/]*test_\w+\.py)::(test_\w+)(?:\[[^`]*\])?`")


def _functions(path: Path) -> set[str]:
    return {n.name for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}


def test_every_test_the_threat_model_names_exists():
    refs = _REF.findall(DOC.read_text(encoding="utf-8"))
    assert len(refs) > 40
    missing = []
    for file, name in refs:
        path = ROOT / file if file.startswith("tests/") else ROOT / "tests" / "hardening" / file
        if not path.exists() or name not in _functions(path):
            missing.append(f"{file}::{name}")
    assert missing == []
