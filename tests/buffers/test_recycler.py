"""buffers.Recycler: a retired buffer is handed out again only once nothing views it."""

from __future__ import annotations

import pytest

from s3proxy.buffers import Recycler


def test_an_unviewed_buffer_is_reused_and_a_viewed_one_is_not() -> None:
    recycler = Recycler(64)
    first = recycler.take()
    assert len(first) == 64
    view = memoryview(first)[:10]  # a consumer still holds part of it
    recycler.retire(first)
    second = recycler.take()
    assert second is not first and len(second) == 64
    view.release()
    assert recycler.take() is first  # no view left: the same buffer again
    assert len(first) == 64  # the trial resize left it as it was


def test_only_buffers_of_its_size_and_only_a_few_are_kept() -> None:
    recycler = Recycler(8, keep=2)
    recycler.retire(bytearray(9))  # another size: dropped
    kept = [bytearray(8) for _ in range(3)]
    for buf in kept:
        recycler.retire(buf)
    taken = [recycler.take() for _ in range(3)]
    assert taken[0] is kept[0] and taken[1] is kept[1] and all(t is not kept[2] for t in taken)
    recycler.retire(taken[0])
    recycler.clear()
    assert recycler.take() is not taken[0]
    with pytest.raises(ValueError):
        Recycler(0)
