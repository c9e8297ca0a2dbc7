"""The audit trail: one CloudTrail-shaped JSON line per key-service call, chained under a key so edits show.

Line format and verification are docs/FORMAT.md §16 (the pure code: format/auditchain.py): each
line carries `seq` (1, 2, ...), `prevMac` (the previous line's `mac`) and `mac` = HMAC-SHA-256
under IK_audit, a sub-key of the keystore's integrity key. Without the root key nobody can
recompute a MAC, so an edited, forged, deleted or reordered line shows, and so does a log rewritten
with recomputed plain SHA-256 hashes. Cutting lines off the end is caught against the head file
`<log>.head` (seq and mac of the last line, rewritten atomically after each fsync and on close).

Version-1 logs (written before format 2: `prevHash`/`hash`, plain SHA-256) are continued, not
rewritten: when a keyed sink opens a log whose last line is version 1, it appends one keyed line
(`AuditChainKeyed`) at once, whose `prevMac` is the last version-1 `hash`; that fixes the whole
version-1 prefix (FORMAT.md §19.3), and from then on a log without keyed lines is a rewrite.

One chain per process: `audit_log_path` names each process's file (`audit.log`, or `audit.wN.log`
for worker N of `serve --workers`; a proxy on another host keeps its own in its own data dir) and
the sink holds an exclusive lock on it, so a second writer fails to start instead of forking the
chain. `s3proxy audit verify` checks every chain of a data dir (`audit_logs`).

Durability: each line is written and flushed to the OS before the call returns, so a killed process
loses nothing it acknowledged; `fsync` runs on the first write after `fsync_interval` seconds (1 s by
default) and on close, so a power cut may lose the last second or so of lines. Pass
`fsync_interval=0` to fsync every line (about 7 ms each on this machine's disk).

Group commit (`batch_on(loop)`, which the proxy calls when it starts serving): the proxy runs each
KMS call in a worker thread and awaits it from its event loop. A line emitted in a worker thread is
then kept in memory and the first one of a batch schedules one write of the whole batch on the loop
(`call_soon_threadsafe`). That callback is queued before the worker's own call can report back
(asyncio wakes the awaiting coroutine through the same queue, after the call returned), so the
batch is written and flushed before any coroutine that awaited one of its calls goes on, and before
any response that depends on it is sent: the promise above holds for the awaited call. Under load
many calls share one write(2). A line emitted on the loop's own thread, or with no loop (or a
closed one), is written at once, as before. If a group write fails (a full disk), the calls of that
one batch have gone on already; the sink then refuses every later line, so every later key service
call fails, as every call did before when its own line could not be written. Records never hold
plaintext, key material or ciphertext: the service builds them from request parameters that exclude those fields.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import errno
import fcntl
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, TextIO

from ..format.auditchain import AUDIT_GENESIS, AuditOutcome, AuditVerdict, audit_line, verify_audit_chain
from ..private import make_dir, open_file, write_file

log = logging.getLogger("s3proxy.audit")

GENESIS = AUDIT_GENESIS
CHAIN_KEYED = "AuditChainKeyed"  # the keyed line a sink appends after a version-1 prefix


class AuditSink(Protocol):
    """Where the Auditor's records go (the keyed chain in a file, a list in tests, the metrics-counting wrapper)."""

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


def _head_path(path: Path) -> Path:
    return path.with_name(path.name + ".head")


# --- the line format: keyed lines (FORMAT.md §16), continuing a version-1 prefix (§19.3) ---------


def _last_link(data: bytes) -> tuple[int, str, bool]:
    """(seq, chaining value, keyed) of the last complete line of a log: its `mac`, or a version-1
    line's `hash`; (0, genesis, False) for an empty log."""
    lines = data.splitlines()
    if not lines:
        return 0, GENESIS, False
    last = json.loads(lines[-1])
    if "mac" in last:
        return int(last["seq"]), str(last["mac"]), True
    return int(last["seq"]), str(last["hash"]), False


