"""Benchmark (issue 5): every encryption mode through the proxy versus the backend reached directly (plain).

For each mode (default, SSE-S3, SSE-KMS, SSE-KMS with a bucket key, SSE-C; none skipped): large-object
PUT/GET MB/s and 4 KiB PUT/GET ops/s through the proxy and direct, alternating in one run; the proxy's
own CPU seconds per GB and peak RSS; then the KMS calls (audit log lines) per 1,000 small SSE-KMS PUTs
with and without a bucket key.
Targets: with SSE-KMS or SSE-C, large-object throughput >= 0.8x direct, and proxy peak RSS < 100 MiB
for a 1 GiB object. The verdict is printed; a missed target does not change the exit status.
Run: python3 benchmarks/bench_modes.py [--large 1GiB] [--small-count 1000] [--repeat 1] [--kms-puts 1000] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402

TARGET_RATIO = 0.8
TARGET_RSS_MIB = 100
TARGET_MODES = ("SSE-KMS", "SSE-KMS + bucket key", "SSE-C")


def spread(r: common.Row, figure: str) -> str:
    """The range of the per-round ratios, when there was more than one round."""
    values = r.round_ratios.get(figure, [])
    return f"; rounds {min(values):.2f}-{max(values):.2f}" if len(values) > 1 else ""


def verdicts(report: common.Report) -> list[str]:
    """One line per target-mode row that has a direct twin: met or missed, and by how much."""
    lines = []
    for r in report.rows:
        if r.mode == common.REFERENCE_MODE:
            lines += [f"{r.backend} {r.mode} {what}: {ratio:.2f}x direct (reference: the ratio a plain C proxy hop "
                      f"reaches on this machine, with no encryption{spread(r, figure)})"
                      for what, figure in (("PUT", "put_mbs"), ("GET", "get_mbs")) if (ratio := r.ratio(figure)) is not None]
        if r.mode not in TARGET_MODES:
            continue
        for what, figure in (("PUT", "put_mbs"), ("GET", "get_mbs")):
            if (ratio := r.ratio(figure)) is not None:
                verdict = "met" if ratio >= TARGET_RATIO else f"MISSED by {TARGET_RATIO - ratio:.2f}"
                lines.append(f"{r.backend} {r.mode} {what}: {ratio:.2f}x direct ({verdict}, target >= {TARGET_RATIO}"
                             f"{spread(r, figure)})")
        peak = r.proxy.peak_rss_mib or 0.0
        if r.large < common.GiB:
            rss = "not judged: the target is for a 1 GiB object"
        else:
            rss = "met" if peak < TARGET_RSS_MIB else f"MISSED by {peak - TARGET_RSS_MIB:.0f} MiB"
        lines.append(f"{r.backend} {r.mode} peak RSS: {peak:.0f} MiB with a {common.human(r.large)} object ({rss}; target < {TARGET_RSS_MIB} MiB)")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common.add_common_arguments(parser, large="1GiB", small_count=1000, repeat=1)
    parser.add_argument("--kms-puts", type=int, default=1000, help="small SSE-KMS PUTs counted for KMS calls, per bucket-key setting [1000]")
    args = parser.parse_args(argv)
    report = asyncio.run(common.run_suite(args.backends.split(","), common.config_of(args), common.all_modes,
                                          kms_puts=args.kms_puts, profile=args.profile, reference=args.reference))
    report.notes.append("Targets:\n" + "\n".join(f"- {v}" for v in verdicts(report)))
    common.finish(report, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
