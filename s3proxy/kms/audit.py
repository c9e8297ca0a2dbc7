"""The audit trail: one CloudTrail-shaped JSON line per key-service call, hash-chained so edits show.

Each line is a JSON object with the CloudTrail fields plus `seq` (1, 2, ...), `prevHash` (the
previous line's `hash`, 64 zeros for the first) and `hash` = SHA-256 hex of the line's canonical
JSON (sorted keys, no spaces) without the `hash` field. `verify_audit_log` recomputes the chain:
an edited line breaks its own hash, a deleted or reordered line breaks the next `prevHash` or `seq`.
Cutting lines off the end is caught against the head file `<log>.head` (seq and hash of the last
line, rewritten atomically after each fsync and on close): the log must reach that head.

One chain per process: `audit_log_path` names each process's file (`audit.log`, or `audit.wN.log`
for worker N of `serve --workers`; a proxy on another host keeps its own in its own data dir) and
the sink holds an exclusive lock on it, so a second writer fails to start instead of forking the
chain. `s3proxy audit verify` checks every chain of a data dir (`audit_logs`).

Durability: each line is written and flushed to the OS before the call returns, so a killed process
loses nothing it acknowledged; `fsync` runs on the first emit after `fsync_interval` seconds (1 s by
default) and on close, so a power cut may lose the last second or so of lines. Pass
`fsync_interval=0` to fsync every line (about 7 ms each on this machine's disk). Records never hold
plaintext, key material or ciphertext: the service builds them from request parameters that exclude those fields.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, TextIO

from ..private import make_dir, open_file, write_file

GENESIS = "0" * 64


class AuditSink(Protocol):
    """Where the Auditor's records go (the hash-chained file, a list in tests, the metrics-counting wrapper)."""

    def emit(self, record: dict[str, Any]) -> None:
        """Append one record; durable (as the sink promises) when this returns."""
        ...

    def close(self) -> None:
        """Make every emitted record durable and release the sink (the key service closes it last)."""
        ...


