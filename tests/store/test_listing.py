"""Listings through the ObjectStore: plaintext sizes and client ETags, from the listing cache when this
proxy wrote or saw the object, else from one HEAD each (never a wrong size)."""

from __future__ import annotations

from s3proxy.backends.base import ObjectMeta
from s3proxy.format.sizes import ciphertext_size
from s3proxy.modes.base import ObjectRef
from s3proxy.store import ListingCache
from tests.twins import World

from .helpers import put


class CountingHeads:
    """Counts the HEADs a listing sends (the twin backend's method, wrapped)."""

    def __init__(self, world: World) -> None:
        self.count = 0
        original = world.backend.head_object

        async def head_object(*args, **kwargs):
            self.count += 1
            return await original(*args, **kwargs)

        world.backend.head_object = head_object  # type: ignore[method-assign]


async def test_listing_shows_plaintext_sizes_and_client_etags_without_a_head_per_object(world: World) -> None:
    await world.buckets.create("b", "000000000000")
    written = {f"k{i}": await put(world, ObjectRef("b", f"k{i}"), b"x" * (100 * i)) for i in range(1, 6)}
    heads = CountingHeads(world)
    views, result = await world.store.list_objects("b", prefix="", delimiter="", after="", max_keys=1000)
    assert [(v.key, v.size, v.etag) for v in views] == [(k, 100 * int(k[1:]), w.etag) for k, w in written.items()]
    assert heads.count == 0 and not result.is_truncated
    assert all(not v.meta.metadata for v in views)  # a listing shows no envelope field

    world.store.listing = ListingCache()  # another proxy in front of the same backend: nothing cached
    views, _ = await world.store.list_objects("b", prefix="", delimiter="", after="", max_keys=2)
    assert [(v.key, v.size, v.etag) for v in views] == [(k, 100 * int(k[1:]), written[k].etag) for k in ("k1", "k2")]
    assert heads.count == 2  # one HEAD each, then cached
    await world.store.list_objects("b", prefix="", delimiter="", after="", max_keys=2)
    assert heads.count == 2


async def test_an_object_written_behind_the_proxy_lists_as_it_is(world: World) -> None:
    await world.buckets.create("b", "000000000000")

    async def one():
        yield b"plain"

    await world.backend.put_object("b", "plain", one(), 5, ObjectMeta())
    await put(world, ObjectRef("b", "sealed"), b"sealed")
    views, _ = await world.store.list_objects("b", prefix="", delimiter="", after="", max_keys=1000)
    assert {v.key: v.size for v in views} == {"plain": 5, "sealed": 6}
    stored = await world.backend.list_objects("b")
    assert {o.key: o.size for o in stored.objects}["sealed"] == ciphertext_size(6, 1024)  # what the store hides


async def test_versions_list_plaintext_sizes_and_delete_markers(world: World) -> None:
    await world.buckets.create("b", "000000000000")
    await world.buckets.put_versioning("b", "Enabled")
    ref = ObjectRef("b", "k")
    first = await put(world, ref, b"one")
    second = await put(world, ref, b"second")
    await world.store.delete_object(ref)
    views, _ = await world.store.list_object_versions("b")
    assert [(v.delete_marker, v.is_latest) for v in views] == [(True, True), (False, False), (False, False)]
    assert [(v.size, v.etag) for v in views[1:]] == [(6, second.etag), (3, first.etag)]