class FileAuditSink:
    """Appends keyed, chained JSON lines to one file; thread-safe; resumes the chain on reopen.

    The key (IK_audit) comes from the keystore, which is opened after the sink: `bind_key` hands it
    over (KeyService does for its own sink, the application for the one it builds). A sink without
    a key refuses to write rather than write an unkeyed line.
    """

    def __init__(self, path: Path, *, ik_audit: bytes | None = None, fsync_interval: float = 1.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        make_dir(path.parent)
        self.path = path
        self._fsync_interval = fsync_interval
        self._clock = clock
        self._synced_at = clock()
        self._lock = threading.Lock()
        self._key: bytes | None = None
        self._file: TextIO = os.fdopen(open_file(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT), "a", encoding="utf-8")
        try:  # one writer per chain: a second process appending would fork it
            fcntl.flock(self._file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._file.close()
            raise OSError(errno.EBUSY, f"audit log {path} is in use by another process (give each process its own)") from None
        self._seq, self._prev, self._keyed = self._resume(path)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._batch: list[str] = []  # lines chained but not yet written (group commit)
        self._failed: OSError | None = None  # a group write that failed: no further line is taken
        if ik_audit is not None:
            self.bind_key(ik_audit)

    def __repr__(self) -> str:
        return f"FileAuditSink({str(self.path)!r}, {'keyed' if self._key else 'no key yet'})"

    @staticmethod
    def _resume(path: Path) -> tuple[int, str, bool]:
        """Seq, chaining value and keyedness of the last complete line; a torn last line (a crash
        mid-write) is cut off."""
        if not path.exists():
            return 0, GENESIS, False
        with open(path, "rb+") as f:
            data = f.read()
            end = data.rfind(b"\n") + 1
            if end != len(data):  # never acknowledged: the writer died inside this line
                f.truncate(end)
        return _last_link(data[:end])

    @property
    def keyed(self) -> bool:
        return self._key is not None

    def bind_key(self, ik_audit: bytes) -> None:
        """Use IK_audit from now on; a version-1 log is continued by one keyed line at once."""
        with self._lock:
            self._key = bytes(ik_audit)
            if self._seq and not self._keyed:
                now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
                self._append({"eventName": CHAIN_KEYED, "eventSource": "s3proxy", "eventTime": now,
                              "detail": f"version-1 lines 1..{self._seq} end here; every later line is keyed"})
                self._write()
                self._sync()

    def batch_on(self, loop: asyncio.AbstractEventLoop) -> None:
        """Group commit on `loop` from now on (see the module docstring); call it on the loop's thread."""
        with self._lock:
            self._loop, self._loop_thread = loop, threading.get_ident()

    def emit(self, record: dict[str, Any]) -> None:
        with self._lock:
            if self._failed is not None:
                raise OSError(self._failed.errno, f"the audit log could not be written: {self._failed.strerror}")
            self._append(record)
            loop = self._loop
            if loop is not None and threading.get_ident() != self._loop_thread:
                if len(self._batch) > 1:
                    return  # the batch's write is queued on the loop already, ahead of this call's return
                try:
                    loop.call_soon_threadsafe(self._commit)
                    return
                except RuntimeError:  # the loop is closed: nobody will run it
                    pass
            self._write()

    def _commit(self) -> None:
        with self._lock:
            if self._file.closed or self._failed is not None:
                return
            try:
                self._write()
            except OSError as exc:  # the calls of this batch went on: refuse every later one (fail closed)
                self._failed = exc
                log.critical("audit log %s could not be written (%s): every further key service call fails",
                             self.path, exc.strerror or exc)

    def _append(self, record: dict[str, Any]) -> None:
        if self._key is None:
            raise RuntimeError("the audit sink has no integrity key: it will not write an unkeyed line")
        line, mac = audit_line(self._key, record, self._seq + 1, self._prev)
        self._batch.append(line.decode("utf-8"))
        self._seq, self._prev, self._keyed = self._seq + 1, mac, True

    def _write(self) -> None:
        """Write and flush the lines waiting (under the lock); fsync when `fsync_interval` has passed."""
        if not self._batch:
            return
        self._file.write("".join(self._batch) if len(self._batch) > 1 else self._batch[0])
        self._file.flush()
        self._batch.clear()
        now = self._clock()
        if now - self._synced_at >= self._fsync_interval:
            self._sync()
            self._synced_at = now

    def _sync(self) -> None:
        os.fsync(self._file.fileno())
        self._write_head()  # only after the fsync: the durable log always reaches the head

    def _write_head(self) -> None:
        head = _head_path(self.path)
        tmp = head.with_name(head.name + ".tmp")
        link = "mac" if self._keyed else "hash"
        write_file(tmp, json.dumps({"seq": self._seq, link: self._prev}).encode())
        os.replace(tmp, head)

    def close(self) -> None:
        with self._lock:
            if self._file.closed:
                return
            if self._failed is not None:  # what a failed write left is not known: add nothing after it
                self._file.close()
                return
            self._write()
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


# --- verification: `s3proxy audit verify` ----------------------------------------------------------


def verify_audit_log(path: Path, ik_audit: bytes) -> AuditVerdict:
    """The verdict on the log at `path` and its head file (FORMAT.md §16); OSError if unreadable."""
    data = Path(path).read_bytes()
    head = _head_path(Path(path))
    return verify_audit_chain(ik_audit, data, head.read_bytes() if head.exists() else None)


_HEADLINES = {
    AuditOutcome.INTACT: "OK, {lines} records, chain intact (every line authenticated under the integrity key)",
    AuditOutcome.TAMPERED: "TAMPERED: lines were edited, forged or rewritten without the key, {n} problem(s):",
    AuditOutcome.INCOMPLETE: "INCOMPLETE: every line present is authentic, but lines are missing, {n} problem(s):",
}


def run_audit_verify(path: Path, ik_audit: Callable[[], bytes], out: TextIO | None = None) -> int:
    """`s3proxy audit verify`: print the verdict; the exit code is AuditOutcome (0 intact, 1 tampered,
    3 incomplete, 4 not found: no log at `path`, or no key to check it with). `ik_audit` reads
    IK_audit from the keystore (it may raise: not found)."""
    out = out or sys.stdout
    where = Path(path).absolute()
    try:
        data = where.read_bytes()
    except OSError as exc:
        print(f"audit log {where}: NOT FOUND ({exc.strerror or exc}); nothing was verified. Point --data-dir, "
              "--config or --file at the proxy's data", file=out)
        return int(AuditOutcome.NOT_FOUND)
    try:
        key = ik_audit()
    except Exception as exc:  # noqa: BLE001 - the reason is the message: no keystore, no root key, no IK
        print(f"audit log {where}: NOT VERIFIED: the key to check it was not found: {exc}", file=out)
        return int(AuditOutcome.NOT_FOUND)
    verdict = verify_audit_log(where, key)
    if data and verdict.keyed_lines == 0 and verdict.outcome == AuditOutcome.TAMPERED:
        print(f"audit log {where}: UNKEYED: {verdict.lines} version-1 lines (plain SHA-256) and no keyed line. "
              "Anyone who can write the file can recompute such a chain, so it proves nothing; a format-2 proxy "
              "keys a version-1 log as soon as it opens it, so this log was either never opened by one or was "
              "rewritten without the key. Treated as TAMPERED:", file=out)
    else:
        print(f"audit log {where}: " + _HEADLINES[verdict.outcome].format(lines=verdict.lines, n=len(verdict.problems)),
              file=out)
    for problem in verdict.problems:
        print(f"  {problem}", file=out)
    return int(verdict.outcome)