class MemoryAuditSink:
    """Keeps records in a list (tests, and runs that want no file)."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def emit(self, record: dict[str, Any]) -> None:
        with self._lock:
            self.records.append(record)

    def close(self) -> None:
        pass


def _canonical(record: dict[str, Any]) -> bytes:
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _digest(record: dict[str, Any]) -> str:
    return hashlib.sha256(_canonical({k: v for k, v in record.items() if k != "hash"})).hexdigest()


def _head_path(path: Path) -> Path:
    return path.with_name(path.name + ".head")


class FileAuditSink:
    """Appends hash-chained JSON lines to one file; thread-safe; resumes the chain on reopen."""

    def __init__(self, path: Path, *, fsync_interval: float = 1.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        make_dir(path.parent)
        self.path = path
        self._fsync_interval = fsync_interval
        self._clock = clock
        self._synced_at = clock()
        self._lock = threading.Lock()
        self._file: TextIO = os.fdopen(open_file(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT), "a", encoding="utf-8")
        try:  # one writer per chain: a second process appending would fork it
            fcntl.flock(self._file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._file.close()
            raise OSError(errno.EBUSY, f"audit log {path} is in use by another process (give each process its own)") from None
        self._seq, self._prev = self._resume(path)

    @staticmethod
    def _resume(path: Path) -> tuple[int, str]:
        """Seq and hash of the last complete line; a torn last line (a crash mid-write) is cut off."""
        if not path.exists():
            return 0, GENESIS
        with open(path, "rb+") as f:
            data = f.read()
            end = data.rfind(b"\n") + 1
            if end != len(data):  # never acknowledged: the writer died inside this line
                f.truncate(end)
        lines = data[:end].splitlines()
        if not lines:
            return 0, GENESIS
        last = json.loads(lines[-1])
        return int(last["seq"]), str(last["hash"])

    def emit(self, record: dict[str, Any]) -> None:
        with self._lock:
            seq = self._seq + 1
            body = _canonical(dict(record, seq=seq, prevHash=self._prev))
            digest = hashlib.sha256(body).hexdigest()
            # the hash goes in last; verification re-serialises canonically without it
            self._file.write(body[:-1].decode() + ',"hash":"' + digest + '"}\n')
            self._file.flush()
            self._seq, self._prev = seq, digest
            now = self._clock()
            if now - self._synced_at >= self._fsync_interval:
                os.fsync(self._file.fileno())
                self._synced_at = now
                self._write_head()  # only after the fsync: the durable log always reaches the head

    def _write_head(self) -> None:
        head = _head_path(self.path)
        tmp = head.with_name(head.name + ".tmp")
        write_file(tmp, json.dumps({"seq": self._seq, "hash": self._prev}).encode())
        os.replace(tmp, head)

    def close(self) -> None:
        with self._lock:
            if self._file.closed:
                return
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            if self._seq:
                self._write_head()


def audit_log_path(data_dir: Path, worker: int | None = None) -> Path:
    """This process's audit log: `DATA_DIR/kms/audit.log`, or `audit.wN.log` for worker N of
    `serve --workers`. Each process keeps its own chain, so no two writers share a file (proxies on
    other hosts keep theirs in their own data dir)."""
    kms = Path(data_dir) / "kms"
    return kms / "audit.log" if worker is None else kms / f"audit.w{worker}.log"


def audit_logs(data_dir: Path) -> list[Path]:
    """Every audit log in a data dir: the single process's and each worker's."""
    kms = Path(data_dir) / "kms"
    found = [kms / "audit.log"] if (kms / "audit.log").exists() else []
    workers = [p for p in kms.glob("audit.w*.log") if p.name[7:-4].isdigit()]
    return found + sorted(workers, key=lambda p: int(p.name[7:-4]))


def verify_audit_log(path: Path) -> tuple[bool, list[str]]:
    """Recompute the chain of an audit log; (True, []) if intact, else (False, what is wrong)."""
    problems: list[str] = []
    prev, seq = GENESIS, 0
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        return False, [f"cannot read {path}: {exc.strerror}"]
    head = _head_path(Path(path))
    want: dict[str, Any] | None = None
    if head.exists():
        try:
            want = json.loads(head.read_text())
            want = {"seq": int(want["seq"]), "hash": str(want["hash"])}
        except (ValueError, KeyError, TypeError):
            problems.append(f"head file {head} is unreadable")
            want = None
    for number, text in enumerate(raw.splitlines(), start=1):
        try:
            line = json.loads(text)
            ok_shape = isinstance(line, dict) and isinstance(line.get("hash"), str)
        except ValueError:
            ok_shape = False
        if not ok_shape:
            problems.append(f"line {number}: not a JSON audit record")
            continue
        if line.get("seq") != seq + 1:
            problems.append(f"line {number}: seq {line.get('seq')} follows {seq} (lines deleted or reordered)")
        if line.get("prevHash") != prev:
            problems.append(
                f"line {number}: prevHash does not match the previous line (a line before it was edited, deleted or reordered)"
            )
        if _digest(line) != line["hash"]:
            problems.append(f"line {number}: hash does not match its content (the line was edited)")
        prev, seq = line["hash"], int(line["seq"]) if isinstance(line.get("seq"), int) else seq + 1
        if want is not None and seq == want["seq"] and prev != want["hash"]:
            problems.append(f"line {number}: differs from the head file's record of seq {seq} (the log was rewritten)")
    if want is not None and seq < want["seq"]:
        problems.append(f"log ends at seq {seq} but the head file records seq {want['seq']} (lines cut off the end)")
    if raw and not raw.endswith(b"\n"):
        problems.append("the last line is incomplete")
    return not problems, problems


def run_audit_verify(path: Path, out: TextIO | None = None) -> int:
    """`s3proxy audit verify`: print the result; exit code 0 if the chain is intact, 1 otherwise."""
    out = out or sys.stdout
    ok, problems = verify_audit_log(path)
    if ok:
        count = Path(path).read_bytes().count(b"\n") if Path(path).exists() else 0
        print(f"audit log {path}: OK, {count} records, chain intact", file=out)
        return 0
    print(f"audit log {path}: TAMPERED or damaged, {len(problems)} problem(s):", file=out)
    for p in problems:
        print(f"  {p}", file=out)
    return 1
