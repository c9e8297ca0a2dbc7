"""Benchmark: what the audit line costs per data-key operation, in the proxy's shape (issue 21).

Run: `python3 benchmarks/bench_audit.py [--ops 4000] [--concurrency 16]`. Prints a table; never asserts.

The proxy runs each KMS call off its event loop (`asyncio.to_thread`, modes/kms_modes.py), so that
is what this does: `--concurrency` coroutines each await GenerateDataKey, then Decrypt, of the
internal key service until `--ops` calls are done, once with the audit trail kept in memory (no
file: the cost of the call without its line) and once with the keyed file sink the proxy uses
(FileAuditSink, its default fsync policy), each with the sink writing every line at once and, where
the sink has `batch_on`, with lines written together once per event-loop turn. Figures: process CPU
microseconds per call (user + system, all threads), calls per second, and write() calls per call
to the OS on the audit file (its flushes, counted by wrapping the file object).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from s3proxy.kms.audit import FileAuditSink, MemoryAuditSink  # noqa: E402
from s3proxy.kms.caller import Caller  # noqa: E402
from s3proxy.kms.service import KeyService  # noqa: E402

CTX = {"aws:s3:arn": "arn:aws:s3:::bucket/some/object/key"}
ALICE = Caller("AKIAALICE000000000001", "alice", "000000000000", via_service="s3.us-east-1.amazonaws.com")


class CountingFile:
    """The sink's text file, with its flush() calls (each one write(2) to the OS) counted."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.writes = inner, 0

    def flush(self) -> None:
        self.writes += 1
        self.inner.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


async def run(svc: KeyService, kid: str, ops: int, concurrency: int) -> tuple[float, float]:
    """(CPU µs per call, calls per second) of `ops` calls, half GenerateDataKey, half Decrypt."""
    blob = svc.generate_data_key(ALICE, kid, CTX).ciphertext_blob
    left = ops

    async def client() -> None:
        nonlocal left
        while left > 0:
            left -= 2
            await asyncio.to_thread(svc.generate_data_key, ALICE, kid, CTX)
            await asyncio.to_thread(svc.decrypt_data_key, ALICE, blob, CTX)

    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    done = ops - left  # a client may overshoot by one pair
    return cpu / done * 1e6, done / wall


async def case(tmp: Path, name: str, ops: int, concurrency: int) -> tuple[str, float, float, float | None]:
    sink: Any = MemoryAuditSink() if name == "memory" else FileAuditSink(tmp / name / "audit.log")
    counted = None
    if isinstance(sink, FileAuditSink):
        counted = sink._file = CountingFile(sink._file)  # type: ignore[assignment]
        if name == "file, batched":
            sink.batch_on(asyncio.get_running_loop())
    svc = KeyService.open(tmp / name, audit=sink)
    kid = svc.create_key(ALICE).key_id
    await run(svc, kid, ops // 4, concurrency)  # warm up: the thread pool, the key cache
    writes = counted.writes if counted else 0
    us, rate = await run(svc, kid, ops, concurrency)
    per = (counted.writes - writes) / ops if counted else None
    svc.close()
    return name, us, rate, per


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--ops", type=int, default=4000)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    names = ["memory", "file, each line"] + (["file, batched"] if hasattr(FileAuditSink, "batch_on") else [])
    best: dict[str, tuple[float, float, float | None]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):  # alternate the cases; keep each one's best round
            for name in names:
                _, us, rate, per = asyncio.run(case(Path(tmp) / str(r), name, args.ops, args.concurrency))
                if name not in best or us < best[name][0]:
                    best[name] = (us, rate, per)
    base = best["memory"][0]
    print(f"{args.ops} data-key calls, concurrency {args.concurrency}, best of {args.rounds}")
    print(f"{'audit sink':<18} {'CPU us/call':>12} {'audit us/call':>14} {'calls/s':>9} {'writes/call':>12}")
    for name in names:
        us, rate, per = best[name]
        print(f"{name:<18} {us:>12.1f} {us - base:>14.1f} {rate:>9.0f} {'' if per is None else f'{per:.2f}':>12}")


if __name__ == "__main__":
    main()
