"""S3 listing over a sorted key space: prefix, delimiter, marker and max-keys as one pure function.

Keys are compared as Python strings, whose code-point order is exactly S3's UTF-8 binary order
(UTF-8 preserves code-point order), so SQLite's BINARY collation, `sorted()` and S3 agree.
A backend supplies `seek(start, inclusive)`: its entries with key >= start (or > start) in key
order. After a common prefix the listing seeks past it instead of walking its keys, so a
delimited listing of a huge folder costs one seek per prefix, not one step per key.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")
Seek = Callable[[str, bool], Iterable[tuple[str, T]]]

# UTF-16 surrogates cannot appear in a UTF-8 key; the code point after them
_SURROGATES = range(0xD800, 0xE000)


@dataclass(frozen=True)
class Page(Generic[T]):
    entries: list[tuple[str, T]]  # (key, item) in listing order
    common_prefixes: list[str]
    is_truncated: bool
    last: str | None  # the last key or common prefix returned: where the next page continues


def successor(prefix: str) -> str | None:
    """The smallest string greater than every string that starts with `prefix` (None if none)."""
    while prefix:
        last = ord(prefix[-1])
        if last < 0x10FFFF:
            nxt = last + 1
            if nxt in _SURROGATES:
                nxt = _SURROGATES.stop
            return prefix[:-1] + chr(nxt)
        prefix = prefix[:-1]
    return None


def list_page(
    seek: Seek[T],
    prefix: str = "",
    delimiter: str = "",
    after: str = "",
    max_keys: int = 1000,
    first: Iterable[tuple[str, T]] = (),
) -> Page[T]:
    """One page of an S3 listing: entries strictly after `after` (plus `first`, if given)."""
    entries: list[tuple[str, T]] = []
    prefixes: list[str] = []
    last: str | None = None
    if max_keys <= 0:  # S3 answers max-keys=0 with an empty, untruncated page
        return Page(entries, prefixes, False, last)
    it = _chain(first, _start(seek, prefix, after))
    while True:
        step = next(it, None)
        if step is None or not step[0].startswith(prefix):
            return Page(entries, prefixes, False, last)
        key, item = step
        common = common_prefix(key, prefix, delimiter)
        if common is not None and common <= after:
            it = _skip(seek, common)  # already returned on an earlier page
            continue
        if len(entries) + len(prefixes) >= max_keys:
            return Page(entries, prefixes, True, last)
        if common is None:
            entries.append((key, item))
            last = key
        else:
            prefixes.append(common)
            last = common
            it = _skip(seek, common)


def _start(seek: Seek[T], prefix: str, after: str) -> Iterator[tuple[str, T]]:
    if after < prefix:
        return iter(seek(prefix, True))
    return iter(seek(after, False))


def _skip(seek: Seek[T], common: str) -> Iterator[tuple[str, T]]:
    nxt = successor(common)
    if nxt is None:
        return iter(())
    return iter(seek(nxt, True))


def _chain(first: Iterable[tuple[str, T]], rest: Iterator[tuple[str, T]]) -> Iterator[tuple[str, T]]:
    yield from first
    yield from rest


def common_prefix(key: str, prefix: str, delimiter: str) -> str | None:
    """The common prefix `key` rolls up into under `prefix` and `delimiter` (None: listed as itself)."""
    if not delimiter:
        return None
    at = key.find(delimiter, len(prefix))
    return None if at < 0 else key[: at + len(delimiter)]
