"""Helpers for the format tests (and the stream adapters', tests/streams): feed bytes as async pieces,
collect async output, run coroutines, draw objects and ranges; a version-1 audit log
(tests/vectors/vectors_v2.py uses it too)."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Sequence
from typing import Any

from hypothesis import strategies as st

from s3proxy.format.envelope import Envelope
from s3proxy.streams import decrypt_range, encrypt_stream


async def pieces(data: bytes, cuts: Iterable[int] = ()) -> AsyncIterator[bytes]:
    """`data` split at the given offsets (sorted, clipped); empty pieces included on purpose."""
    prev = 0
    for cut in sorted(min(max(c, 0), len(data)) for c in cuts):
        yield data[prev:cut]
        prev = cut
    yield data[prev:]


async def steps(data: bytes, step: int) -> AsyncIterator[bytes]:
    for i in range(0, len(data), step):
        yield data[i : i + step]


async def collect(stream: AsyncIterable[bytes]) -> bytes:
    return b"".join([bytes(x) async for x in stream])


def run(coro):  # noqa: ANN001, ANN201 - thin wrapper
    return asyncio.run(coro)


def encrypt(data: bytes, key: bytes, *, part_number: int = 0, context: bytes = b"", chunk_size: int, step: int = 4096) -> bytes:
    return run(
        collect(
            encrypt_stream(
                steps(data, step) if data else pieces(b""), key, part_number=part_number, context=context, chunk_size=chunk_size
            )
        )
    )


def encrypt_object(
    parts: Sequence[tuple[int, bytes]], key: bytes, *, chunk_size: int, context: bytes = b""
) -> tuple[Envelope, bytes]:
    """(envelope, stored bytes) of an object made of (part number, plaintext) parts; number 0 = single PUT."""
    stored = b"".join(encrypt(d, key, part_number=p, context=context, chunk_size=chunk_size) for p, d in parts)
    sizes = [(p, len(d)) for p, d in parts]
    if parts[0][0] == 0:
        return Envelope.single(sizes[0][1], chunk_size), stored
    return Envelope.multipart(sizes, chunk_size), stored


def read_range(stored: bytes, key: bytes, envelope: Envelope, first: int | None, last: int | None, *, context: bytes = b"",
               step: int = 3000, batch_size: int = 0) -> bytes:
    """Plaintext bytes first..last (None, None = whole object) read as a ranged GET would."""
    plan = envelope.plan_all() if first is None else envelope.plan(first, last)  # type: ignore[arg-type]
    fetched = stored[plan.ciphertext_start : plan.ciphertext_end + 1]
    source = steps(fetched, step) if fetched else pieces(b"")
    return run(collect(decrypt_range(source, key, plan, context=context, batch_size=batch_size)))


@st.composite
def objects_and_ranges(draw: st.DrawFn, chunk_sizes: st.SearchStrategy[int] = st.sampled_from([1024, 2048])
                       ) -> tuple[list[int], int, int, int]:
    """(part sizes, chunk size, first, last): a single PUT (its size negated) or up to four parts
    (empty ones included), and a valid inclusive byte range of it."""
    c = draw(chunk_sizes)
    multipart = draw(st.booleans())
    sizes = draw(st.lists(st.integers(0, 3 * c + 3), min_size=1, max_size=4)) if multipart else [draw(st.integers(1, 5 * c))]
    total = sum(sizes)
    if total == 0:
        sizes[-1] = 1
        total = 1
    first = draw(st.integers(0, total - 1))
    last = draw(st.integers(first, total - 1))
    return sizes if multipart else [-s for s in sizes], c, first, last  # negative: a single PUT


def sha256_audit_log(records: list[dict[str, Any]]) -> tuple[bytes, str]:
    """Lines as a version-1 proxy wrote them (FORMAT.md §19.3: a SHA-256 chain, no key), or as an
    attacker recomputes them; (log, last hash)."""
    out, prev = [], "0" * 64
    for seq, record in enumerate(records, start=1):
        body = dict(record, seq=seq, prevHash=prev)
        prev = hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()).hexdigest()
        out.append(json.dumps({**body, "hash": prev}, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode() + b"\n")
    return b"".join(out), prev
