"""The pure listing function against a naive model of S3 listing, over generated key sets."""

from __future__ import annotations

import bisect
from collections.abc import Iterator

from hypothesis import given, settings
from hypothesis import strategies as st

from s3proxy.backends.listing import list_page, successor

# a small alphabet that collides a lot: the delimiter, characters on both sides of it, multi-byte ones
ALPHABET = st.sampled_from(["/", ".", "-", "0", "a", "b", "é", "\uffff", "😀", "\U0010ffff"])
KEYS = st.lists(st.text(ALPHABET, min_size=1, max_size=5), unique=True, max_size=25)
PREFIXES = st.text(ALPHABET, max_size=2)


def seeker(keys: list[str]):  # type: ignore[no-untyped-def]
    def seek(start: str, inclusive: bool) -> Iterator[tuple[str, None]]:
        at = (bisect.bisect_left if inclusive else bisect.bisect_right)(keys, start)
        return ((k, None) for k in keys[at:])

    return seek


def model(keys: list[str], prefix: str, delimiter: str) -> list[tuple[str, bool]]:
    """Every entry of a full listing in order: (key or common prefix, is-prefix)."""
    out: dict[str, bool] = {}
    for key in keys:
        if not key.startswith(prefix):
            continue
        at = key.find(delimiter, len(prefix)) if delimiter else -1
        if at < 0:
            out[key] = False
        else:
            out.setdefault(key[: at + len(delimiter)], True)
    return sorted(out.items())


@settings(max_examples=300, deadline=None)
@given(KEYS, PREFIXES, st.sampled_from(["", "/", "a", "é/"]), st.integers(1, 4))
def test_paging_returns_the_model_listing_exactly_once(keys: list[str], prefix: str, delimiter: str,
                                                      max_keys: int) -> None:
    keys = sorted(keys)
    seen: list[tuple[str, bool]] = []
    after = ""
    for _ in range(len(keys) + 2):
        page = list_page(seeker(keys), prefix, delimiter, after, max_keys)
        entries = [(k, False) for k, _ in page.entries] + [(p, True) for p in page.common_prefixes]
        assert len(entries) <= max_keys
        seen += sorted(entries)
        if not page.is_truncated:
            break
        assert page.last is not None and page.last > after
        after = page.last
    assert seen == model(keys, prefix, delimiter)


@given(st.text(ALPHABET, min_size=1, max_size=4), st.text(ALPHABET, max_size=4))
def test_successor_bounds_every_extension(prefix: str, tail: str) -> None:
    nxt = successor(prefix)
    if nxt is not None:
        assert prefix + tail < nxt
        assert not nxt.startswith(prefix)


def test_successor_edges() -> None:
    assert successor("a/") == "a0"
    assert successor("\ud7ff") == "\ue000"  # skips the surrogates, which UTF-8 cannot hold
    assert successor("a\U0010ffff") == "b"
    assert successor("\U0010ffff") is None
