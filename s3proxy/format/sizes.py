"""Plaintext <-> ciphertext size arithmetic of one part or a whole object, trailer included (FORMAT.md §5)."""

from __future__ import annotations

from collections.abc import Iterable

from s3proxy.format.chunks import DEFAULT_CHUNK_SIZE, TAG_SIZE
from s3proxy.format.errors import IntegrityError
from s3proxy.format.trailer import TRAILER_SIZE


def chunk_count(plaintext_size: int, chunk_size: int = DEFAULT_CHUNK_SIZE) -> int:
    """How many chunks a part of `plaintext_size` bytes has: always floor(n / C) + 1 (final one short)."""
    if plaintext_size < 0:
        raise ValueError("negative size")
    return plaintext_size // chunk_size + 1


def chunk_plaintext_size(index: int, plaintext_size: int, chunk_size: int = DEFAULT_CHUNK_SIZE) -> int:
    """Plaintext length of chunk `index` of a part of `plaintext_size` bytes."""
    full = plaintext_size // chunk_size
    if index < full:
        return chunk_size
    if index == full:
        return plaintext_size - full * chunk_size
    raise ValueError("chunk index past the final chunk")


def ciphertext_size(plaintext_size: int, chunk_size: int = DEFAULT_CHUNK_SIZE) -> int:
    """Stored size of a part: n + 16 * (floor(n / C) + 1)."""
    return plaintext_size + TAG_SIZE * chunk_count(plaintext_size, chunk_size)


def plaintext_size(ciphertext_size: int, chunk_size: int = DEFAULT_CHUNK_SIZE, *, trailer: bool = False) -> int:
    """Plaintext size of a stored part (`trailer`: a single-part object whose stored size includes
    its trailer); IntegrityError if no plaintext has that stored size."""
    if trailer:
        ciphertext_size -= TRAILER_SIZE
    q, r = divmod(ciphertext_size, chunk_size + TAG_SIZE)
    if ciphertext_size < 0 or r < TAG_SIZE:
        raise IntegrityError("size")
    return q * chunk_size + r - TAG_SIZE


def object_ciphertext_size(part_sizes: Iterable[int], chunk_size: int = DEFAULT_CHUNK_SIZE, *, trailer: bool = False) -> int:
    """Stored size of an object made of parts of these plaintext sizes, plus its trailer if it has one."""
    return sum(ciphertext_size(n, chunk_size) for n in part_sizes) + (TRAILER_SIZE if trailer else 0)
