"""The range planner: a plaintext byte range -> the one ciphertext range to fetch and how to open it (FORMAT.md §6).

Pure arithmetic over the parts' plaintext sizes. A plan names, per part it crosses, the chunks to
open, how many plaintext bytes to skip in the first and how many to keep in all.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import accumulate

from s3proxy.format.chunks import DEFAULT_CHUNK_SIZE, TAG_SIZE, check_chunk_size
from s3proxy.format.sizes import ciphertext_size


class RangeNotSatisfiable(Exception):
    """A requested byte range that no byte of the object satisfies (S3: 416 InvalidRange)."""

    def __init__(self, size: int, requested: str) -> None:
        super().__init__(f"range {requested} of an object of {size} bytes")
        self.size = size
        self.requested = requested


@dataclass(frozen=True)
class ByteRange:
    """A requested range as the Range header has it: `first-last`, `first-` (last None) or suffix
    `-n` (first None)."""

    first: int | None
    last: int | None

    def resolve(self, size: int) -> tuple[int, int]:
        """Inclusive offsets within an object of `size` bytes; RangeNotSatisfiable when none."""
        if self.first is None:  # suffix: the last n bytes
            n = self.last or 0
            if n == 0 or size == 0:
                raise RangeNotSatisfiable(size, self.header())
            return max(0, size - n), size - 1
        if self.first >= size:
            raise RangeNotSatisfiable(size, self.header())
        last = size - 1 if self.last is None else min(self.last, size - 1)
        return self.first, last

    def header(self) -> str:
        return f"bytes={'' if self.first is None else self.first}-{'' if self.last is None else self.last}"


@dataclass(frozen=True)
class Segment:
    """The chunks of one part that a plan opens, in order."""

    part_number: int  # 0 for a single-part object, else the S3 part number
    part_size: int  # the part's plaintext size
    first_chunk: int
    last_chunk: int  # inclusive
    skip: int  # plaintext bytes to drop from the first chunk opened
    take: int  # plaintext bytes to release from this segment
    ciphertext_start: int  # absolute offset in the stored object
    ciphertext_end: int  # inclusive
    chunk_size: int

    @property
    def final_chunk(self) -> int:
        """Index of the part's final (short, maybe empty) chunk."""
        return self.part_size // self.chunk_size

    @property
    def reads_final(self) -> bool:
        """Whether the last chunk opened is the part's final chunk (finality is then checked)."""
        return self.last_chunk == self.final_chunk


@dataclass(frozen=True)
class RangePlan:
    """How to serve plaintext bytes first..last (inclusive) of an object."""

    first: int
    last: int  # inclusive; first - 1 for an empty plan (an empty object read whole)
    chunk_size: int
    ciphertext_start: int
    ciphertext_end: int  # inclusive
    segments: tuple[Segment, ...]

    @property
    def length(self) -> int:
        """Plaintext bytes the plan releases."""
        return self.last - self.first + 1

    @property
    def ciphertext_length(self) -> int:
        """Stored bytes the plan fetches."""
        return self.ciphertext_end - self.ciphertext_start + 1


def default_part_numbers(count: int) -> tuple[int, ...]:
    """Part numbers when none are given: (0,) for one part (a single PUT), else 1..count."""
    return (0,) if count == 1 else tuple(range(1, count + 1))


def _segment(
    chunk_size: int, number: int, size: int, part_ct_start: int, first_chunk: int, last_chunk: int, skip: int, take: int
) -> Segment:
    step = chunk_size + TAG_SIZE
    last_len = (size - last_chunk * chunk_size if last_chunk == size // chunk_size else chunk_size) + TAG_SIZE
    return Segment(
        part_number=number,
        part_size=size,
        first_chunk=first_chunk,
        last_chunk=last_chunk,
        skip=skip,
        take=take,
        ciphertext_start=part_ct_start + first_chunk * step,
        ciphertext_end=part_ct_start + last_chunk * step + last_len - 1,
        chunk_size=chunk_size,
    )


def plan_range(
    first: int,
    last: int,
    part_sizes: Sequence[int],
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    *,
    part_numbers: Sequence[int] | None = None,
) -> RangePlan:
    """Plan plaintext bytes first..last (inclusive, 0 <= first <= last < total) of an object.

    `part_sizes` are the plaintext sizes of the stored parts in order; `part_numbers` their part
    numbers (default: `default_part_numbers`). ValueError if the range is not satisfiable.
    """
    check_chunk_size(chunk_size)
    numbers = tuple(part_numbers) if part_numbers is not None else default_part_numbers(len(part_sizes))
    if len(numbers) != len(part_sizes) or any(n < 0 for n in part_sizes):
        raise ValueError("part sizes and numbers disagree")
    pt_starts = [0, *accumulate(part_sizes)]
    if not 0 <= first <= last < pt_starts[-1]:
        raise ValueError("range not satisfiable")
    ct_starts = [0, *accumulate(ciphertext_size(n, chunk_size) for n in part_sizes)]
    segments: list[Segment] = []
    for j, size in enumerate(part_sizes):
        lo, hi = pt_starts[j], pt_starts[j + 1]  # part j holds plaintext [lo, hi)
        if hi <= first or lo > last:
            continue  # entirely outside (zero-size parts inside the range are kept: their chunk is fetched)
        start = max(first, lo) - lo
        if last < hi:
            end_chunk = (last - lo) // chunk_size
            take = last - lo - start + 1
        else:
            end_chunk = size // chunk_size  # to the final chunk: the fetch runs on into the next part
            take = size - start
        segments.append(
            _segment(chunk_size, numbers[j], size, ct_starts[j], start // chunk_size, end_chunk, start % chunk_size, take)
        )
    return RangePlan(first, last, chunk_size, segments[0].ciphertext_start, segments[-1].ciphertext_end, tuple(segments))


def plan_object(
    part_sizes: Sequence[int], chunk_size: int = DEFAULT_CHUNK_SIZE, *, part_numbers: Sequence[int] | None = None
) -> RangePlan:
    """Plan a whole-object read: every chunk of every part, finals included (also for empty objects)."""
    check_chunk_size(chunk_size)
    numbers = tuple(part_numbers) if part_numbers is not None else default_part_numbers(len(part_sizes))
    if len(numbers) != len(part_sizes) or not part_sizes or any(n < 0 for n in part_sizes):
        raise ValueError("part sizes and numbers disagree")
    segments, ct = [], 0
    for number, size in zip(numbers, part_sizes, strict=True):
        segments.append(_segment(chunk_size, number, size, ct, 0, size // chunk_size, 0, size))
        ct += ciphertext_size(size, chunk_size)
    return RangePlan(0, sum(part_sizes) - 1, chunk_size, 0, ct - 1, tuple(segments))
