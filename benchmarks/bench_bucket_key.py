"""Benchmark: the cost of one use of a cached S3 Bucket Key, on the write path (seal) and the read path (unseal).

Run: `python3 benchmarks/bench_bucket_key.py [--rounds 10]`. Prints a table; never asserts. Each
figure is CPU time (this process's) per call, the least of several half-second rounds: waiting for
a core on a loaded machine does not count, which keeps before/after comparisons steady.
In-process: a key service over a memory keystore and audit sink, one SSE-KMS mode with a bucket
key, the bucket key already cached. Each seal wraps a fresh 32-byte data key under the bucket key
(HKDF + AES-GCM); each unseal unwraps one. Whatever else the cached path does per use (authorizing
the use against the key's current policy, grants and state; counting it for the audit) is what
the figures show beside that crypto. Runs unchanged on older trees, for before/after figures.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from s3proxy.kms.audit import MemoryAuditSink  # noqa: E402
from s3proxy.kms.caller import Caller  # noqa: E402
from s3proxy.kms.keystore.memory import MemoryKeystore  # noqa: E402
from s3proxy.kms.service import KeyService  # noqa: E402
from s3proxy.modes.base import ObjectRef  # noqa: E402
from s3proxy.modes.kms_modes import BucketKeyCache, SseKms  # noqa: E402


def rate(loop: asyncio.AbstractEventLoop, fn: Callable[[], Awaitable[object]], rounds: int) -> float:
    """CPU microseconds per call: the least of `rounds` rounds of about half a second (after one untimed call)."""

    async def run() -> float:
        n, start, cpu = 0, time.perf_counter(), time.process_time()
        while time.perf_counter() - start < 0.5:
            for _ in range(200):
                await fn()
            n += 200
        return (time.process_time() - cpu) / n * 1e6

    loop.run_until_complete(fn())
    return min(loop.run_until_complete(run()) for _ in range(rounds))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    service = KeyService.create(MemoryKeystore(), MemoryAuditSink(), root_key=bytes(32))
    caller = Caller("AKIABENCH00000000001", "bench", "000000000000", source_ip="127.0.0.1",
                    via_service="s3.us-east-1.amazonaws.com")
    key_id = service.create_key(caller).key_id
    mode = SseKms(service, caller, key_id, bucket_key=True, bucket_keys=BucketKeyCache())
    ref = ObjectRef("bench-bucket", "some/object/key")
    loop = asyncio.new_event_loop()
    sealed = loop.run_until_complete(mode.seal(ref))
    seal_us = rate(loop, lambda: mode.seal(ref), args.rounds)
    unseal_us = rate(loop, lambda: mode.unseal(ref, sealed.fields), args.rounds)
    records = len(service.audit.records)  # type: ignore[attr-defined]
    service.close()
    loop.close()
    print("| cached bucket-key use | CPU µs per call |")
    print("|---|---|")
    print(f"| seal (PUT: wrap a new data key) | {seal_us:.1f} |")
    print(f"| unseal (GET: unwrap the data key) | {unseal_us:.1f} |")
    print(f"\naudit records written during the run: {records}")


if __name__ == "__main__":
    main()
