"""Large buffers used again once nothing views them: no allocation and no zeroing per megabyte.

The object paths hand on views of ~1 MiB buffers that are never written again while a view
exists (a GET's plaintext batches, the receive buffers of a backend body). A fresh bytearray
costs a malloc and a memset of its whole length: on a 2-core machine that was ~7% of a proxy's
CPU per GB (issue 5). A Recycler keeps a few retired buffers and hands one out again only when no
memoryview of it is alive: CPython refuses to resize a bytearray while any view exports it, so a
trial resize (by one byte, within its allocation: no copy) is an exact test, whoever holds the
view (a consumer, an asyncio transport's queue).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

# The one buffer type bodies are made of, from the backends through the streams to the client: a
# piece may be a view of a larger (recycled) buffer, and is never written while viewed.
Buffer = bytes | bytearray | memoryview
Body = AsyncIterator[Buffer]


class Recycler:
    """bytearrays of one size: reused when unviewed, else fresh."""

    def __init__(self, size: int, keep: int = 2) -> None:
        if size < 1:
            raise ValueError("size must be positive")
        self.size = size
        self._keep = keep
        self._retired: list[bytearray] = []

    def take(self) -> bytearray:
        """A buffer of `size` bytes that nothing views; its contents are arbitrary."""
        for i, buf in enumerate(self._retired):
            if _unviewed(buf):
                del self._retired[i]
                return buf
        return bytearray(self.size)

    def retire(self, buf: bytearray) -> None:
        """`buf` will not be written by its holder again; reuse it once all views of it are gone."""
        if len(buf) == self.size and len(self._retired) < self._keep:
            self._retired.append(buf)

    def clear(self) -> None:
        self._retired.clear()


def _unviewed(buf: bytearray) -> bool:
    try:
        del buf[-1:]  # a bytearray anyone still views cannot change size
    except BufferError:
        return False
    buf.append(0)  # back to its length, inside its allocation
    return True
