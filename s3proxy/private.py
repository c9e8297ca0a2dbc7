"""Files at rest are private to the proxy's user, whatever the umask: directories 0700, files 0600.

Every file and directory the proxy (or its tools) creates goes through here: the mode is given on
creation and then set on the open descriptor (a umask can only take bits away, and an odd umask
could take too many). SQLite databases are created here before SQLite opens them, because SQLite
gives a database's -wal, -shm and -journal files the database file's own mode.

`tighten(root)` fixes a data dir made by an older version (or under a looser umask), on start: the
root and every directory under it become 0700; files become 0600 in the root and in every
directory that was not private yet. A file inside a directory that already was 0700 is out of other
users' reach whatever its own mode, and skipping those keeps a restart from stat'ing every blob of a
large fs-backend store. Symbolic links are never followed.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

DIR_MODE = 0o700
FILE_MODE = 0o600


def make_dir(path: Path) -> Path:
    """`path`, and any missing parent, created 0700; a directory that exists is left as it is."""
    missing: list[Path] = []
    here = Path(path)
    while not os.path.lexists(here):
        missing.append(here)
        here = here.parent
    for directory in reversed(missing):
        try:
            os.mkdir(directory, DIR_MODE)
        except FileExistsError:
            continue  # made meanwhile by another thread or process
        os.chmod(directory, DIR_MODE)
    return Path(path)


def open_file(path: Path, flags: int = os.O_WRONLY | os.O_CREAT | os.O_TRUNC) -> int:
    """os.open(path, flags) with the file's mode 0600 (set on the descriptor, so no window is loose)."""
    fd = os.open(path, flags | os.O_CLOEXEC, FILE_MODE)
    try:
        if stat.S_IMODE(os.fstat(fd).st_mode) != FILE_MODE:
            os.fchmod(fd, FILE_MODE)
    except BaseException:
        os.close(fd)
        raise
    return fd


def write_file(path: Path, data: bytes, *, fsync: bool = False) -> None:
    """Write `data` as the whole content of `path` (0600)."""
    fd = open_file(path)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        if fsync:
            os.fsync(fd)
    finally:
        os.close(fd)


def prepare_sqlite(path: Path) -> Path:
    """Create an SQLite database file 0600 (and its directory 0700) before SQLite opens it; tighten
    journal files an older version left, which SQLite would otherwise keep reusing as they are."""
    make_dir(path.parent)
    os.close(open_file(path, os.O_RDWR | os.O_CREAT))
    for suffix in ("-wal", "-shm", "-journal"):
        _tighten_file(Path(f"{path}{suffix}"))
    return path


def tighten(root: Path, *, skip: tuple[Path, ...] = ()) -> tuple[list[Path], list[Path]]:
    """Make `root` and what is under it private (module docstring), except the files in `skip`;
    (paths changed, paths that could not be changed)."""
    changed: list[Path] = []
    failed: list[Path] = []
    skipped = {os.path.abspath(p) for p in skip}

    def fix(path: Path, mode: int) -> bool:
        """True when `path` was loose (had group or other bits) before."""
        if os.path.abspath(path) in skipped:
            return False
        try:
            current = stat.S_IMODE(os.lstat(path).st_mode)
            if not current & 0o077:
                return False
            os.chmod(path, mode)
        except FileNotFoundError:
            return False
        except OSError:
            failed.append(path)
            return True
        changed.append(path)
        return True

    def walk(directory: Path, check_files: bool) -> None:
        try:
            entries = list(os.scandir(directory))
        except OSError:
            failed.append(directory)
            return
        for entry in entries:
            if entry.is_symlink():
                continue
            if entry.is_dir():
                walk(Path(entry.path), fix(Path(entry.path), DIR_MODE))
            elif check_files and entry.is_file():
                fix(Path(entry.path), FILE_MODE)

    root = Path(root)
    if root.is_dir() and not root.is_symlink():
        fix(root, DIR_MODE)
        walk(root, True)
    return changed, failed


def _tighten_file(path: Path) -> None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) != FILE_MODE:
        os.chmod(path, FILE_MODE)
