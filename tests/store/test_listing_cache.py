"""The listing cache: what lets a listing report plaintext sizes and ETags without a HEAD per object."""

from __future__ import annotations

from s3proxy.store import ListingCache


def test_an_overwrite_replaces_what_it_overwrote_instead_of_piling_up():
    cache = ListingCache(versions_per_key=4)
    for i in range(1000):
        cache.put("b", "k", f"backend-{i}", i, f"etag-{i}")
    assert cache.get("b", "k", "backend-999") == (999, "etag-999")
    assert [cache.get("b", "k", f"backend-{i}") for i in (996, 997, 998)] == [(i, f"etag-{i}") for i in (996, 997, 998)]
    assert cache.get("b", "k", "backend-995") is None  # older than the newest four
    assert cache.get("b", "k", "backend-0") is None
    assert len(cache._entries) == 1 and len(cache._entries["b", "k"]) == 4


def test_versions_of_one_key_all_hit_and_a_repeated_put_refreshes_its_version():
    cache = ListingCache(versions_per_key=3)
    for v in ("v1", "v2", "v3"):
        cache.put("b", "k", v, 1, v)
    cache.put("b", "k", "v1", 1, "v1")  # seen again: now the newest
    cache.put("b", "k", "v4", 1, "v4")  # pushes out the oldest, v2
    assert [cache.get("b", "k", v) is not None for v in ("v1", "v2", "v3", "v4")] == [True, False, True, True]


def test_names_leave_least_recently_used_first():
    cache = ListingCache(max_entries=2)
    cache.put("b", "a", "e", 1, "x")
    cache.put("b", "b", "e", 2, "y")
    assert cache.get("b", "a", "e") == (1, "x")  # a is now the most recently used
    cache.put("b", "c", "e", 3, "z")
    assert cache.get("b", "b", "e") is None
    assert cache.get("b", "a", "e") == (1, "x") and cache.get("b", "c", "e") == (3, "z")
    assert cache.get("other", "a", "e") is None and cache.get("b", "a", "other-etag") is None
