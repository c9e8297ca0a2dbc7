"""A resumable, concurrent walk over a bucket prefix with a progress line and a final report.

Pages are listed in key order; the objects of a page are processed concurrently; after a whole
page is done its last key is written to the checkpoint file, so an interrupted run resumes after
the last finished page and never skips an object. Each object's outcome is one of done, skipped
(with the reason) or failed (with the error code).
"""

from __future__ import annotations

import concurrent.futures
import json
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from botocore.exceptions import ClientError

from ..private import write_file


class Skip(Exception):
    """This object needs nothing (already in the wanted state, or changed meanwhile)."""


@dataclass
class Report:
    done: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    failed: dict[str, str] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return self.done + sum(self.skipped.values()) + len(self.failed)

    def render(self, verb: str) -> str:
        lines = [f"{verb}: {self.done}", f"skipped: {sum(self.skipped.values())}"]
        lines += [f"  {n} {reason}" for reason, n in self.skipped.most_common()]
        lines.append(f"failed: {len(self.failed)}")
        lines += [f"  {key}: {why}" for key, why in sorted(self.failed.items())[:50]]
        return "\n".join(lines)


class Progress:
    def __init__(self, total: int | None, out: TextIO, clock: Callable[[], float] = time.monotonic) -> None:
        self.total, self.out, self.clock = total, out, clock
        self.start = clock()
        self.count = 0
        self._lock = threading.Lock()

    def tick(self) -> None:
        with self._lock:
            self.count += 1
            elapsed = max(self.clock() - self.start, 1e-9)
            rate = self.count / elapsed
            if self.total:
                width = 30
                filled = int(width * min(self.count, self.total) / self.total)
                eta = (self.total - self.count) / rate if rate else 0
                line = f"\r[{'#' * filled}{' ' * (width - filled)}] {self.count}/{self.total} {rate:.0f} obj/s ETA {eta:.0f}s"
            else:
                line = f"\r{self.count} objects {rate:.0f} obj/s"
            self.out.write(line)
            self.out.flush()

    def finish(self) -> None:
        self.out.write("\n")
        self.out.flush()


def error_code(exc: Exception) -> str:
    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        return f"{err.get('Code', '?')}: {err.get('Message', '')}".strip()
    return f"{type(exc).__name__}: {exc}"


def walk(
    s3: Any,  # a boto3 S3 client (boto3 has no type hints)
    bucket: str,
    prefix: str,
    handle: Callable[[dict[str, Any]], None],
    *,
    concurrency: int = 8,
    checkpoint: Path | None = None,
    out: TextIO = sys.stderr,
    count_first: bool = True,
    page_size: int = 1000,
) -> Report:
    """Call `handle(listing entry)` for every object under the prefix; it raises Skip or an error."""
    start_after = ""
    if checkpoint is not None and checkpoint.exists():
        start_after = json.loads(checkpoint.read_text()).get("after", "")
    total = _count(s3, bucket, prefix, start_after, page_size) if count_first else None
    progress = Progress(total, out)
    report = Report()
    lock = threading.Lock()

    def one(entry: dict[str, Any]) -> None:
        try:
            handle(entry)
        except Skip as why:
            with lock:
                report.skipped[str(why)] += 1
        except Exception as exc:  # noqa: BLE001 - every failure is reported per object, the walk goes on
            with lock:
                report.failed[entry["Key"]] = error_code(exc)
        else:
            with lock:
                report.done += 1
        progress.tick()

    with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
        for page in _pages(s3, bucket, prefix, start_after, page_size):
            list(pool.map(one, page))
            if checkpoint is not None and page:
                write_file(checkpoint, json.dumps({"bucket": bucket, "prefix": prefix, "after": page[-1]["Key"]}).encode())
    progress.finish()
    if checkpoint is not None and checkpoint.exists() and not report.failed:
        checkpoint.unlink()
    return report


def _pages(s3: Any, bucket: str, prefix: str, start_after: str, page_size: int) -> Iterator[list[dict[str, Any]]]:
    kwargs: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix, "PaginationConfig": {"PageSize": page_size}}
    if start_after:
        kwargs["StartAfter"] = start_after
    for page in s3.get_paginator("list_objects_v2").paginate(**kwargs):
        yield page.get("Contents", [])


def _count(s3: Any, bucket: str, prefix: str, start_after: str, page_size: int) -> int:
    return sum(len(page) for page in _pages(s3, bucket, prefix, start_after, page_size))
