"""Benchmark: throughput of the format's stream adapters against raw one-shot AES-256-GCM, one core.

Prints a table per chunk size and input piece size: raw AESGCM.encrypt/decrypt over the same bytes
in the same chunk size (no Python around it but a loop), then encrypt_stream / decrypt_stream, and
their ratio to raw (target >= 0.80). Then the cost of reading the last byte of a 1 GiB object.
Run: python3 benchmarks/bench_format.py [--mib 256] [--repeat 5]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from typing import AsyncIterator, Callable

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from cryptography.hazmat.primitives.ciphers.aead import AESGCM  # noqa: E402

from s3proxy.format.chunks import DEFAULT_CHUNK_SIZE, TAG_SIZE, PartCipher  # noqa: E402
from s3proxy.format.ranges import plan_range  # noqa: E402
from s3proxy.format.sizes import ciphertext_size  # noqa: E402
from s3proxy.streams import decrypt_range, decrypt_stream, encrypt_stream  # noqa: E402

KiB, MiB, GiB = 1 << 10, 1 << 20, 1 << 30


def paired(raw: Callable[[], int], stream: Callable[[], int], repeat: int, clock: Callable[[], float] = time.process_time) -> tuple[float, float, float]:
    """Median raw GB/s, median stream GB/s and median per-round ratio, raw and stream interleaved.

    CPU time of this process (one thread), so other load on the machine disturbs it less than wall time.
    """
    raws, streams, ratios = [], [], []
    for _ in range(repeat):
        t0 = clock()
        n = raw()
        t1 = clock()
        m = stream()
        t2 = clock()
        raws.append(n / (t1 - t0) / 1e9)
        streams.append(m / (t2 - t1) / 1e9)
        ratios.append(streams[-1] / raws[-1])
    return statistics.median(raws), statistics.median(streams), statistics.median(ratios)


async def feed(buf: memoryview, piece: int) -> AsyncIterator[memoryview]:
    for i in range(0, len(buf), piece):
        yield buf[i : i + piece]


async def drain(stream: AsyncIterator[bytes]) -> int:
    n = 0
    async for x in stream:
        n += len(x)
    return n


def raw_encrypt(aead: AESGCM, buf: memoryview, chunk: int) -> int:
    nonce = bytes(12)
    for i in range(0, len(buf), chunk):
        aead.encrypt(nonce, buf[i : i + chunk], None)
    return len(buf)


def raw_decrypt(aead: AESGCM, sealed: list[bytes]) -> int:
    nonce, n = bytes(12), 0
    for s in sealed:
        n += len(aead.decrypt(nonce, s, None))
    return n


def bench_streams(total: int, repeat: int) -> None:
    key = os.urandom(32)
    data = memoryview(os.urandom(total))
    print(f"stream adapters vs raw one-shot AES-256-GCM over the same bytes and chunk size; {total // MiB} MiB per run,")
    print(f"interleaved, CPU time, medians of {repeat} (GB/s; ratio = median of per-round stream/raw)")
    print(f"{'chunk':>8} {'piece':>8} | {'raw enc':>8} {'stream enc':>10} {'ratio':>6} | {'raw dec':>8} {'stream dec':>10} {'ratio':>6}")
    for chunk in (64 * KiB, 256 * KiB, 1 * MiB):
        aead = AESGCM(os.urandom(32))
        sealed_raw = [aead.encrypt(bytes(12), data[i : i + chunk], None) for i in range(0, total, chunk)]
        stored = memoryview(b"".join(asyncio.run(_collect(encrypt_stream(feed(data, MiB), key, chunk_size=chunk)))))
        for piece in (64 * KiB, 250 * KiB, 1 * MiB):
            raw_e, enc, enc_ratio = paired(
                lambda: raw_encrypt(aead, data, chunk),
                lambda: asyncio.run(drain(encrypt_stream(feed(data, piece), key, chunk_size=chunk))) and total,
                repeat,
            )
            raw_d, dec, dec_ratio = paired(
                lambda: raw_decrypt(aead, sealed_raw),
                lambda: asyncio.run(drain(decrypt_stream(feed(stored, piece), key, chunk_size=chunk, plaintext_size=total))),
                repeat,
            )
            print(
                f"{chunk // KiB:>6}Ki {piece // KiB:>6}Ki | {raw_e:8.2f} {enc:10.2f} {enc_ratio:6.2f} | {raw_d:8.2f} {dec:10.2f} {dec_ratio:6.2f}"
            )


async def _collect(stream: AsyncIterator[bytes]) -> list[bytes]:
    return [x async for x in stream]


def bench_last_byte(chunk: int = DEFAULT_CHUNK_SIZE) -> None:
    """A ranged read of the last byte of a 1 GiB object: what is fetched and opened."""
    key = os.urandom(32)
    plan = plan_range(GiB - 1, GiB - 1, [GiB], chunk)
    (seg,) = plan.segments
    # the stored bytes of those chunks are exactly what the encryptor wrote at those indices
    cipher = PartCipher.for_part(key, chunk_size=chunk)
    payload = os.urandom(chunk)
    fetched = b"".join(cipher.seal(i, payload) for i in range(seg.first_chunk, seg.last_chunk + 1))
    assert len(fetched) == plan.ciphertext_length

    async def src() -> AsyncIterator[bytes]:
        yield fetched

    t0 = time.perf_counter()
    out = b"".join(asyncio.run(_collect(decrypt_range(src(), key, plan))))
    dt = time.perf_counter() - t0
    assert out == payload[-1:]
    print(
        f"\nlast byte of a 1 GiB object (chunk {chunk // KiB} KiB): fetch bytes {plan.ciphertext_start}-{plan.ciphertext_end} "
        f"of {ciphertext_size(GiB, chunk)} ({plan.ciphertext_length} B), chunks opened: {seg.last_chunk - seg.first_chunk + 1}, "
        f"{dt * 1e3:.2f} ms; overhead of the format: {(ciphertext_size(GiB, chunk) - GiB) / GiB:.4%} (tags {TAG_SIZE} B/chunk)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=128)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    bench_streams(args.mib * MiB, args.repeat)
    bench_last_byte()


if __name__ == "__main__":
    main()
