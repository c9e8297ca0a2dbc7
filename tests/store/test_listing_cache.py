"""The listing cache: what lets a listing report plaintext sizes and ETags without a HEAD per object."""

from __future__ import annotations

import hashlib
import tracemalloc

import pytest

from s3proxy.store import ListingCache


def test_an_overwrite_replaces_what_it_overwrote_instead_of_piling_up():
    cache = ListingCache(versions_per_key=4)
    for i in range(1000):
        cache.put("b", "k", f"backend-{i}", i, f"etag-{i}")
    assert cache.get("b", "k", "backend-999") == (999, "etag-999")
    assert [cache.get("b", "k", f"backend-{i}") for i in (996, 997, 998)] == [(i, f"etag-{i}") for i in (996, 997, 998)]
    assert cache.get("b", "k", "backend-995") is None  # older than the newest four
    assert cache.get("b", "k", "backend-0") is None
    assert len(cache) == 1 and cache.bytes == ListingCache._cost("b/k", cache._entries["b/k"])
    assert len(cache._entries["b/k"]) == 4 * (12 + 8 + 9)  # four packed versions (text ETags here), nothing else


def test_versions_of_one_key_all_hit_and_a_repeated_put_refreshes_its_version():
    cache = ListingCache(versions_per_key=3)
    for v in ("v1", "v2", "v3"):
        cache.put("b", "k", v, 1, v)
    cache.put("b", "k", "v1", 1, "v1")  # seen again: now the newest
    cache.put("b", "k", "v4", 1, "v4")  # pushes out the oldest, v2
    assert [cache.get("b", "k", v) is not None for v in ("v1", "v2", "v3", "v4")] == [True, False, True, True]


def test_names_leave_least_recently_used_first_past_the_byte_bound():
    one = ListingCache()
    one.put("b", "a", "e", 1, "x")
    cache = ListingCache(max_bytes=2 * one.bytes)  # room for two such names
    cache.put("b", "a", "e", 1, "x")
    cache.put("b", "b", "e", 2, "y")
    assert cache.get("b", "a", "e") == (1, "x")  # a is now the most recently used
    cache.put("b", "c", "e", 3, "z")
    assert cache.get("b", "b", "e") is None
    assert cache.get("b", "a", "e") == (1, "x") and cache.get("b", "c", "e") == (3, "z")
    assert cache.get("other", "a", "e") is None and cache.get("b", "a", "other-etag") is None


@pytest.mark.parametrize("backend_etag,etag", [
    ("0123456789abcdef0123456789abcdef", "fedcba9876543210fedcba9876543210"),  # MD5s: 16 raw bytes each
    ("0123456789abcdef0123456789abcdef-12", "ffffffffffffffffffffffffffffffff-3"),  # multipart
    ("0123456789ABCDEF0123456789ABCDEF", ""),  # upper-case hex is kept as text, so it comes back as it was
    ("not-hex-but-32-characters-long!!", "x" * 254),
])
def test_every_etag_shape_comes_back_exactly(backend_etag, etag):
    cache = ListingCache()
    cache.put("b", "k/with/slashes", backend_etag, 5 * 1024**4, etag)
    cache.put("b", "k/with/slashes", "11111111111111111111111111111111", 7, "other")
    assert cache.get("b", "k/with/slashes", backend_etag) == (5 * 1024**4, etag)
    assert cache.get("b", "k/with/slashes", "11111111111111111111111111111111") == (7, "other")
    assert cache.get("b", "k/with", backend_etag) is None and cache.get("c", "k/with/slashes", backend_etag) is None


def test_an_etag_that_cannot_be_packed_is_not_cached():
    cache = ListingCache()
    cache.put("b", "k", "é" * 32, 1, "x")
    cache.put("b", "k2", "e", 1, "y" * 255)
    assert len(cache) == 0 and cache.bytes == 0


def test_the_byte_bound_holds_for_what_the_process_really_allocates():
    """The count is of the objects the cache keeps; tracemalloc says what they take, table included."""
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        cache = ListingCache(max_bytes=2 * 1024 * 1024)
        for i in range(30_000):  # more than fit: the oldest names leave
            cache.put(f"bucket-{i % 3}", f"some/prefix/object-{i:08d}.dat", hashlib.md5(str(i).encode()).hexdigest(),
                      i, hashlib.md5(str(-i).encode()).hexdigest())
        used = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert 7_000 < len(cache) < 10_000 and cache.bytes <= 2 * 1024 * 1024
    assert used < 2 * 1024 * 1024 * 1.25, used  # the table's spare slots: within a quarter
