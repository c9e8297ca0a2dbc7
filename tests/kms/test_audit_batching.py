"""Group commit of the audit log (issue 21): lines of KMS calls run off the event loop are written
together once per loop turn, and still each one is on the OS's side of write(2) before the coroutine
that awaited its call goes on (docs/KMS.md: a killed process loses nothing it acknowledged)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from s3proxy.format.auditchain import AuditOutcome
from s3proxy.kms.audit import FileAuditSink, verify_audit_log
from s3proxy.kms.service import KeyService

IK_AUDIT = bytes(range(32))


class CountingFile:
    """The sink's file with its flushes (one write(2) each) counted, and a write that can be made to fail."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.flushes, self.fail = inner, 0, False

    def write(self, text: str) -> int:
        if self.fail:
            raise OSError(28, "No space left on device")
        return self.inner.write(text)

    def flush(self) -> None:
        self.flushes += 1
        self.inner.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def on_disk(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_bytes().splitlines()]


def test_each_line_is_written_before_its_awaiting_coroutine_goes_on_and_many_share_a_write(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    sink = FileAuditSink(path, ik_audit=IK_AUDIT)
    counted = sink._file = CountingFile(sink._file)  # type: ignore[assignment]
    late: list[str] = []

    async def call(i: int) -> None:
        for round_ in range(20):
            marker = f"{i}.{round_}"
            await asyncio.to_thread(sink.emit, {"eventName": "GenerateDataKey", "requestID": marker})
            # the call returned to this coroutine: its line must be in the file (another open of it sees it)
            if marker not in {line["requestID"] for line in on_disk(path)}:
                late.append(marker)

    async def main() -> None:
        sink.batch_on(asyncio.get_running_loop())
        await asyncio.gather(*(call(i) for i in range(16)))

    asyncio.run(main())
    sink.close()
    assert late == []
    lines = on_disk(path)
    assert len(lines) == 320 and [line["seq"] for line in lines] == list(range(1, 321))
    assert counted.flushes < 320, counted.flushes  # lines of one turn shared a write
    assert verify_audit_log(path, IK_AUDIT).outcome == AuditOutcome.INTACT


def test_a_line_emitted_on_the_loop_thread_or_without_a_loop_is_written_at_once(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    sink = FileAuditSink(path, ik_audit=IK_AUDIT)
    sink.emit({"eventName": "Before"})  # no loop yet
    assert [line["eventName"] for line in on_disk(path)] == ["Before"]

    async def main() -> None:
        sink.batch_on(asyncio.get_running_loop())
        sink.emit({"eventName": "OnTheLoop"})
        assert [line["eventName"] for line in on_disk(path)] == ["Before", "OnTheLoop"]  # no turn has passed

    asyncio.run(main())
    sink.emit({"eventName": "AfterTheLoopClosed"})  # from the loop's thread: at once
    assert on_disk(path)[-1]["eventName"] == "AfterTheLoopClosed"
    sink.close()
    assert verify_audit_log(path, IK_AUDIT).outcome == AuditOutcome.INTACT


def test_a_failed_group_write_refuses_every_later_line(tmp_path: Path, caplog) -> None:
    path = tmp_path / "audit.log"
    sink = FileAuditSink(path, ik_audit=IK_AUDIT)
    counted = sink._file = CountingFile(sink._file)  # type: ignore[assignment]

    async def main() -> None:
        sink.batch_on(asyncio.get_running_loop())
        await asyncio.to_thread(sink.emit, {"eventName": "Written"})
        counted.fail = True
        await asyncio.to_thread(sink.emit, {"eventName": "Lost"})  # its batch's write fails on the loop
        with pytest.raises(OSError):
            await asyncio.to_thread(sink.emit, {"eventName": "Refused"})

    asyncio.run(main())
    sink.close()
    assert "could not be written" in caplog.text
    assert [line["eventName"] for line in on_disk(path)] == ["Written"]


# The child acknowledges each call on stdout only after the coroutine that awaited it went on, as the
# proxy answers a request only after its KMS call: 16 at a time, lines group-committed.
CHILD = textwrap.dedent("""
    import asyncio, json, sys
    from pathlib import Path
    from s3proxy.kms.audit import FileAuditSink
    from s3proxy.kms.caller import Caller
    from s3proxy.kms.service import KeyService

    data = Path(sys.argv[1])
    sink = FileAuditSink(data / "kms" / "audit.log")
    svc = KeyService.open(data, audit=sink)
    alice = Caller("AKIAALICE", "alice", "000000000000")
    kid = svc.create_key(alice).key_id

    async def client(c):
        i = 0
        while True:
            marker = f"{c}.{i}"
            await asyncio.to_thread(svc.generate_data_key, alice, kid, {"marker": marker})
            sys.stdout.write(marker + "\\n")
            sys.stdout.flush()
            i += 1

    async def main():
        sink.batch_on(asyncio.get_running_loop())
        await asyncio.gather(*(client(c) for c in range(16)))

    asyncio.run(main())
""")


@pytest.mark.parametrize("acks_before_kill", [5, 200])
def test_sigkill_loses_no_acknowledged_line(tmp_path: Path, acks_before_kill: int) -> None:
    with subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path)], stdout=subprocess.PIPE, env=os.environ) as child:
        assert child.stdout is not None
        acked = [child.stdout.readline().decode().strip() for _ in range(acks_before_kill)]
        child.send_signal(signal.SIGKILL)
        acked += [line for line in child.stdout.read().decode().split("\n")[:-1]]  # complete lines only
        child.wait(10)
    audit_log = tmp_path / "kms" / "audit.log"
    svc = KeyService.open(tmp_path, audit=FileAuditSink(audit_log))  # reopening cuts a torn last line
    try:
        ik_audit = svc.integrity().keys().audit
    finally:
        svc.close()
    logged = {((line.get("requestParameters") or {}).get("encryptionContext") or {}).get("marker")
              for line in on_disk(audit_log)}
    assert set(acked) <= logged, sorted(set(acked) - logged)[:5]
    assert verify_audit_log(audit_log, ik_audit).outcome == AuditOutcome.INTACT
