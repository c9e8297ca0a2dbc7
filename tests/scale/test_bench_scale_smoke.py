"""A smoke run of benchmarks/bench_scale.py with tiny sizes, so it cannot rot; nothing here asserts on speed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


def test_bench_scale_measures_every_topology_and_both_keystores(tmp_path: Path) -> None:
    out = tmp_path / "out.json"
    done = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "bench_scale.py"), "--small-count", "24", "--large", "2MiB",
         "--concurrency", "4", "--repeat", "1", "--kms-seconds", "0.1", "--json", str(out)],
        capture_output=True, text=True, timeout=220, cwd=REPO, stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert set(result["s3"]) == {"1 proxy x 1 worker", "1 proxy x 2 workers", "2 proxies x 1 worker"}
    for figures in result["s3"].values():
        assert set(figures) == {"small_put_ops", "small_get_ops", "large_put_mbs", "large_get_mbs", "cpu_ms_per_small_put",
                                "cpu_ms_per_small_get", "cpu_s_per_gb_put", "cpu_s_per_gb_get"}
        assert all(figures[k] > 0 for k in ("small_put_ops", "small_get_ops", "large_put_mbs", "large_get_mbs")), figures
        assert all(v >= 0 for v in figures.values()), figures  # CPU: tiny runs may stay under one clock tick
    assert set(result["kms"]) == {"sqlite", "postgresql"}
    for rates in result["kms"].values():
        assert {"GenerateDataKey x1", "Decrypt x4", "CreateKey x1", "UpdateKeyDescription x4"} <= set(rates)
        assert all(v > 0 for v in rates.values()), rates
