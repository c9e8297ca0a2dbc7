"""private: what the proxy creates is 0700/0600 whatever the umask; tighten() fixes an older data dir."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from s3proxy import private


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


@pytest.fixture
def loose_umask():
    old = os.umask(0o000)
    yield
    os.umask(old)


def test_directories_and_files_are_private_under_a_loose_umask(tmp_path: Path, loose_umask) -> None:
    deep = private.make_dir(tmp_path / "a" / "b" / "c")
    assert [mode(p) for p in (tmp_path / "a", tmp_path / "a" / "b", deep)] == [0o700] * 3
    private.write_file(deep / "f", b"data")
    assert mode(deep / "f") == 0o600 and (deep / "f").read_bytes() == b"data"
    db = private.prepare_sqlite(tmp_path / "db" / "k.sqlite3")
    assert (mode(db.parent), mode(db)) == (0o700, 0o600)


def test_an_existing_directory_is_left_as_it_is(tmp_path: Path) -> None:
    (tmp_path / "shared").mkdir(mode=0o755)
    os.chmod(tmp_path / "shared", 0o755)
    private.make_dir(tmp_path / "shared")
    assert mode(tmp_path / "shared") == 0o755


def test_tighten_makes_a_loose_tree_private_and_says_what_it_changed(tmp_path: Path) -> None:
    root = tmp_path / "data"
    (root / "loose").mkdir(parents=True)
    (root / "private").mkdir()
    for path, m in ((root, 0o755), (root / "loose", 0o775), (root / "private", 0o700)):
        os.chmod(path, m)
    for path in (root / "top", root / "loose" / "f", root / "private" / "f", root / "root.key"):
        path.write_bytes(b"x")
        os.chmod(path, 0o644)
    os.symlink(root / "top", root / "link")
    changed, failed = private.tighten(root, skip=(root / "root.key",))
    assert failed == []
    assert sorted(changed) == sorted([root, root / "loose", root / "top", root / "loose" / "f"])
    assert mode(root / "private" / "f") == 0o644  # inside a directory that was private already: not stat'ed
    assert mode(root / "root.key") == 0o644  # skipped: the KMS refuses a loose root key itself
    assert private.tighten(root, skip=(root / "root.key",)) == ([], [])
